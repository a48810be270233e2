"""When a sandbox's agent (its init) dies, the sandbox goes to `error` with the reason, calls
answer with that reason rather than a bare 502, and kill still cleans it up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import Engine, mounts_under, wait_for

from ai2in import ConflictError, SandboxError


def test_agent_death_puts_sandbox_in_error(engine: Engine, key: str) -> None:
    sbx = engine.sandbox(key)
    # SIGTERM to pid 1 from inside makes the agent (and so the container) exit.
    try:
        sbx.commands.run("kill -TERM 1; sleep 5", timeout=10)
    except SandboxError:
        pass
    state = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            sbx.commands.run("true", timeout=5)
        except SandboxError:
            pass
        state = sbx.get_info()
        if state["state"] == "error":
            break
        time.sleep(0.2)
    assert state is not None and state["state"] == "error", state
    assert "agent" in (state["error"] or ""), state
    assert state["end_at"] is None

    with pytest.raises(ConflictError) as info:
        sbx.commands.run("true")
    assert "agent" in str(info.value) and "exited" in str(info.value), str(info.value)

    # Listed as error (not running), not counted against the cap; kill removes everything.
    ids = [s["id"] for s in engine.list(key, state="error")]
    assert sbx.id in ids
    assert sbx.kill() is True
    assert not os.path.exists(os.path.join(engine.state_dir, "sandboxes", sbx.id))
    assert not [m for m in mounts_under(engine.state_dir) if sbx.id in m]


def _agent_host_pid(engine: Engine, sandbox_id: str) -> int:
    out = subprocess.run(["runc", "--root", os.path.join(engine.run_dir, "runc"), "state", sandbox_id],
                         capture_output=True, text=True, check=True).stdout
    return int(json.loads(out)["pid"])


def test_agent_killed_from_outside_ends_open_streams_with_the_reason(engine: Engine, key: str) -> None:
    sbx = engine.sandbox(key)
    h = sbx.commands.run("echo started; sleep 300", background=True)
    wait_for(lambda: "started" in h.stdout, 10, "the command's first output")
    os.kill(_agent_host_pid(engine, sbx.id), signal.SIGKILL)

    # The open stream ends with the reason instead of hanging or breaking off silently.
    result = h.wait(timeout=30)
    assert result.error and "agent" in result.error and "exited" in result.error, result
    info = sbx.get_info()
    assert info["state"] == "error", info
    assert "agent" in (info["error"] or "") and "exited" in info["error"], info
    with pytest.raises(ConflictError) as err:
        sbx.files.read("/etc/hostname")
    assert "exited" in str(err.value), str(err.value)
    assert sbx.kill() is True
