"""Authentication and malformed input: each answer has the right status, error code and a
helpful message, and the engine keeps serving afterwards."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any, Dict, Iterator, List, Optional, Tuple

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


# -- request framing (request smuggling) ---------------------------------------------------------
#
# A request whose body length two HTTP parsers could read differently is refused before any
# of its body is read, and its connection closed, so that no byte after it is ever read as
# a request of its own. Each case is followed on the same connection by a pipelined
# GET /v1/health that must go unanswered.

HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"


def exchange(engine: Engine, data: bytes, quiet: float = 3.0
             ) -> Tuple[int, Dict[str, str], bytes, bytes, bool]:
    """Sends data on one connection and reads until the engine closes it or stays quiet for
    `quiet` s. Returns (status of the first answer or 0 if none, its headers lower-cased,
    its body, every byte after that answer, whether the engine closed the connection)."""
    with socket.create_connection(("127.0.0.1", engine.port), timeout=quiet) as s:
        s.sendall(data)
        got, closed = b"", False
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += chunk
    head, sep, rest = got.partition(b"\r\n\r\n")
    if not sep:
        return 0, {}, b"", got, closed
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    n = int(headers.get("content-length", "0"))
    return int(lines[0].split()[1]), headers, rest[:n], rest[n:], closed


def expect_refused(engine: Engine, request: bytes, status: int, code: str, mentions: str) -> None:
    st, headers, body, after, closed = exchange(engine, request + HEALTH)
    assert st == status, f"expected {status}, got {st} {headers} {body[:300]!r} then {after[:300]!r}"
    doc = json.loads(body)
    assert doc["error"]["code"] == code, doc
    assert mentions.lower() in doc["error"]["message"].lower(), doc
    assert headers.get("connection") == "close", headers
    assert after == b"", f"the bytes after the refused request were answered: {after[:300]!r}"
    assert closed, "the connection stayed open after the refused request"
    assert engine.healthy()


def request(method: str, path: str, headers: List[str], body: bytes = b"",
            version: str = "1.1") -> bytes:
    """The bytes of a request (latin-1, so that "\\xff" in a header is the byte 0xff)."""
    head = [f"{method} {path} HTTP/{version}", "Host: x"] + headers
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def post(path: str, headers: List[str], body: bytes = b"", version: str = "1.1") -> bytes:
    return request("POST", path, headers, body, version)


FRAMING = [
    ("cl_conflict", ["Content-Length: 10", "Content-Length: 11"], b'{"a": 123}x',
     400, "bad_request", "conflicting Content-Length headers (10 and 11)"),
    # libmicrohttpd keeps a connection alive after an early answer when the first length is 0.
    ("cl_zero_then_five", ["Content-Length: 0", "Content-Length: 5"], b"hello",
     400, "bad_request", "conflicting Content-Length headers (0 and 5)"),
    ("cl_not_digits", ["Content-Length: 2", "Content-Length: 2x"], b"{}",
     400, "bad_request", "Content-Length '2x' is not a number"),
    ("cl_and_te", ["Content-Length: 5", "Transfer-Encoding: chunked"], b"0\r\n\r\n",
     400, "bad_request", "both Content-Length and Transfer-Encoding"),
    ("te_and_cl", ["Transfer-Encoding: chunked", "Content-Length: 5"], b"0\r\n\r\n",
     400, "bad_request", "both Content-Length and Transfer-Encoding"),
    ("te_twice", ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], b"0\r\n\r\n",
     400, "bad_request", "two Transfer-Encoding headers"),
    ("te_gzip", ["Transfer-Encoding: gzip"], b"",
     501, "not_implemented", "Transfer-Encoding 'gzip' is not supported"),
    ("te_gzip_chunked", ["Transfer-Encoding: gzip, chunked"], b"0\r\n\r\n",
     501, "not_implemented", "Transfer-Encoding 'gzip, chunked' is not supported"),
    ("te_not_utf8", ["Transfer-Encoding: gzip\xff"], b"",
     501, "not_implemented", "Transfer-Encoding 'gzip?' is not supported"),
    ("name_space_before_colon", ["Content-Length : 5"], b"hello",
     400, "bad_request", "'Content-Length ' is not a token"),
    # A bare CR inside a value: a proxy that splits lines there sees a Content-Length. (A NUL
    # cannot be seen: libmicrohttpd 0.9.75 ends the value there, length included.)
    ("cr_in_a_value", ["X-A: b\rContent-Length: 37"], b"",
     400, "bad_request", "the value of header X-A holds a control byte"),
]


@pytest.mark.parametrize("headers,body,status,code,mentions", [c[1:] for c in FRAMING],
                         ids=[c[0] for c in FRAMING])
def test_ambiguous_framing_is_refused_and_closed(engine: Engine, headers: List[str], body: bytes,
                                                 status: int, code: str, mentions: str) -> None:
    expect_refused(engine, post("/v1/sandboxes", headers, body), status, code, mentions)


def test_chunked_in_http10_is_refused(engine: Engine) -> None:
    expect_refused(engine, post("/v1/sandboxes", ["Transfer-Encoding: chunked"], b"0\r\n\r\n",
                                version="1.0"),
                   400, "bad_request", "HTTP/1.0 request cannot have a Transfer-Encoding")


def test_ambiguous_framing_with_a_valid_key_creates_nothing(engine: Engine, fresh_key: str) -> None:
    body = b'{"metadata": {"k": "v"}}'
    auth = [f"X-API-Key: {fresh_key}", "Content-Type: application/json"]
    expect_refused(engine, post("/v1/sandboxes", auth + [f"Content-Length: {len(body)}",
                                                         f"Content-Length: {len(body) + 1}"],
                                body + b" "),
                   400, "bad_request", f"({len(body)} and {len(body) + 1})")
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    expect_refused(engine, post("/v1/sandboxes", auth + [f"Content-Length: {len(chunked)}",
                                                         "Transfer-Encoding: chunked"], chunked),
                   400, "bad_request", "both Content-Length and Transfer-Encoding")
    assert engine.list(fresh_key) == [], "a refused create left a sandbox"


def test_ambiguous_framing_on_the_upload_route_writes_nothing(engine: Engine, module_key: str,
                                                             sbx: Sandbox) -> None:
    path = f"/v1/sandboxes/{sbx.id}/files?path=/tmp/smuggled"
    auth = [f"X-API-Key: {module_key}"]
    expect_refused(engine, request("PUT", path, auth + ["Content-Length: 5", "Content-Length: 11"],
                                   b"hello world"),
                   400, "bad_request", "conflicting Content-Length headers (5 and 11)")
    expect_refused(engine, request("PUT", path, auth + ["Transfer-Encoding: chunked",
                                                        "Content-Length: 10"],
                                   b"5\r\nhello\r\n0\r\n\r\n"),
                   400, "bad_request", "both Content-Length and Transfer-Encoding")
    assert not sbx.files.exists("/tmp/smuggled"), "a refused upload wrote the file"


def test_unambiguous_framing_keeps_the_connection(engine: Engine, fresh_key: str) -> None:
    """Repeated identical Content-Length values are one length (RFC 9110 8.6) and chunked
    alone is fine: the body is read as the body and the next request is answered."""
    body = b'{"bogus": 1}'
    auth = [f"X-API-Key: {fresh_key}", "Content-Type: application/json"]
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    for req in [post("/v1/sandboxes", auth + [f"Content-Length: {len(body)}"] * 2, body),
                post("/v1/sandboxes", auth + ["Transfer-Encoding: chunked"], chunked)]:
        st, headers, raw, after, closed = exchange(engine, req + HEALTH)
        assert st == 400 and "bogus" in json.loads(raw)["error"]["message"], (st, raw)
        assert after.startswith(b"HTTP/1.1 200 ") and b'"status":"ok"' in after, after
        assert not closed
    assert engine.list(fresh_key) == []


def test_error_message_quoting_bytes_that_are_not_utf8(engine: Engine) -> None:
    st, doc, raw = engine.raw("GET", "/v1/%ff")
    assert st == 404 and doc["error"]["code"] == "not_found", raw
    assert doc["error"]["message"] == "no route GET /v1/?", raw


@pytest.mark.parametrize("n", [15 * 1024 - 40, 15 * 1024 + 100, 40 * 1024])
def test_a_long_query_is_the_callers_error_not_the_sandboxes(engine: Engine, module_key: str, sbx: Sandbox,
                                                              n: int) -> None:
    """A target the agent could not take is a 400 that says so (it was a 502 "sandbox error"
    between 15 and 16 KiB, and escapes at the cap were dropped silently)."""
    path = f"/v1/sandboxes/{sbx.id}/files?path=/tmp/x&pad=" + "%20" * (n // 3)  # stays 3 bytes encoded
    st, doc, raw = engine.raw("GET", path, key=module_key)
    if n < 15 * 1024:
        assert st == 400 and "unknown query parameter 'pad'" in doc["error"]["message"], raw[:300]  # the agent's
    else:
        assert st == 400 and "too long" in doc["error"]["message"], raw[:300]
    assert sbx.commands.run("echo ok").stdout == "ok\n"
