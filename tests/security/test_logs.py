"""A sandbox cannot grow files on the host through the engine's logs: the agent's log
(STATE/sandboxes/<id>/agent.log) stays under its cap however many complaints the sandbox
provokes, and the engine's own log is rate-limited."""

from __future__ import annotations

import os
import time

from it import Engine, wait_until

# From inside the kernel: 100,000 messages with a bad signature on its own IOPub socket, each
# of which the agent drops with a warning.
FLOOD = """
from ipykernel.kernelapp import IPKernelApp
app = IPKernelApp.instance()
frames = [b"<IDS|MSG>", b"0" * 64, b'{"msg_type":"stream","msg_id":"x"}', b"{}", b"{}", b'{"name":"stdout","text":"x"}']
for i in range(100000):
    app.iopub_socket.send_multipart(frames)
print("sent")
"""

CAP = 4 << 20


def test_agent_log_stays_under_its_cap(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key)
    log = os.path.join(engine.state_dir, "sandboxes", sbx.id, "agent.log")
    before = os.path.getsize(log)
    t0 = time.monotonic()
    for _ in range(3):
        ex = sbx.run_code(FLOOD, timeout=120)
        assert ex.error is None and "sent" in ex.logs.stdout[-1], ex
    grew = os.path.getsize(log) - before
    # The agent wrote at most its burst and 20 lines a second (each well under 1 KiB), then
    # said how many it dropped; a rotation, if any, left agent.log.1 at 256 KiB.
    elapsed = time.monotonic() - t0
    assert grew < (200 + 20 * elapsed + 10) * 1024 + 4096, (grew, elapsed)
    assert wait_until(lambda: "suppressed" in open(log, errors="replace").read(), 10)
    assert os.path.getsize(log) <= CAP
    rotated = log + ".1"
    assert not os.path.exists(rotated) or os.path.getsize(rotated) <= 256 << 10
    assert sbx.run_code("1 + 1").text == "2"  # the kernel and the agent still work
    sbx.kill()


def test_an_oversized_agent_log_is_rotated(engine: Engine, module_key: str) -> None:
    """Whatever grew it (here: the test, standing in for a flood), the engine truncates it to
    its cap within seconds and keeps its tail in agent.log.1."""
    sbx = engine.sandbox(module_key)
    log = os.path.join(engine.state_dir, "sandboxes", sbx.id, "agent.log")
    with open(log, "ab") as f:
        f.write(b"x" * (CAP + (1 << 20)) + b"\nthe last line\n")
    assert wait_until(lambda: os.path.getsize(log) < CAP, 15), os.path.getsize(log)
    with open(log + ".1", "rb") as f:
        kept = f.read()
    assert len(kept) == 256 << 10 and b"the last line\n" in kept  # (the agent may have written on)
    assert "agent.log.1" in open(log).read()
    assert sbx.commands.run("echo fine").stdout == "fine\n"
    sbx.kill()
