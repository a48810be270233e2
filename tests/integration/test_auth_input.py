"""Authentication and malformed input: each answer has the right status, error code and a
helpful message, and the engine keeps serving afterwards."""

from __future__ import annotations

import http.client
import json
from typing import Any, Iterator, Optional

import pytest
from conftest import Engine, free_port

from ai2in import AuthenticationError, InvalidArgumentError, NotFoundError, Sandbox, SandboxError


@pytest.fixture(autouse=True)
def still_serving(engine: Engine) -> Iterator[None]:
    yield
    assert engine.running, "the engine died"
    assert engine.healthy(), "the engine stopped answering /v1/health"


def expect(engine: Engine, method: str, path: str, status: int, code: str,
           body: Any = None, key: Optional[str] = None, mentions: Optional[str] = None,
           headers: Optional[dict] = None) -> str:
    st, doc, raw = engine.raw(method, path, body=body, key=key, headers=headers)
    assert st == status, f"{method} {path}: expected {status}, got {st}: {raw[:300]!r}"
    assert isinstance(doc, dict) and isinstance(doc.get("error"), dict), \
        f"{method} {path}: error body is not {{\"error\": {{...}}}}: {raw[:300]!r}"
    assert doc["error"].get("code") == code, f"{method} {path}: {doc}"
    msg = doc["error"].get("message")
    assert isinstance(msg, str) and len(msg) > 5, f"{method} {path}: unhelpful message {doc}"
    if mentions is not None:  # "a|b": either will do
        assert any(m.lower() in msg.lower() for m in mentions.split("|")), \
            f"{method} {path}: message {msg!r} should mention {mentions!r}"
    return msg


def test_health_needs_no_key(engine: Engine) -> None:
    st, doc, raw = engine.raw("GET", "/v1/health")
    assert st == 200 and doc["status"] == "ok" and isinstance(doc.get("version"), str), raw


def test_no_key(engine: Engine) -> None:
    expect(engine, "GET", "/v1/sandboxes", 401, "unauthorized", mentions="key")
    expect(engine, "POST", "/v1/sandboxes", 401, "unauthorized", body={})


def test_wrong_key(engine: Engine, key: str) -> None:
    expect(engine, "GET", "/v1/sandboxes", 401, "unauthorized", key="ai2in_live_" + "x" * 40)
    expect(engine, "GET", "/v1/sandboxes", 401, "unauthorized", key=key[:-1])
    expect(engine, "GET", "/v1/sandboxes", 401, "unauthorized",
           headers={"Authorization": "Bearer nope"})
    with pytest.raises(AuthenticationError) as ei:
        Sandbox(api_key="ai2in_live_wrong", api_url=engine.url)
    assert ei.value.status == 401 and ei.value.code == "unauthorized" and str(ei.value)


def test_bearer_header(engine: Engine, key: str) -> None:
    st, doc, raw = engine.raw("GET", "/v1/sandboxes",
                              headers={"Authorization": f"Bearer {key}"})
    assert st == 200 and isinstance(doc.get("sandboxes"), list), raw


def test_sdk_without_key(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AI2IN_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="AI2IN_API_KEY"):
        Sandbox(api_url=engine.url)


def test_sdk_env_fallback(engine: Engine, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI2IN_API_KEY", key)
    monkeypatch.setenv("AI2IN_API_URL", engine.url)
    with Sandbox() as sbx:
        assert sbx.api_url == engine.url
        assert sbx.commands.run("echo env").stdout == "env\n"


def test_sdk_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SandboxError, match="not reachable") as ei:
        Sandbox(api_key="ai2in_live_x", api_url=url)
    assert url in str(ei.value)


