"""Preview URLs: http://{port}-{id}.{domain}/ through the engine's preview proxy reaches that
port inside the sandbox — plain requests, keep-alive, 50 MB both ways, chunked uploads,
server-sent events as they happen, a WebSocket echo, servers bound to 127.0.0.1, the same
URL after pause and resume, the errors a person reads (404, 409, 502, 403, 400, 421), secure
sandboxes' traffic token (and its removal before the sandbox sees the request), preview
traffic as activity for the idle reaper, and a real browser (headless Chromium) loading a
page whose script runs.

The requests go to 127.0.0.1:<the engine's preview port> with the preview host in the Host
header, exactly what a browser sends for http://{port}-{id}.localhost:{port}/.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import pytest
from ai2in import InvalidArgumentError, Sandbox
from conftest import Engine, rand_suffix, start_engine, wait_until

SERVER = (Path(__file__).parent / "preview" / "server.py").read_text()
SERVER_PATH = "/tmp/ai2in-preview-server.py"
PORT = 8000


def start_server(sbx: Sandbox, port: int = PORT, bind: str = "0.0.0.0") -> None:
    sbx.files.write(SERVER_PATH, SERVER)
    # Not followed: an open output stream would count as activity (test_preview_traffic_is_activity).
    sbx.commands.run(f"python3 {SERVER_PATH} {port} {bind}", background=True).disconnect()


def request(engine: Engine, host: str, method: str = "GET", path: str = "/hello",
            body: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None,
            conn: Optional[http.client.HTTPConnection] = None, timeout: float = 30
            ) -> Tuple[int, Dict[str, str], bytes]:
    """One request through the proxy with Host: host; returns (status, headers, body)."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", engine.preview_port, timeout=timeout)
    try:
        c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        c.putheader("Host", host)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        if body is not None:
            c.putheader("Content-Length", str(len(body)))
        c.endheaders(body)
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        if own:
            c.close()


def wait_served(engine: Engine, host: str, timeout: float = 20) -> None:
    ok = wait_until(lambda: request(engine, host)[0] == 200, timeout, 0.2)
    assert ok, f"the server in the sandbox never answered through {host}: {request(engine, host)}"


@pytest.fixture(scope="module")
def served(engine: Engine, module_key: str) -> Iterator[Sandbox]:
    """A sandbox running the test server on port 8000 (all addresses)."""
    sbx = engine.sandbox(module_key)
    start_server(sbx)
    wait_served(engine, sbx.get_host(PORT))
    yield sbx
    sbx.kill()


def test_get_host_shape(engine: Engine, served: Sandbox) -> None:
    # DNS-safe: the id's "_" as "-", so that the host is a valid name and a wildcard
    # certificate *.{domain} matches it.
    dns_id = served.id.replace("_", "-")
    assert served.id.startswith("sbx_") and "_" not in dns_id
    assert served.get_host(8000) == f"8000-{dns_id}.localhost:{engine.preview_port}"
    other = Sandbox.connect(served.id, api_key=served._transport.api_key, api_url=engine.url)
    assert other.get_host(3000).startswith(f"3000-{dns_id}.")
    for bad in (0, 65536, -1, "80", True):
        with pytest.raises(InvalidArgumentError):
            served.get_host(bad)  # type: ignore[arg-type]


