"""Unit tests of the SDK against a tiny in-process fake of the engine's REST API.

They check the SDK's own behaviour (requests it builds, pagination, error mapping,
context manager); the real engine is exercised by tests/integration.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Tuple
from urllib.parse import parse_qsl, urlsplit

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import ai2in  # noqa: E402
from ai2in import (  # noqa: E402
    AsyncSandbox,
    AuthenticationError,
    CommandExitError,
    InvalidArgumentError,
    NotFoundError,
    RateLimitError,
    Sandbox,
    SandboxError,
    UnavailableError,
)

KEY = "ai2in_live_test"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Fake:
    def __init__(self) -> None:
        self.sandboxes: Dict[str, Dict[str, Any]] = {}
        self.requests: List[Tuple[str, str, Dict[str, str], Any]] = []
        self.n = 0


def make_handler(fake: Fake) -> type:
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def reply(self, status: int, doc: Any) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def err(self, status: int, code: str, msg: str) -> None:
            self.reply(status, {"error": {"code": code, "message": msg}})

        def handle_any(self, method: str) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n)) if n else None
            u = urlsplit(self.path)
            fake.requests.append((method, self.path, dict(self.headers), body))
            if self.headers.get("X-API-Key") != KEY:
                return self.err(401, "unauthorized", "missing or wrong API key")
            parts = u.path.strip("/").split("/")
            if parts[:2] != ["v1", "sandboxes"]:
                return self.err(404, "not_found", "no route")
            if len(parts) == 2 and method == "POST":
                if body.get("template", "base") != "base":
                    return self.err(404, "not_found", f"template {body['template']} not found")
                if len(fake.sandboxes) >= 5:
                    return self.err(429, "limit_exceeded", "cap of 5 running sandboxes")
                fake.n += 1
                sid = "sbx_" + f"{fake.n:020d}"
                fake.sandboxes[sid] = {"id": sid, "state": "running", "end_at": None,
                                       "metadata": body.get("metadata", {})}
                return self.reply(201, fake.sandboxes[sid])
            if len(parts) == 2 and method == "GET":
                q = dict(parse_qsl(u.query))
                items = list(fake.sandboxes.values())
                for k, v in q.items():
                    if k.startswith("metadata."):
                        items = [s for s in items if s["metadata"].get(k[9:]) == v]
                start = int(q.get("next_token", "0"))
                lim = int(q.get("limit", "100"))
                page = items[start:start + lim]
                nxt = str(start + lim) if start + lim < len(items) else None
                return self.reply(200, {"sandboxes": page, "next_token": nxt})
            sid = parts[2]
            s = fake.sandboxes.get(sid)
            if s is None:
                return self.err(404, "not_found", f"sandbox {sid} not found")
            if len(parts) == 3 and method == "GET":
                return self.reply(200, s)
            if len(parts) == 3 and method == "DELETE":
                del fake.sandboxes[sid]
                return self.reply(200, {"status": "killed"})
            if parts[3:] == ["timeout"]:
                # As the engine: at least 1; longer than 24 h is capped, not refused.
                if body["timeout"] < 1:
                    return self.err(400, "bad_request", "timeout must be at least 1 second, "
                                    f"got {body['timeout']} (at most 86400)")
                s["timeout"] = min(body["timeout"], 86400)
                s["end_at"] = "later"
                s["end_reason"] = "timeout"
                return self.reply(200, s)
            if parts[3:] == ["processes"]:  # a whole NDJSON stream with Content-Length
                events = [{"type": "start", "pid": 7},
                          {"type": "stdout", "data": b64("out:" + body["cmd"])},
                          {"type": "stderr", "data": b64("boom\n")},
                          {"type": "end", "exit_code": 3 if "fail" in body["cmd"] else 0,
                           "timed_out": False, "signal": None}]
                data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return None
            return self.err(404, "not_found", "no route")

        def do_GET(self) -> None:
            self.handle_any("GET")

        def do_POST(self) -> None:
            self.handle_any("POST")

        def do_DELETE(self) -> None:
            self.handle_any("DELETE")

    return H


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    f = Fake()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(f))
    t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    t.start()
    monkeypatch.setenv("AI2IN_API_URL", f"http://127.0.0.1:{srv.server_address[1]}")
    monkeypatch.setenv("AI2IN_API_KEY", KEY)
    yield f
    srv.shutdown()
    srv.server_close()


def test_create_info_kill(fake: Fake) -> None:
    sbx = Sandbox(timeout=300, metadata={"u": "a"}, envs={"A": "1"}, memory_mb=256, disk_mb=64)
    assert sbx.id == sbx.sandbox_id and sbx.id.startswith("sbx_")
    method, path, headers, body = fake.requests[-1]
    assert (method, path) == ("POST", "/v1/sandboxes")
    assert headers["X-API-Key"] == KEY
    assert body == {"timeout": 300, "metadata": {"u": "a"}, "envs": {"A": "1"},
                    "memory_mb": 256, "disk_mb": 64}
    assert sbx.get_info()["metadata"] == {"u": "a"}
    assert sbx.is_running()
    sbx.set_timeout(3600)
    assert fake.requests[-1][3] == {"timeout": 3600}
    assert sbx.get_info()["end_at"] == "later"
    assert sbx.kill() is True
    assert sbx.kill() is False
    assert not sbx.is_running()
    with pytest.raises(NotFoundError):
        sbx.get_info()


def test_create_classmethod_and_connect(fake: Fake) -> None:
    a = Sandbox.create()
    n = len(fake.sandboxes)
    b = Sandbox.connect(a.id)
    assert b.id == a.id and len(fake.sandboxes) == n
    with pytest.raises(NotFoundError) as ei:
        Sandbox.connect("sbx_" + "z" * 20)
    assert ei.value.status == 404 and ei.value.code == "not_found"
    assert str(ei.value) == "sandbox sbx_zzzzzzzzzzzzzzzzzzzz not found"


def test_get_host_and_secure(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AI2IN_DOMAIN", raising=False)
    sbx = Sandbox(secure=True)
    assert fake.requests[-1][3] == {"secure": True}
    dns_id = sbx.id.replace("_", "-")  # a valid host name, which a wildcard certificate matches
    assert sbx.id.startswith("sbx_") and "_" not in dns_id
    assert sbx.get_host(8000) == f"8000-{dns_id}.localhost:7301"
    monkeypatch.setenv("AI2IN_DOMAIN", "preview.example.com")
    again = Sandbox.connect(sbx.id)
    assert again.get_host(3000) == f"3000-{dns_id}.preview.example.com"
    assert Sandbox.connect(sbx.id, domain="x.test").get_host(1) == f"1-{dns_id}.x.test"
    assert sbx.get_url(8000) == f"http://8000-{dns_id}.localhost:7301/"
    for bad in (0, 65536, "80", 80.0, True, None):
        with pytest.raises(InvalidArgumentError):
            sbx.get_host(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            sbx.get_url(bad)  # type: ignore[arg-type]
    # The engine says where its preview proxy is: used unless domain= or AI2IN_DOMAIN says.
    fake.sandboxes[sbx.id]["preview"] = {"scheme": "https", "domain": "p.example.org"}
    monkeypatch.delenv("AI2IN_DOMAIN")
    told = Sandbox.connect(sbx.id)
    assert told.get_url(443) == f"https://443-{dns_id}.p.example.org/"
    assert Sandbox.connect(sbx.id, domain="x.test").get_url(1) == f"https://1-{dns_id}.x.test/"
    monkeypatch.setenv("AI2IN_DOMAIN", "env.test")
    assert Sandbox.connect(sbx.id).get_host(2) == f"2-{dns_id}.env.test"


def test_commands(fake: Fake) -> None:
    sbx = Sandbox()
    r = sbx.commands.run("echo hi", envs={"X": "y"}, cwd="/tmp", user="sandbox", timeout=5)
    assert (r.stdout, r.stderr, r.exit_code, r.timed_out) == ("out:echo hi", "boom\n", 0, False)
    assert fake.requests[-1][3] == {"cmd": "echo hi", "envs": {"X": "y"}, "cwd": "/tmp",
                                    "user": "sandbox", "timeout_ms": 5000}
    assert sbx.commands.run("fail").exit_code == 3
    with pytest.raises(CommandExitError) as ei:
        sbx.commands.run("fail", check=True)
    assert ei.value.exit_code == 3 and ei.value.result.stderr == "boom\n"
    assert "3" in str(ei.value) and "boom" in str(ei.value)


def test_list_pages_and_filters(fake: Fake) -> None:
    ids = [Sandbox(metadata={"i": str(i)}).id for i in range(5)]
    got = Sandbox.list(page_size=2)
    assert [s["id"] for s in got] == ids
    assert sum(1 for m, p, _, _ in fake.requests if p.startswith("/v1/sandboxes?")) == 3
    one = Sandbox.list(metadata={"i": "3"}, state=["running", "paused"])
    assert [s["id"] for s in one] == [ids[3]]
    assert "state=running%2Cpaused" in fake.requests[-1][1]
    assert "metadata.i=3" in fake.requests[-1][1]


def test_errors_map(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NotFoundError, match="template nope not found"):
        Sandbox(template="nope")
    for _ in range(5):
        Sandbox()
    with pytest.raises(RateLimitError) as ei:
        Sandbox()
    assert ei.value.status == 429 and "5" in ei.value.message
    sbx = Sandbox.list()[0]
    with pytest.raises(InvalidArgumentError, match="at least 1"):
        Sandbox.connect(sbx["id"]).set_timeout(0)
    # Over 24 h is the engine's to cap: the SDK sends it as it is and does not refuse it.
    Sandbox.connect(sbx["id"]).set_timeout(10**6)
    assert fake.requests[-1][3] == {"timeout": 10**6}
    assert Sandbox.connect(sbx["id"]).get_info()["timeout"] == 86400
    with pytest.raises(AuthenticationError) as ai:
        Sandbox(api_key="wrong")
    assert ai.value.status == 401 and ai.value.code == "unauthorized"
    monkeypatch.delenv("AI2IN_API_KEY")
    with pytest.raises(AuthenticationError, match="AI2IN_API_KEY"):
        Sandbox()
    assert isinstance(ai.value, SandboxError)


def test_status_classes() -> None:
    from ai2in._transport import error_from_response
    body = b'{"error": {"code": "unavailable", "message": "the sandbox\'s pids limit is reached"}}'
    e = error_from_response(503, body)
    assert isinstance(e, UnavailableError) and isinstance(e, SandboxError)
    assert (e.status, e.code, str(e)) == (503, "unavailable", "the sandbox's pids limit is reached")
    assert type(error_from_response(502, b"")) is SandboxError


def test_context_manager(fake: Fake) -> None:
    with Sandbox() as sbx:
        assert sbx.id in fake.sandboxes
    assert sbx.id not in fake.sandboxes
    with pytest.raises(ValueError):
        with Sandbox() as sbx2:
            del fake.sandboxes[sbx2.id]  # kill on exit finds it gone: no error over ValueError
            fake.sandboxes["x"] = {}  # noqa
            raise ValueError("body")


def test_unreachable_and_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(SandboxError, match="not reachable") as ei:
        Sandbox(api_key=KEY, api_url=f"http://127.0.0.1:{port}")
    assert f"127.0.0.1:{port}" in str(ei.value)
    # A server that accepts but never answers: client-side timeout.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        with pytest.raises(ai2in.TimeoutError):
            Sandbox(api_key=KEY, api_url=f"http://127.0.0.1:{srv.getsockname()[1]}",
                    request_timeout=0.3)
        with pytest.raises(TimeoutError):  # the built-in name catches it too
            Sandbox(api_key=KEY, api_url=f"http://127.0.0.1:{srv.getsockname()[1]}",
                    request_timeout=0.3)
    finally:
        srv.close()


def test_async(fake: Fake) -> None:
    async def main() -> None:
        async with await AsyncSandbox.create(metadata={"a": "b"}) as sbx:
            r = await sbx.commands.run("echo hi")
            assert r.stdout == "out:echo hi"
            assert (await sbx.get_info())["metadata"] == {"a": "b"}
            assert await sbx.is_running()
            other = await AsyncSandbox.connect(sbx.id)
            assert other.sandbox_id == sbx.id
            assert [s["id"] for s in await AsyncSandbox.list()] == [sbx.id]
        assert await other.kill() is False

    asyncio.run(main())