BAD_CREATES = [
    (b"{not json", "json"),
    (b"[1, 2]", "object"),
    (b"\"a string\"", "object|'{'"),
    (json.dumps({"bogus": 1}).encode(), "bogus"),
    (json.dumps({"timeout": -1}).encode(), "timeout"),
    (json.dumps({"timeout": 0}).encode(), "timeout"),
    (json.dumps({"timeout": -10**12}).encode(), "timeout"),
    (json.dumps({"timeout": "abc"}).encode(), "timeout"),
    (json.dumps({"timeout": 1.5}).encode(), "timeout"),
    (json.dumps({"memory_mb": 10**9}).encode(), "memory_mb"),
    (json.dumps({"memory_mb": 1}).encode(), "memory_mb"),
    (json.dumps({"cpu_count": 1000}).encode(), "cpu_count"),
    (json.dumps({"metadata": {"k": 1}}).encode(), "metadata"),
    (json.dumps({"metadata": {f"k{i}": "v" for i in range(65)}}).encode(), "metadata"),
    (json.dumps({"envs": ["A=1"]}).encode(), "envs"),
    (json.dumps({"template": 5}).encode(), "template"),
]


@pytest.mark.parametrize("body,mentions", BAD_CREATES,
                         ids=[m + str(i) for i, (_, m) in enumerate(BAD_CREATES)])
def test_bad_create_body(engine: Engine, fresh_key: str, body: bytes, mentions: str) -> None:
    expect(engine, "POST", "/v1/sandboxes", 400, "bad_request", body=body, key=fresh_key,
           mentions=mentions)
    assert engine.list(fresh_key) == [], "a refused create left a sandbox"


def test_unknown_template(engine: Engine, fresh_key: str) -> None:
    expect(engine, "POST", "/v1/sandboxes", 404, "not_found", body={"template": "no-such-tpl"},
           key=fresh_key, mentions="no-such-tpl")
    with pytest.raises(NotFoundError, match="no-such-tpl"):
        Sandbox(api_key=fresh_key, api_url=engine.url, template="no-such-tpl")
    with pytest.raises(InvalidArgumentError, match="timeout"):
        Sandbox(api_key=fresh_key, api_url=engine.url, timeout=-1)
    assert engine.list(fresh_key) == []


def test_oversized_body(engine: Engine, fresh_key: str) -> None:
    big = json.dumps({"metadata": {"k": "x" * (2 << 20)}}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", engine.port, timeout=30)
    try:
        conn.putrequest("POST", "/v1/sandboxes")
        conn.putheader("X-API-Key", fresh_key)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(big)))
        conn.endheaders()
        try:
            conn.send(big)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the engine may answer and close before reading it all
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    assert resp.status == 413, raw[:300]
    doc = json.loads(raw)
    assert doc["error"]["code"] == "payload_too_large"
    assert engine.list(fresh_key) == []


@pytest.mark.parametrize("bad_id", ["sbx_X", "sbx_ABCDEFGHIJKLMNOPQRST", "sbx_" + "a" * 21,
                                    "abc_" + "a" * 20, "sbx_aaaaaaaaaaaaaaaaaaa%21"])
def test_bad_id_shape(engine: Engine, key: str, bad_id: str) -> None:
    expect(engine, "GET", f"/v1/sandboxes/{bad_id}", 400, "bad_request", key=key)
    expect(engine, "DELETE", f"/v1/sandboxes/{bad_id}", 400, "bad_request", key=key)
    expect(engine, "POST", f"/v1/sandboxes/{bad_id}/processes", 400, "bad_request", key=key,
           body={"cmd": "true"})
    expect(engine, "GET", f"/v1/sandboxes/{bad_id}/files?path=/etc/hostname", 400,
           "bad_request", key=key)


def test_path_traversal_id(engine: Engine, key: str) -> None:
    # "../etc" as the SDK sends it (percent-encoded). The engine decodes the path before
    # routing, so this is "no such route" (404) or a malformed id (400); never a file, never
    # a 5xx.
    for path in ["/v1/sandboxes/..%2Fetc", "/v1/sandboxes/..%2F..%2Fetc%2Fpasswd",
                 "/v1/sandboxes/../../etc/passwd"]:
        st, doc, raw = engine.raw("GET", path, key=key)
        assert st in (400, 404), f"GET {path}: {st} {raw[:200]!r}"
        assert doc["error"]["code"] in ("bad_request", "not_found") and b"root:" not in raw
    with pytest.raises((InvalidArgumentError, NotFoundError)):
        Sandbox.connect("../etc", api_key=key, api_url=engine.url)