def test_get_through_the_proxy(engine: Engine, served: Sandbox) -> None:
    status, headers, body = request(engine, served.get_host(PORT))
    assert (status, body) == (200, b"hello from the sandbox")
    # curl, as a user would type it: *.localhost resolves to loopback by itself.
    out = subprocess.run(["curl", "-sS", "--max-time", "20", f"http://{served.get_host(PORT)}/hello"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout == "hello from the sandbox", out.stderr


def test_keep_alive_many_requests_one_connection(engine: Engine, served: Sandbox) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", engine.preview_port, timeout=30)
    try:
        for i in range(50):
            status, _, body = request(engine, served.get_host(PORT), conn=conn,
                                      path="/big?n=%d" % (i * 1000))
            assert status == 200 and body == (bytes(range(256)) * 200)[: i * 1000]
        assert conn.sock is not None  # still the same connection
    finally:
        conn.close()


def test_post_50_mb(engine: Engine, served: Sandbox) -> None:
    data = os.urandom(1 << 20) * 50
    status, _, body = request(engine, served.get_host(PORT), "POST", "/sha", body=data, timeout=120)
    assert status == 200
    assert json.loads(body) == {"sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}


def test_download_50_mb(engine: Engine, served: Sandbox) -> None:
    n = 50 << 20
    status, headers, body = request(engine, served.get_host(PORT), path=f"/big?n={n}", timeout=120)
    assert status == 200 and len(body) == n
    assert hashlib.sha256(body).digest() == hashlib.sha256((bytes(range(256)) * 4096 * 50)).digest()


def test_chunked_upload(engine: Engine, served: Sandbox) -> None:
    parts = [os.urandom(n) for n in (1, 4096, 70000, 3)]
    conn = http.client.HTTPConnection("127.0.0.1", engine.preview_port, timeout=30)
    try:
        conn.putrequest("POST", "/sha", skip_host=True)
        conn.putheader("Host", served.get_host(PORT))
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for p in parts:
            conn.send(b"%x\r\n%s\r\n" % (len(p), p))
        conn.send(b"0\r\n\r\n")
        r = conn.getresponse()
        whole = b"".join(parts)
        assert json.loads(r.read()) == {"sha256": hashlib.sha256(whole).hexdigest(), "length": len(whole)}
        # The connection goes on after a chunked body: the next request is found where it starts.
        status, _, body = request(engine, served.get_host(PORT), conn=conn)
        assert (status, body) == (200, b"hello from the sandbox")
    finally:
        conn.close()


def test_server_sent_events_arrive_as_sent(engine: Engine, served: Sandbox) -> None:
    with socket.create_connection(("127.0.0.1", engine.preview_port), timeout=20) as s:
        s.sendall(f"GET /sse?n=4 HTTP/1.1\r\nHost: {served.get_host(PORT)}\r\n"
                  "Accept: text/event-stream\r\n\r\n".encode())
        got = b""
        arrivals = []
        t0 = time.monotonic()
        while got.count(b"data: ") < 4:
            chunk = s.recv(65536)
            assert chunk, f"stream ended early: {got!r}"
            got += chunk
            while len(arrivals) < got.count(b"data: "):
                arrivals.append(time.monotonic() - t0)
    assert b"text/event-stream" in got
    # The first event is there long before the last is even sent (0.5 s apart).
    assert arrivals[0] < 1.0 and arrivals[-1] - arrivals[0] > 1.0, arrivals


def ws_frame(payload: bytes, opcode: int = 1) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 \
        else bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_read(f) -> Tuple[int, bytes]:
    b0, b1 = f.read(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", f.read(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", f.read(8))[0]
    return b0 & 0x0F, f.read(n)


def test_websocket_echo(engine: Engine, served: Sandbox) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", engine.preview_port), timeout=20) as s:
        s.sendall((f"GET /ws HTTP/1.1\r\nHost: {served.get_host(PORT)}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        f = s.makefile("rb")
        status = f.readline()
        assert b" 101 " in status, status
        headers = b""
        while (line := f.readline()) not in (b"\r\n", b""):
            headers += line
        want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                                             .encode()).digest())
        assert want in headers
        for msg in (b"hello", "ünïcode ✓".encode(), os.urandom(70000)):
            s.sendall(ws_frame(msg, 1 if len(msg) < 100 else 2))
            op, echoed = ws_read(f)
            assert echoed == msg
        s.sendall(ws_frame(b"", 8))
        assert ws_read(f)[0] == 8


def test_both_forms_of_the_id_reach_the_sandbox(engine: Engine, served: Sandbox) -> None:
    dns_host = f"{PORT}-{served.id.replace('_', '-')}.localhost:{engine.preview_port}"
    api_host = f"{PORT}-{served.id}.localhost:{engine.preview_port}"
    for host in (dns_host, api_host, dns_host.upper()):
        status, _, body = request(engine, host)
        assert (status, body) == (200, b"hello from the sandbox"), (host, status, body)
    # One keep-alive connection may switch between the two spellings of the same sandbox.
    conn = http.client.HTTPConnection("127.0.0.1", engine.preview_port, timeout=30)
    try:
        assert request(engine, dns_host, conn=conn)[0] == 200
        assert request(engine, api_host, conn=conn)[0] == 200
    finally:
        conn.close()
    rest = served.id[len("sbx_"):]
    for host in (f"{PORT}-sbx--{rest[1:]}.localhost",     # the id one character short
                 f"{PORT}-sbx-{rest}-.localhost",         # a character too many
                 f"{PORT}-sbx-{rest[:-1]}_.localhost",    # "_" inside the random part
                 f"{PORT}-sbx{rest}.localhost",           # no separator
                 f"{PORT}-xbx-{rest}.localhost"):          # not a sandbox id
        status, _, body = request(engine, host)
        assert status == 400 and b"not a preview host" in body, (host, status, body)


def test_server_bound_to_loopback_is_reachable(engine: Engine, served: Sandbox) -> None:
    start_server(served, 8001, "127.0.0.1")
    wait_served(engine, served.get_host(8001))
    assert request(engine, served.get_host(8001))[2] == b"hello from the sandbox"


def test_errors_a_person_can_read(engine: Engine, served: Sandbox) -> None:
    status, headers, body = request(engine, served.get_host(9999))
    assert status == 502 and b"nothing is listening on port 9999" in body
    assert headers["content-type"].startswith("text/plain")
    status, _, body = request(engine, f"8000-sbx_{'a' * 20}.localhost")
    assert status == 404 and b"no sandbox" in body
    for host in ("localhost", "8000.localhost", f"0-{served.id}.localhost", f"70000-{served.id}.localhost"):
        status, _, body = request(engine, host)
        assert status == 400 and b"not a preview host" in body, (host, body)
    # A request for another sandbox or port on a connection already tunnelled elsewhere.
    conn = http.client.HTTPConnection("127.0.0.1", engine.preview_port, timeout=30)
    try:
        assert request(engine, served.get_host(PORT), conn=conn)[0] == 200
        status, _, body = request(engine, served.get_host(8001), conn=conn)
        assert status == 421 and b"open another connection" in body
    finally:
        conn.close()


def test_connections_per_sandbox_are_capped(engine: Engine, served: Sandbox) -> None:
    host = served.get_host(PORT)
    conns = []
    try:
        # Connections of earlier tests may still be closing: the cap is met at 256 or a few
        # before, never after.
        for _ in range(300):
            c = http.client.HTTPConnection("127.0.0.1", engine.preview_port, timeout=30)
            status, headers, body = request(engine, host, conn=c)
            conns.append(c)
            if status != 200:
                break
        assert status == 503 and b"256 preview connections open" in body, (status, body)
        assert headers["retry-after"] == "1"
        assert 250 <= len(conns) - 1 <= 256, len(conns)
        # The owner's own calls still get through the agent.
        assert served.commands.run("echo still-mine").stdout == "still-mine\n"
    finally:
        for c in conns:
            c.close()
    assert wait_until(lambda: request(engine, host)[0] == 200, 10, 0.2)


def test_bad_request_framing_is_400(engine: Engine, served: Sandbox) -> None:
    with socket.create_connection(("127.0.0.1", engine.preview_port), timeout=20) as s:
        s.sendall(f"POST /sha HTTP/1.1\r\nHost: {served.get_host(PORT)}\r\nContent-Length: 3\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 "), answer


def test_paused_is_409_and_same_url_after_resume(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key)
    start_server(sbx)
    host = sbx.get_host(PORT)
    wait_served(engine, host)
    sbx.pause()
    status, _, body = request(engine, host)
    assert status == 409 and b"is paused" in body
    sbx.resume()
    # Processes do not survive a pause; the file does. The same URL reaches the new server.
    status, _, body = request(engine, host)
    assert status == 502
    start_server(sbx)
    wait_served(engine, host)
    assert request(engine, host)[2] == b"hello from the sandbox"
    sbx.kill()
    assert request(engine, host)[0] == 404


def test_secure_sandbox_needs_its_token(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key, secure=True)
    token = sbx.traffic_access_token
    assert isinstance(token, str) and len(token) >= 32
    info = sbx.get_info()
    assert info["secure"] is True and info["traffic_access_token"] == token
    start_server(sbx)
    host = sbx.get_host(PORT)
    good = {"X-Ai2in-Traffic-Token": token}
    assert wait_until(lambda: request(engine, host, headers=good)[0] == 200, 20, 0.2)
    for headers in ({}, {"X-Ai2in-Traffic-Token": token[:-1]}, {"X-Ai2in-Traffic-Token": token + "x"}):
        status, _, body = request(engine, host, headers=headers)
        assert status == 403 and b"traffic token" in body
    # Not told whether a port listens, either.
    assert request(engine, sbx.get_host(9999))[0] == 403
    status, _, body = request(engine, host, path="/headers", headers=good)
    seen = json.loads(body)
    assert status == 200 and "x-ai2in-traffic-token" not in seen and seen["host"] == host
    # Every request of a kept-alive connection needs it, not only the first.
    conn = http.client.HTTPConnection("127.0.0.1", engine.preview_port, timeout=30)
    try:
        assert request(engine, host, conn=conn, headers=good)[0] == 200
        assert request(engine, host, conn=conn)[0] == 403
    finally:
        conn.close()
    # An open sandbox has no token.
    plain = engine.sandbox(module_key)
    assert plain.traffic_access_token is None and plain.get_info()["secure"] is False
    plain.kill()
    sbx.kill()


def test_secure_must_be_a_boolean(engine: Engine, module_key: str) -> None:
    status, doc, _ = engine.raw("POST", "/v1/sandboxes", {"secure": "yes"}, key=module_key)
    assert status == 400 and "secure must be true or false" in doc["error"]["message"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a host process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_half_closed_then_reset_clients_do_not_spin(engine: Engine, served: Sandbox) -> None:
    """A client that sends a request, shuts its side, then resets while the server stays
    silent; and clients that never read a big answer: the engine must not busy-loop."""
    host = served.get_host(PORT)
    socks = []
    for i in range(4):
        s = socket.create_connection(("127.0.0.1", engine.preview_port), timeout=10)
        s.sendall(f"GET /silent HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        s.shutdown(socket.SHUT_WR)
        socks.append(s)
    for i in range(4):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", engine.preview_port))
        s.sendall(f"GET /big?n={8 << 20} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        socks.append(s)
    time.sleep(1)
    for s in socks[:4]:  # reset
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    time.sleep(0.5)
    before = cpu_seconds(engine.pid())
    time.sleep(3)
    used = cpu_seconds(engine.pid()) - before
    for s in socks[4:]:
        s.close()
    assert used < 0.5, f"the engine used {used:.2f} s of CPU in 3 s with only stalled preview clients"
    # ... and the sandbox's agent let go of the reset ones: its own calls still work at once.
    assert served.commands.run("echo ok", timeout=10).stdout == "ok\n"


def test_refused_upgrade_keeps_checking_requests(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key, secure=True)
    start_server(sbx)
    host = sbx.get_host(PORT)
    good = {"X-Ai2in-Traffic-Token": sbx.traffic_access_token or ""}
    assert wait_until(lambda: request(engine, host, headers=good)[0] == 200, 20, 0.2)
    conn = http.client.HTTPConnection("127.0.0.1", engine.preview_port, timeout=30)
    try:
        # The server answers 200, not 101: the connection stays HTTP, and checked.
        status, _, _ = request(engine, host, conn=conn,
                               headers={**good, "Upgrade": "h2c", "Connection": "Upgrade"})
        assert status == 200
        status, _, body = request(engine, host, path="/headers", conn=conn)
        assert status == 403 and b"traffic token" in body
    finally:
        conn.close()
    sbx.kill()


def test_client_that_half_closes_after_its_request(engine: Engine, served: Sandbox) -> None:
    with socket.create_connection(("127.0.0.1", engine.preview_port), timeout=20) as s:
        s.sendall(f"GET /hello HTTP/1.1\r\nHost: {served.get_host(PORT)}\r\n"
                  "Connection: close\r\n\r\n".encode())
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 200") or answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert answer.endswith(b"hello from the sandbox")


def test_idle_connections_from_one_address_are_capped(engine: Engine, served: Sandbox) -> None:
    idle = [socket.create_connection(("127.0.0.1", engine.preview_port), timeout=10) for _ in range(64)]
    try:
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", engine.preview_port), timeout=10) as s:
            answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
    finally:
        for s in idle:
            s.close()
    assert wait_until(lambda: request(engine, served.get_host(PORT))[0] == 200, 10, 0.2)


IDLE = 4


@pytest.fixture(scope="module")
def idle_engine() -> Iterator[Engine]:
    e = start_engine(["--idle-timeout", str(IDLE)])
    yield e
    e.teardown()


def test_preview_traffic_is_activity(idle_engine: Engine) -> None:
    key = idle_engine.make_key("preview-idle-" + rand_suffix(4))
    sbx = idle_engine.sandbox(key)
    start_server(sbx)
    host = sbx.get_host(PORT)
    wait_served(idle_engine, host)
    # Only preview requests for 2.5 idle timeouts: the sandbox lives on.
    t_end = time.monotonic() + IDLE * 2.5
    while time.monotonic() < t_end:
        assert request(idle_engine, host)[0] == 200
        time.sleep(1)
    assert sbx.id in [s["id"] for s in idle_engine.list(key)]
    # Then nothing: it is reaped, and its URL says so.
    assert wait_until(lambda: sbx.id not in [s["id"] for s in idle_engine.list(key)], IDLE + 10, 0.5)
    assert request(idle_engine, host)[0] == 404


def chromium() -> Optional[str]:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_headless_chromium_loads_the_page(engine: Engine, served: Sandbox, tmp_path: Path) -> None:
    browser = chromium()
    assert browser, "chromium is missing: scripts/install-deps.sh installs Debian's chromium"
    url = f"http://{served.get_host(PORT)}/"
    out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={tmp_path}", "--virtual-time-budget=5000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    # The page came through the proxy and its script ran in the browser.
    assert "rendered-by-js" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
