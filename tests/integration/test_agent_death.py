"""When a sandbox's agent (its init) dies, the sandbox goes to `error` with the reason, calls
answer with that reason rather than a bare 502, and kill still cleans it up."""

from __future__ import annotations

import os
import time

import pytest
from conftest import Engine, mounts_under

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
