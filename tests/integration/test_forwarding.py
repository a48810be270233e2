"""Any node answers any request (issue 14, slice 3): a request to node B for a sandbox that
node A owns is relayed to A and its answer streamed back.

Two engines on one throwaway PostgreSQL (test_nodes.py's set-up) sharing a cluster secret:
create through A, then use the sandbox through B only: streamed commands (callbacks in
order), a background command and its kill, run_code, 20 MB both ways with checksums, a
directory watch, a PTY, pause, resume, set_timeout, kill, list; a preview (plain requests and
a WebSocket) through B's proxy to A's. A request to B with a wrong secret is refused 403; a
relayed request for a sandbox not the receiver's is never relayed again (503); an owner that
dies mid-stream ends the stream with an error event and is 503 node_down until it returns;
B's memory stays flat while it relays a 100 MB download. Prints the command round trip
through B against A directly.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import random
import signal
import socket
import statistics
import tempfile
import threading
import time
from typing import Iterator, List, Tuple

import pytest
from conftest import RssSampler, wait_until
from test_database import PgEngine, Postgres, postgres  # noqa: F401 (postgres: the fixture, one server per module)
from test_nodes import node_engine, preview_status
from test_preview import PORT, start_server, ws_frame, ws_read

HOME = "/home/sandbox"
SECRET = "s3cret-" + "x" * 40


@contextlib.contextmanager
def secret_file(text: str, mode: int = 0o600) -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="ai2in-secret-")
    path = os.path.join(d, "cluster-secret")
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, mode)
    try:
        yield path
    finally:
        os.unlink(path)
        os.rmdir(d)


@pytest.fixture
def nodes(postgres: Postgres) -> Iterator[Tuple[PgEngine, PgEngine, str]]:
    pools = random.sample(range(1, 255), 2)
    with secret_file(SECRET) as path:
        a = node_engine(postgres.url, "node-a", pools[0])
        b = node_engine(postgres.url, "node-b", pools[1])
        a.extra_args += ["--cluster-secret-file", path]
        b.extra_args += ["--cluster-secret-file", path]
        try:
            a.start()
            b.start()
            key = a.make_key("fwd")
            b.keys[key] = "fwd"
            yield a, b, key
        finally:
            b.teardown()
            a.teardown()


def raw_headers(e: PgEngine, method: str, path: str, headers: dict) -> Tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", e.port, timeout=30)
    try:
        conn.request(method, path, body=b"{\"timeout\": 60}" if method == "POST" else None,
                     headers={"Content-Type": "application/json", **headers})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def test_everything_through_another_node(nodes: Tuple[PgEngine, PgEngine, str]) -> None:
    a, b, key = nodes
    made = a.sandbox(key)
    assert made.get_info()["node"] == "node-a"
    sbx = b.connect(made.id, key)

    # Streamed output, in order, through B.
    out: List[str] = []
    r = sbx.commands.run("for i in 1 2 3 4 5; do echo line$i; sleep 0.1; done; echo err >&2",
                         on_stdout=out.append)
    assert r.exit_code == 0 and out == [f"line{i}" for i in range(1, 6)], out
    assert r.stderr == "err\n"

    # A background command, listed and killed through B.
    h = sbx.commands.run("sleep 600", background=True)
    assert h.pid in [p.pid for p in sbx.commands.list()]
    assert sbx.commands.kill(h.pid) is True
    assert h.wait(timeout=10).exit_code == 137

    # run_code with a printed result.
    ex = sbx.run_code("x = 6 * 7\nprint('printed', x)\nx")
    assert "printed 42" in "".join(ex.logs.stdout), ex.logs
    assert ex.text == "42"

    # 100 MB both ways (the size), checksummed on each side.
    data = os.urandom(100 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    sbx.files.write(f"{HOME}/up.bin", data)
    assert sbx.commands.run(f"sha256sum {HOME}/up.bin").stdout.split()[0] == digest
    assert hashlib.sha256(sbx.files.read(f"{HOME}/up.bin", format="bytes")).hexdigest() == digest

    # A directory watch streams its events through B.
    sbx.files.make_dir(f"{HOME}/wd")
    w = sbx.files.watch_dir(f"{HOME}/wd")
    try:
        made.commands.run(f"touch {HOME}/wd/a")  # the change made through A
        seen: List[str] = []
        assert wait_until(lambda: seen.extend(e.name for e in w.get_new_events()) or "a" in seen, 10), seen
    finally:
        w.stop()

    # A PTY: input sent and output streamed through B.
    chunks: List[bytes] = []
    lock = threading.Lock()

    def on_data(d: bytes) -> None:
        with lock:
            chunks.append(d)

    t = sbx.pty.create(cols=80, rows=24, on_data=on_data)
    t.send_input(b"echo $((6*7))zz\n")
    assert wait_until(lambda: b"42zz" in b"".join(chunks), 10), b"".join(chunks)
    assert t.kill() is True

    # Listed from B; timeout, pause, resume and kill through B.
    assert made.id in [s["id"] for s in b.list(key)]
    sbx.set_timeout(600)
    assert sbx.pause()["status"] == "paused"
    assert made.get_info()["state"] == "paused"
    assert sbx.resume()["status"] == "running"
    assert sbx.commands.run(f"sha256sum {HOME}/up.bin").stdout.split()[0] == digest
    assert sbx.kill() is True
    assert wait_until(lambda: made.id not in [s["id"] for s in a.list(key)], 10)


def test_preview_through_another_node(nodes: Tuple[PgEngine, PgEngine, str]) -> None:
    a, b, key = nodes
    made = a.sandbox(key)
    made.commands.run(f"mkdir -p {HOME}/site && echo served-by-a > {HOME}/site/index.html")
    made.commands.run(f"cd {HOME}/site && python3 -m http.server 8080", background=True)
    assert wait_until(lambda: preview_status(a, made.id)[0] == 200, 15), preview_status(a, made.id)
    status, text = preview_status(b, made.id)
    assert status == 200 and "served-by-a" in text, (status, text)
    # Several requests on one kept-alive connection, through B.
    conn = http.client.HTTPConnection("127.0.0.1", b.preview_port, timeout=10)
    try:
        for _ in range(3):
            conn.request("GET", "/index.html", headers={"Host": f"8080-{made.id}.{b.domain}"})
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == b"served-by-a\n"
    finally:
        conn.close()

    # A WebSocket (the preview tests' echo server) through B's proxy and A's.
    start_server(made)
    assert wait_until(lambda: preview_get(b, made.id, PORT) == 200, 15)
    ws_key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", b.preview_port), timeout=20) as s:
        s.sendall((f"GET /ws HTTP/1.1\r\nHost: {PORT}-{made.id}.{b.domain}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {ws_key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        f = s.makefile("rb")
        assert b" 101 " in f.readline()
        while f.readline() not in (b"\r\n", b""):
            pass
        for msg in (b"hello", os.urandom(70000)):
            s.sendall(ws_frame(msg, 1 if len(msg) < 100 else 2))
            assert ws_read(f)[1] == msg
        s.sendall(ws_frame(b"", 8))
        assert ws_read(f)[0] == 8


def preview_get(e: PgEngine, sid: str, port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", e.preview_port, timeout=10)
    try:
        conn.request("GET", "/hello", headers={"Host": f"{port}-{sid}.{e.domain}"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_secret_and_no_loop(nodes: Tuple[PgEngine, PgEngine, str]) -> None:
    a, b, key = nodes
    sbx = a.sandbox(key)
    path = f"/v1/sandboxes/{sbx.id}/timeout"

    # A wrong secret is refused, whatever the route; the secret is never in the log.
    status, doc = raw_headers(b, "POST", path, {"X-API-Key": key, "X-Ai2in-Cluster-Secret": "wrong" * 8})
    assert status == 403 and doc["error"]["code"] == "forbidden", doc
    status, doc = raw_headers(b, "GET", "/v1/sandboxes", {"X-API-Key": key, "X-Ai2in-Cluster-Secret": "x"})
    assert status == 403, doc
    # The hop marker without the secret is refused too.
    status, doc = raw_headers(b, "POST", path, {"X-API-Key": key, "X-Ai2in-Forwarded-By": "node-a"})
    assert status == 403, doc
    # With the secret, a relayed request for a sandbox B does not own is not relayed again.
    status, doc = raw_headers(b, "POST", path, {"X-API-Key": key, "X-Ai2in-Forwarded-By": "node-a",
                                                "X-Ai2in-Cluster-Secret": SECRET})
    assert status == 503 and doc["error"]["code"] == "other_node", doc
    assert "not forwarded again" in doc["error"]["message"], doc
    # Its owner takes it.
    status, doc = raw_headers(a, "POST", path, {"X-API-Key": key, "X-Ai2in-Forwarded-By": "node-b",
                                                "X-Ai2in-Cluster-Secret": SECRET})
    assert status == 200, doc
    assert SECRET not in a.log_tail(10000) and SECRET not in b.log_tail(10000)


def test_bounded_memory_and_latency(nodes: Tuple[PgEngine, PgEngine, str]) -> None:
    a, b, key = nodes
    made = a.sandbox(key)
    sbx = b.connect(made.id, key)
    made.commands.run(f"head -c 100M /dev/urandom > {HOME}/big && sha256sum {HOME}/big > {HOME}/big.sum")
    want = made.commands.run(f"cat {HOME}/big.sum").stdout.split()[0]

    h = hashlib.sha256()
    n = 0
    with RssSampler(b.pid()) as rss:
        stream = sbx.files.read(f"{HOME}/big", format="stream")
        while True:
            chunk = stream.read_chunk()
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
    print(f"\nB's RSS while relaying 100 MB: {rss.base_kb / 1024:.1f} MB -> peak {rss.peak_kb / 1024:.1f} MB "
          f"(+{rss.growth_mb:.1f} MB)")
    assert n == 100 * 1024 * 1024 and h.hexdigest() == want
    assert rss.growth_mb < 20, rss.growth_mb

    def p50(s) -> float:
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            assert s.commands.run("true").exit_code == 0
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    direct, relayed = p50(made), p50(sbx)
    print(f"command round trip p50: direct to the owner {direct:.2f} ms, through another node {relayed:.2f} ms "
          f"(+{relayed - direct:.2f} ms)")


def test_owner_unreachable(nodes: Tuple[PgEngine, PgEngine, str]) -> None:
    a, b, key = nodes
    made = a.sandbox(key)
    sbx = b.connect(made.id, key)
    out: List[str] = []
    errors: List[object] = []

    def stream() -> None:
        try:
            r = sbx.commands.run("echo started; sleep 60", on_stdout=out.append, timeout=90)
            errors.append(r.error)  # the stream's last event: the relay's error
        except BaseException as e:  # noqa: BLE001 - any error the SDK raises is the point
            errors.append(e)

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    assert wait_until(lambda: out == ["started"], 10), out
    # A dies mid-stream: the stream through B ends with an error, not a hang.
    a.stop(signal.SIGKILL)
    t.join(30)
    assert not t.is_alive() and errors and errors[0], f"the stream through B did not end when its owner died: {errors}"
    print(f"\nstream through B after A died: {errors[0]!r}")
    # Within A's lease, B cannot connect: 503 node_down naming A, at once.
    t0 = time.monotonic()
    status, doc, raw = b.raw("POST", f"/v1/sandboxes/{made.id}/processes", body={"cmd": "true"}, key=key)
    assert status == 503 and doc["error"]["code"] == "node_down", raw
    assert "node-a" in doc["error"]["message"] and time.monotonic() - t0 < 5, raw
    # A back: it re-adopts the sandbox, and B relays to it again.
    a.start()
    assert sbx.commands.run("echo back").stdout == "back\n"


def test_secret_file_must_be_private(postgres: Postgres) -> None:
    e = node_engine(postgres.url, "node-c", random.randrange(1, 255))
    try:
        with secret_file(SECRET, 0o644) as path:
            p = e.cli("--cluster-secret-file", path, "node", "list")
            assert p.returncode != 0 and "mode 0600 or 0400" in p.stderr, p.stderr
        with secret_file("short") as path:
            p = e.cli("--cluster-secret-file", path, "node", "list")
            assert p.returncode != 0 and "32 to 4096 bytes" in p.stderr, p.stderr
    finally:
        e.teardown()  # never started: its temporary directory goes
