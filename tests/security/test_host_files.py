"""The engine's own files are not other host users': a local user (here `nobody`) can read
neither the state store (API key hashes, traffic tokens, sandboxes' environment variables)
nor anything a sandbox wrote, and cannot run a setuid binary a sandbox planted."""

from __future__ import annotations

import os
import stat
import subprocess

from it import Engine


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    # Not setpriv: it keeps its capabilities until the exec, so the exec's own path lookup
    # would still pass a directory nobody may traverse.
    return subprocess.run(list(argv), user="nobody", group="nogroup", extra_groups=[],
                          capture_output=True, text=True, timeout=30)


def test_state_store_is_roots_alone(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key, secure=True, envs={"SECRET": "hunter2"})
    token = sbx.traffic_access_token
    assert token
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        path = os.path.join(engine.state_dir, name)
        if os.path.exists(path):
            mode = stat.S_IMODE(os.stat(path).st_mode)
            assert mode & 0o077 == 0, f"{name} is {oct(mode)}"
            r = as_nobody("cat", path)
            assert r.returncode != 0 and token not in r.stdout, name
    r = as_nobody("ls", engine.state_dir)
    assert r.returncode != 0, "the state directory can be listed by any host user"
    sbx.kill()


def test_what_a_sandbox_wrote_is_out_of_other_users_reach(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key)
    # Root inside plants a setuid copy of a shell and a readable secret.
    out = sbx.commands.run("cp /bin/bash /tmp/suid && chmod 4755 /tmp/suid && echo s3cret > /tmp/secret && "
                           "chmod 644 /tmp/secret && echo ok", user="root")
    assert out.stdout == "ok\n", out.stderr
    upper = os.path.join(engine.layer_dir(sbx.id), "upper")
    assert os.stat(os.path.join(upper, "tmp", "suid")).st_mode & stat.S_ISUID  # it is there, for root
    try:
        r = as_nobody(os.path.join(upper, "tmp", "suid"), "-p", "-c", "id -u")
        ran = r.stdout
    except PermissionError:
        ran = ""
    assert "1000000" not in ran, "a host user ran a sandbox's setuid binary as the sandbox's uid"
    r = as_nobody("cat", os.path.join(upper, "tmp", "secret"))
    assert r.returncode != 0 and "s3cret" not in r.stdout
    # Inside, the sandbox is unaffected; its own setuid bit grants nothing (no_new_privs).
    r = sbx.commands.run("/tmp/suid -p -c 'id -u'", user="sandbox")
    assert r.stdout.strip() != "0"
    assert sbx.commands.run("cat /tmp/secret", user="sandbox").stdout == "s3cret\n"
    sbx.kill()
