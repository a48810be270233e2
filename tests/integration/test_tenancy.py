"""Teams see only their own sandboxes: another team's answers exactly like a missing one."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import pytest
from conftest import Engine

from ai2in import NotFoundError, Sandbox

MISSING = "sbx_" + "m" * 20


def answers(e: Engine, key: str, sid: str) -> Dict[str, Tuple[int, Any]]:
    calls = {
        "get": ("GET", f"/v1/sandboxes/{sid}", None),
        "timeout": ("POST", f"/v1/sandboxes/{sid}/timeout", {"timeout": 5}),
        "processes": ("POST", f"/v1/sandboxes/{sid}/processes", {"cmd": "touch /tmp/pwned"}),
        "process list": ("GET", f"/v1/sandboxes/{sid}/processes", None),
        "file read": ("GET", f"/v1/sandboxes/{sid}/files?path=/etc/hostname", None),
        "file mkdir": ("POST", f"/v1/sandboxes/{sid}/files/mkdir", {"path": "/tmp/pwned"}),
        "kill": ("DELETE", f"/v1/sandboxes/{sid}", None),
    }
    out = {}
    for name, (m, path, body) in calls.items():
        st, doc, raw = e.raw(m, path, body=body, key=key)
        err = doc.get("error", {}) if isinstance(doc, dict) else {}
        out[name] = (st, err.get("code"), str(err.get("message", raw)).replace(sid, "<ID>"))
    return out


def test_other_team_sees_404(engine: Engine) -> None:
    a = engine.make_key("tenant-a")
    b = engine.make_key("tenant-b")
    sbx = engine.sandbox(a, metadata={"owner": "a"})
    theirs = answers(engine, b, sbx.id)
    missing = answers(engine, b, MISSING)
    for name in theirs:
        assert theirs[name][0] == 404 and theirs[name][1] == "not_found", (name, theirs[name])
        assert theirs[name] == missing[name], \
            f"{name}: another team's sandbox must answer like a missing one: " \
            f"{theirs[name]} vs {missing[name]}"
    with pytest.raises(NotFoundError) as e1:
        Sandbox.connect(sbx.id, api_key=b, api_url=engine.url)
    with pytest.raises(NotFoundError) as e2:
        Sandbox.connect(MISSING, api_key=b, api_url=engine.url)
    assert e1.value.message.replace(sbx.id, "<ID>") == e2.value.message.replace(MISSING, "<ID>")
    # Nothing B did touched A's sandbox.
    info = sbx.get_info()
    assert info["state"] == "running" and info["deadline"] is None
    assert sbx.commands.run("test -e /tmp/pwned").exit_code == 1
    assert sbx.id not in [s["id"] for s in engine.list(b)]
    assert sbx.id not in [s["id"] for s in engine.list(b, metadata={"owner": "a"})]
    assert sbx.id in [s["id"] for s in engine.list(a)]
