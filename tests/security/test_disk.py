"""What a sandbox writes is gone from the host when it is killed, whatever shape it has."""

from __future__ import annotations

import os

from it import Engine, wait_until


def test_kill_removes_a_tree_5000_levels_deep(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key)
    r = sbx.commands.run("python3 -c \"import os\nfor i in range(5000):\n    os.mkdir('d'); open('f', 'w').close(); os.chdir('d')\n"
                         "print(len(os.getcwd()))\"", cwd="/home/sandbox")
    assert r.exit_code == 0 and int(r.stdout) > 10000, (r.stdout, r.stderr)
    host_dir = os.path.join(engine.state_dir, "sandboxes", sbx.id)
    assert os.path.isdir(host_dir)
    sbx.kill()
    assert wait_until(lambda: not os.path.exists(host_dir), 30), \
        f"{host_dir} is still on the host after kill:\n{engine.log_tail(20)}"