def test_unknown_route_and_method(engine: Engine, key: str) -> None:
    expect(engine, "GET", "/v1/nothing-here", 404, "not_found", key=key)
    expect(engine, "GET", "/nothing", 404, "not_found", key=key)
    expect(engine, "POST", f"/v1/sandboxes/sbx_{'a' * 20}/frobnicate", 404, "not_found",
           key=key, body={})
    expect(engine, "PUT", "/v1/sandboxes", 405, "method_not_allowed", key=key, body={})
    expect(engine, "DELETE", "/v1/sandboxes", 405, "method_not_allowed", key=key)
    expect(engine, "PATCH", f"/v1/sandboxes/sbx_{'a' * 20}", 405, "method_not_allowed",
           key=key, body={})
    expect(engine, "GET", f"/v1/sandboxes/sbx_{'a' * 20}/timeout", 405,
           "method_not_allowed", key=key)


def test_bad_command_and_timeout_bodies(engine: Engine, key: str) -> None:
    sbx = engine.sandbox(key)
    base = f"/v1/sandboxes/{sbx.id}"
    expect(engine, "POST", base + "/processes", 400, "bad_request", key=key, body={},
           mentions="cmd")
    expect(engine, "POST", base + "/processes", 400, "bad_request", key=key, body={"cmd": 5},
           mentions="cmd")
    expect(engine, "POST", base + "/processes", 400, "bad_request", key=key,
           body={"cmd": "true", "user": "nobody-such"}, mentions="user")
    expect(engine, "POST", base + "/processes", 400, "bad_request", key=key,
           body={"cmd": "true", "bogus": 1}, mentions="bogus")
    expect(engine, "POST", base + "/processes", 400, "bad_request", key=key,
           body={"cmd": "true", "timeout_ms": -1}, mentions="timeout")
    expect(engine, "POST", base + "/processes", 400, "bad_request", key=key, body=b"{")
    expect(engine, "POST", base + "/files/mkdir", 400, "bad_request", key=key, body={},
           mentions="path")
    expect(engine, "POST", base + "/files/rename", 400, "bad_request", key=key,
           body={"from": "/tmp/a"}, mentions="to")
    expect(engine, "GET", base + "/files", 400, "bad_request", key=key, mentions="path")
    expect(engine, "GET", base + "/files/list?path=/tmp&depth=0", 400, "bad_request",
           key=key, mentions="depth")
    expect(engine, "POST", base + "/timeout", 400, "bad_request", key=key, body={},
           mentions="timeout")
    expect(engine, "POST", base + "/timeout", 400, "bad_request", key=key,
           body={"timeout": "10"}, mentions="timeout")
    expect(engine, "POST", base + "/timeout", 400, "bad_request", key=key, body=b"{",)
    assert sbx.commands.run("echo fine").stdout == "fine\n"


def test_list_bad_query(engine: Engine, key: str) -> None:
    expect(engine, "GET", "/v1/sandboxes?limit=0", 400, "bad_request", key=key,
           mentions="limit")
    expect(engine, "GET", "/v1/sandboxes?limit=1001", 400, "bad_request", key=key,
           mentions="limit")
    expect(engine, "GET", "/v1/sandboxes?state=bogus", 400, "bad_request", key=key,
           mentions="state")


def test_encoded_crlf_in_a_forwarded_path_cannot_forge_an_agent_request(engine: Engine, key: str) -> None:
    """The engine forwards paths under …/files to the agent; a decoded CR/LF in one must not
    end the request line and smuggle a second request to the agent."""
    sbx = engine.sandbox(key)
    forged = (f"/v1/sandboxes/{sbx.id}/files/info%20HTTP/1.1%0d%0aX:%20y%0d%0a%0d%0a"
              "DELETE%20/files?path=/etc/hostname")
    status, doc, raw = engine.raw("GET", forged, key=key)
    assert status == 404, raw
    assert "no route" in doc["error"]["message"], doc
    assert sbx.files.exists("/etc/hostname")  # the smuggled DELETE never ran
    status, doc, raw = engine.raw("GET", f"/v1/sandboxes/{sbx.id}/files/info?path=%00", key=key)
    assert status == 400 and "NUL" in doc["error"]["message"], raw
