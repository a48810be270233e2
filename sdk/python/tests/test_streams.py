"""Unit tests of the streaming APIs (commands, PTYs, files, watches) against an in-process
fake engine that speaks the contract's NDJSON streams over chunked HTTP.

They check what the SDK makes of the events (decoding, line splitting, callbacks before
``run`` returns, dropped output, errors before and during a stream) and what it sends
(request bodies, raw stdin, Content-Length vs chunked uploads). Fast and offline.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qsl, urlsplit

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import ai2in  # noqa: E402
from ai2in import (  # noqa: E402
    AsyncSandbox,
    CommandExitError,
    ConflictError,
    EntryInfo,
    InvalidArgumentError,
    NotFoundError,
    Sandbox,
    SandboxError,
    WriteEntry,
)
from ai2in import _transport  # noqa: E402
from ai2in._stream import OutputBuffer  # noqa: E402

KEY = "ai2in_live_test"
SID = "sbx_" + "a" * 20


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


class Fake:
    """State of the fake engine, and what the tests script into it."""

    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        self.files: Dict[str, bytes] = {}
        self.dirs = {"/home/sandbox"}
        # cmd -> function(stream) writing the process's events
        self.scripts: Dict[str, Callable[["Stream"], None]] = {}
        self.release = threading.Event()  # lets a held "background" process end
        self.watch_events: List[Dict[str, Any]] = []
        self.watch_go = threading.Event()
        self.start_delay = 0.0


class Stream:
    """Writes one NDJSON event per HTTP chunk."""

    def __init__(self, h: BaseHTTPRequestHandler) -> None:
        self.h = h

    def ev(self, **kw: Any) -> None:
        kw.setdefault("ts", "2026-11-27T00:00:00.000Z")
        self.raw(json.dumps(kw).encode() + b"\n")

    def raw(self, data: bytes) -> None:
        self.h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.h.wfile.flush()

    def out(self, data: bytes, t: str = "stdout") -> None:
        self.ev(type=t, data=b64(data))

    def end(self, code: int = 0, timed_out: bool = False, signal: Optional[str] = None) -> None:
        self.ev(type="end", exit_code=code, timed_out=timed_out, signal=signal)


def make_handler(fake: Fake) -> type:
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

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

        def begin_stream(self) -> Stream:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            return Stream(self)

        def finish_stream(self) -> None:
            try:
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
            self.close_connection = True

        def read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def handle_any(self, method: str) -> None:
            raw = self.read_body()
            u = urlsplit(self.path)
            q = dict(parse_qsl(u.query, keep_blank_values=True))
            ctype = self.headers.get("Content-Type", "")
            body = json.loads(raw) if raw and ctype == "application/json" else None
            fake.requests.append({"method": method, "path": u.path, "query": q,
                                  "headers": dict(self.headers), "body": body, "raw": raw})
            if self.headers.get("X-API-Key") != KEY:
                return self.err(401, "unauthorized", "missing or wrong API key")
            parts = u.path.strip("/").split("/")
            if parts[:2] != ["v1", "sandboxes"]:
                return self.err(404, "not_found", "no route")
            if len(parts) == 2 and method == "POST":
                return self.reply(201, {"id": SID, "state": "running"})
            if len(parts) == 3 and method == "GET":
                return self.reply(200, {"id": SID, "state": "running"})
            rest = parts[3:]
            if rest[:1] == ["processes"]:
                return self.processes(method, rest[1:], body, raw)
            if rest[:1] == ["files"]:
                return self.files(method, rest[1:], q, body, raw)
            return self.err(404, "not_found", "no route")

        # -- processes ----------------------------------------------------------------------

        def processes(self, method: str, rest: List[str], body: Any, raw: bytes) -> None:
            if not rest and method == "POST":
                cmd = body.get("cmd") or ("<pty>" if body.get("pty") else "")
                if body.get("user") == "nobody-such":
                    return self.err(400, "bad_request", "unknown user nobody-such")
                script = fake.scripts.get(cmd)
                if script is None:
                    return self.err(400, "bad_request", f"no script for {cmd!r}")
                s = self.begin_stream()
                s.ev(type="start", pid=42)
                try:
                    script(s)
                finally:
                    self.finish_stream()
                return None
            if not rest and method == "GET":
                return self.reply(200, {"processes": [
                    {"pid": 42, "cmd": "sleep 100", "tag": "t", "cwd": "/home/sandbox",
                     "user": "root", "pty": False, "stdin": True, "background": True,
                     "started_at": "2026-11-27T00:00:00.000Z"}]})
            pid = rest[0]
            if pid != "42":
                return self.err(404, "not_found", f"no process {pid}")
            if rest[1:] == ["stream"] and method == "GET":
                s = self.begin_stream()
                s.ev(type="start", pid=42)
                s.ev(type="dropped", bytes=7)
                s.out(b"replayed\n")
                fake.release.wait(5)
                s.end(0)
                return self.finish_stream()
            if rest[1:] == ["stdin"] and method == "POST":
                if raw.startswith(b"NOSTDIN"):
                    return self.err(409, "conflict", "process 42 was started without stdin")
                return self.reply(200, {"written": len(raw)})
            if rest[1:] == ["stdin"] and method == "DELETE":
                return self.reply(200, {})
            if rest[1:] == ["resize"] and method == "POST":
                return self.reply(200, {})
            if rest[1:] == ["signal"] and method == "POST":
                return self.reply(200, {})
            if rest[1:] == [] and method == "DELETE":
                return self.reply(200, {"killed": True})
            return self.err(404, "not_found", "no route")

        # -- files --------------------------------------------------------------------------

        def entry(self, path: str) -> Dict[str, Any]:
            isdir = path in fake.dirs
            return {"name": path.rsplit("/", 1)[-1], "path": path,
                    "type": "dir" if isdir else "file",
                    "size": 0 if isdir else len(fake.files[path]), "mode": 0o644,
                    "permissions": "-rw-r--r--", "owner": "root", "group": "root",
                    "modified_time": "2026-11-27T00:00:00.000Z", "symlink_target": None}

        def abspath(self, p: str) -> str:
            return p if p.startswith("/") else "/home/sandbox/" + p

        def files(self, method: str, rest: List[str], q: Dict[str, str], body: Any,
                  raw: bytes) -> None:
            if rest == [] and method == "PUT":
                p = self.abspath(q["path"])
                if p in fake.dirs:
                    return self.err(400, "bad_request", f"{p} is a directory")
                fake.files[p] = raw
                return self.reply(200, self.entry(p))
            if rest == [] and method == "GET":
                p = self.abspath(q["path"])
                if "\0" in p:
                    return self.err(400, "bad_request", "path contains a NUL byte")
                if p in fake.dirs:
                    return self.err(400, "bad_request", f"{p} is a directory")
                if p not in fake.files:
                    return self.err(404, "not_found", f"{p} does not exist")
                data = fake.files[p]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data) + (5 if "cut" in p else 0)))
                self.end_headers()
                self.wfile.write(data)
                if "cut" in p:
                    self.close_connection = True
                return None
            if rest == ["info"]:
                p = self.abspath(q["path"])
                if p not in fake.files and p not in fake.dirs:
                    return self.err(404, "not_found", f"{p} does not exist")
                return self.reply(200, self.entry(p))
            if rest == ["list"]:
                p = self.abspath(q["path"])
                names = sorted(x for x in list(fake.files) + list(fake.dirs)
                               if x.startswith(p + "/"))
                return self.reply(200, {"entries": [self.entry(x) for x in names]})
            if rest == ["mkdir"]:
                p = self.abspath(body["path"])
                created = p not in fake.dirs
                fake.dirs.add(p)
                return self.reply(200, {"created": created})
            if rest == ["rename"]:
                a, b = self.abspath(body["from"]), self.abspath(body["to"])
                if a not in fake.files:
                    return self.err(404, "not_found", f"{a} does not exist")
                fake.files[b] = fake.files.pop(a)
                return self.reply(200, self.entry(b))
            if rest == [] and method == "DELETE":
                p = self.abspath(q["path"])
                if p not in fake.files:
                    return self.err(404, "not_found", f"{p} does not exist")
                del fake.files[p]
                return self.reply(200, {})
            if rest == ["watch"]:
                if q["path"] == "/missing":
                    return self.err(404, "not_found", "/missing does not exist")
                s = self.begin_stream()
                time.sleep(fake.start_delay)
                s.ev(type="start")
                fake.watch_go.wait(5)
                for ev in fake.watch_events:
                    s.ev(**ev)
                time.sleep(0.2)
                return self.finish_stream()
            return self.err(404, "not_found", "no route")

        def do_GET(self) -> None:
            self.handle_any("GET")

        def do_POST(self) -> None:
            self.handle_any("POST")

        def do_PUT(self) -> None:
            self.handle_any("PUT")

        def do_DELETE(self) -> None:
            self.handle_any("DELETE")

    return H


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    f = Fake()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(f))
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    t.start()
    monkeypatch.setenv("AI2IN_API_URL", f"http://127.0.0.1:{srv.server_address[1]}")
    monkeypatch.setenv("AI2IN_API_KEY", KEY)
    yield f
    f.release.set()
    f.watch_go.set()
    srv.shutdown()
    srv.server_close()


def last(fake: Fake, method: str, suffix: str) -> Dict[str, Any]:
    for r in reversed(fake.requests):
        if r["method"] == method and r["path"].endswith(suffix):
            return r
    raise AssertionError(f"no {method} …{suffix} in {[r['path'] for r in fake.requests]}")


# -- output decoding --------------------------------------------------------------------------


def test_output_buffer_splits_characters_and_lines() -> None:
    text = "héllo wörld ✓\nsecond 𝄞 line\nlast"
    data = text.encode()
    buf = OutputBuffer(lines=True)
    lines: List[str] = []
    for i in range(len(data)):  # one byte at a time: every character is split
        lines += buf.feed(data[i:i + 1])
    assert lines == ["héllo wörld ✓", "second 𝄞 line"]
    lines += buf.finish()
    assert lines == ["héllo wörld ✓", "second 𝄞 line", "last"]
    assert buf.text == text and buf.raw == data


def test_output_buffer_invalid_utf8_and_gap() -> None:
    buf = OutputBuffer(lines=True)
    assert buf.feed(b"ok \xff\xfe\n") == ["ok \ufffd\ufffd"]
    assert buf.feed(b"half \xc3") == []  # first byte of "é"; the rest is lost
    lines = buf.gap("[ai2in: 5 bytes of output dropped]")
    assert lines == ["half \ufffd", "[ai2in: 5 bytes of output dropped]"]
    assert buf.feed(b"\xa9after\n") == ["\ufffdafter"]
    assert buf.text == ("ok \ufffd\ufffd\nhalf \ufffd\n[ai2in: 5 bytes of output dropped]\n"
                        "\ufffdafter\n")
    assert buf.raw == b"ok \xff\xfe\nhalf \xc3\xa9after\n"  # bytes are kept as received
    assert OutputBuffer().feed(b"a\nb\n") == []  # no callback: no line splitting


# -- commands ---------------------------------------------------------------------------------


def test_run_waits_and_decodes(fake: Fake) -> None:
    def script(s: Stream) -> None:
        data = "héllo\n".encode()
        s.out(data[:2])  # "h" + first byte of "é"
        s.ev(type="keepalive")
        s.out(data[2:])
        s.out(b"err\n", "stderr")
        s.end(3)
    fake.scripts["echo hi; echo err >&2; exit 3"] = script
    sbx = Sandbox()
    r = sbx.commands.run("echo hi; echo err >&2; exit 3")
    assert (r.stdout, r.stderr, r.exit_code, r.timed_out, r.ok) == ("héllo\n", "err\n", 3,
                                                                     False, False)
    assert r.stdout_bytes == "héllo\n".encode() and r.stderr_bytes == b"err\n"
    assert r.error is None and r.dropped_bytes == 0
    req = last(fake, "POST", "/processes")
    assert req["body"] == {"cmd": "echo hi; echo err >&2; exit 3"}  # engine defaults
    with pytest.raises(CommandExitError) as ei:
        sbx.commands.run("echo hi; echo err >&2; exit 3", check=True)
    assert ei.value.exit_code == 3 and "err" in str(ei.value)


def test_run_request_body(fake: Fake) -> None:
    fake.scripts["x"] = lambda s: s.end(0)
    sbx = Sandbox()
    sbx.commands.run("x", envs={"A": "1"}, cwd="/tmp", user="sandbox", timeout=2.5,
                     stdin=True, tag="t1")
    assert last(fake, "POST", "/processes")["body"] == {
        "cmd": "x", "envs": {"A": "1"}, "cwd": "/tmp", "user": "sandbox",
        "timeout_ms": 2500, "stdin": True, "tag": "t1"}
    sbx.commands.run("x", timeout=None)
    assert last(fake, "POST", "/processes")["body"] == {"cmd": "x", "timeout_ms": 0}
    sbx.commands.run("x", timeout=0.0001)
    assert last(fake, "POST", "/processes")["body"]["timeout_ms"] == 1
    h = sbx.commands.run("x", background=True)
    h.wait()
    assert last(fake, "POST", "/processes")["body"] == {"cmd": "x", "background": True}


def test_timeout_result(fake: Fake) -> None:
    fake.scripts["sleep 100"] = lambda s: s.end(124, timed_out=True, signal="SIGTERM")
    r = Sandbox().commands.run("sleep 100", timeout=2)
    assert r.exit_code == 124 and r.timed_out and r.signal == "SIGTERM"


def test_callbacks_per_line_as_printed(fake: Fake) -> None:
    def script(s: Stream) -> None:
        s.out(b"a\n")
        s.out(b"b\n", "stderr")
        s.out(b"c\npart")
        time.sleep(0.3)
        s.out(b"ial\nno newline")
        s.end(0)
    fake.scripts["lines"] = script
    seen: List[Tuple[str, str, float]] = []
    t0 = time.monotonic()
    r = Sandbox().commands.run(
        "lines", on_stdout=lambda line: seen.append(("out", line, time.monotonic() - t0)),
        on_stderr=lambda line: seen.append(("err", line, time.monotonic() - t0)))
    assert [(k, v) for k, v, _ in seen] == [("out", "a"), ("err", "b"), ("out", "c"),
                                            ("out", "partial"), ("out", "no newline")]
    assert seen[2][2] < 0.25 and seen[3][2] >= 0.3  # called as printed, not at the end
    assert r.stdout == "a\nc\npartial\nno newline"


def test_dropped_output_is_marked(fake: Fake) -> None:
    def script(s: Stream) -> None:
        s.out(b"before\nhal")
        s.ev(type="dropped", bytes=1000)
        s.out(b"after\n")
        s.end(0)
    fake.scripts["big"] = script
    lines: List[str] = []
    r = Sandbox().commands.run("big", on_stdout=lines.append)
    assert lines == ["before", "hal", "[ai2in: 1000 bytes of output dropped]", "after"]
    assert r.dropped_bytes == 1000
    assert r.stdout == "before\nhal\n[ai2in: 1000 bytes of output dropped]\nafter\n"


def test_stream_error_event_and_broken_stream(fake: Fake) -> None:
    def failing(s: Stream) -> None:
        s.out(b"x\n")
        s.ev(type="error", message="agent lost the process")
    fake.scripts["fail"] = failing
    fake.scripts["eof"] = lambda s: s.out(b"x\n")
    fake.scripts["garbage"] = lambda s: s.raw(b"{not json\n")
    sbx = Sandbox()
    r = sbx.commands.run("fail")
    assert r.error == "agent lost the process" and r.exit_code == -1 and not r.ok
    assert r.stdout == "x\n"
    with pytest.raises(CommandExitError, match="agent lost the process"):
        sbx.commands.run("fail", check=True)
    with pytest.raises(SandboxError, match="ended before the process did"):
        sbx.commands.run("eof")
    with pytest.raises(SandboxError, match="unreadable event"):
        sbx.commands.run("garbage")


def test_errors_before_the_stream(fake: Fake) -> None:
    sbx = Sandbox()
    with pytest.raises(InvalidArgumentError, match="unknown user nobody-such") as ei:
        sbx.commands.run("x", user="nobody-such")
    assert ei.value.status == 400 and ei.value.code == "bad_request"
    with pytest.raises(NotFoundError, match="no process 7"):
        sbx.commands.connect(7)
    with pytest.raises(NotFoundError, match="no process 7"):
        sbx.commands.send_stdin(7, "x")
    assert sbx.commands.kill(7) is False
    assert sbx.commands.kill(42) is True
    with pytest.raises(ConflictError, match="without stdin"):
        sbx.commands.send_stdin(42, "NOSTDIN")


def test_stream_read_timeout(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_transport, "STREAM_READ_TIMEOUT", 0.3)
    fake.scripts["silent"] = lambda s: fake.release.wait(5)
    t0 = time.monotonic()
    with pytest.raises(ai2in.TimeoutError, match="keepalive"):
        Sandbox().commands.run("silent")
    assert time.monotonic() - t0 < 3


def test_background_handle(fake: Fake) -> None:
    def held(s: Stream) -> None:
        s.out(b"started\n")
        fake.release.wait(5)
        s.out(b"done\n")
        s.end(0)
    fake.scripts["cat"] = held
    sbx = Sandbox()
    lines: List[str] = []
    t0 = time.monotonic()
    h = sbx.commands.run("cat", background=True, stdin=True, on_stdout=lines.append)
    assert time.monotonic() - t0 < 2 and h.pid == 42 and h.exit_code is None
    h.send_stdin("x\n")
    assert last(fake, "POST", "/42/stdin")["raw"] == b"x\n"
    h.send_stdin(b"\x00\xff")
    assert last(fake, "POST", "/42/stdin")["raw"] == b"\x00\xff"
    assert last(fake, "POST", "/42/stdin")["headers"]["Content-Type"] == \
        "application/octet-stream"
    big = os.urandom(2 * 1024 * 1024 + 5)
    n = len(fake.requests)
    h.send_stdin(big)  # split in requests of at most 1 MiB
    parts = [r["raw"] for r in fake.requests[n:] if r["path"].endswith("/stdin")]
    assert b"".join(parts) == big and max(map(len, parts)) == 1024 * 1024
    h.close_stdin()
    assert last(fake, "DELETE", "/42/stdin")
    with pytest.raises(ai2in.TimeoutError):
        h.wait(timeout=0.1)
    fake.release.set()
    r = h.wait()
    assert r.stdout == "started\ndone\n" and r.exit_code == 0 and h.exit_code == 0
    assert lines == ["started", "done"]
    assert h.kill() is True
    h.send_signal("SIGINT")
    assert last(fake, "POST", "/42/signal")["body"] == {"signal": "SIGINT"}


def test_background_check_raises_from_wait(fake: Fake) -> None:
    fake.scripts["false"] = lambda s: s.end(1)
    h = Sandbox().commands.run("false", background=True, check=True)
    with pytest.raises(CommandExitError):
        h.wait()


def test_callback_exception_reaches_wait(fake: Fake) -> None:
    fake.scripts["one"] = lambda s: (s.out(b"line\n"), s.end(0))

    def boom(line: str) -> None:
        raise RuntimeError("callback failed on " + line)
    h = Sandbox().commands.run("one", background=True, on_stdout=boom)
    with pytest.raises(RuntimeError, match="callback failed on line"):
        h.wait()
    with pytest.raises(RuntimeError, match="callback failed"):
        Sandbox().commands.run("one", on_stdout=boom)


def test_connect_replays_and_disconnect(fake: Fake) -> None:
    sbx = Sandbox()
    lines: List[str] = []
    h = sbx.commands.connect(42, on_stdout=lines.append)
    deadline = time.monotonic() + 5
    while "replayed" not in lines and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lines == ["[ai2in: 7 bytes of output dropped]", "replayed"]
    assert h.dropped_bytes == 7
    t0 = time.monotonic()
    h.disconnect()  # wakes the reader blocked on a silent stream
    assert time.monotonic() - t0 < 2
    with pytest.raises(SandboxError, match=r"commands.connect\(42\)"):
        h.wait()
    fake.release.set()
    h2 = sbx.commands.connect(42)
    assert h2.wait().stdout.endswith("replayed\n")


def test_list_processes(fake: Fake) -> None:
    procs = Sandbox().commands.list()
    assert len(procs) == 1
    p = procs[0]
    assert (p.pid, p.cmd, p.tag, p.stdin, p.background, p.pty) == (42, "sleep 100", "t", True,
                                                                   True, False)


def test_binary_output_round_trips(fake: Fake) -> None:
    blob = os.urandom(100_000)
    fake.scripts["bin"] = lambda s: ([s.out(blob[i:i + 4093]) for i in range(0, len(blob),
                                                                             4093)], s.end(0))
    r = Sandbox().commands.run("bin")
    assert r.stdout_bytes == blob
    assert r.stdout == blob.decode("utf-8", "replace")


# -- pty --------------------------------------------------------------------------------------


def test_pty(fake: Fake) -> None:
    def term(s: Stream) -> None:
        s.out(b"$ ", "pty")
        fake.release.wait(5)
        s.out(b"42\r\n", "pty")
        s.end(0)
    fake.scripts["<pty>"] = term
    chunks: List[bytes] = []
    t = Sandbox().pty.create(cols=80, rows=24, on_data=chunks.append)
    assert last(fake, "POST", "/processes")["body"] == {"pty": {"cols": 80, "rows": 24}}
    t.send_input("echo $((6*7))\n")
    assert last(fake, "POST", "/42/stdin")["raw"] == b"echo $((6*7))\n"
    t.resize(120, 40)
    assert last(fake, "POST", "/42/resize")["body"] == {"cols": 120, "rows": 40}
    assert t.kill() is True
    fake.release.set()
    r = t.wait(timeout=5)
    assert b"".join(chunks) == b"$ 42\r\n" and r.stdout_bytes == b"$ 42\r\n"
    assert all(isinstance(c, bytes) for c in chunks)


# -- files ------------------------------------------------------------------------------------


def test_files_write_read_kinds(fake: Fake, tmp_path: Any) -> None:
    files = Sandbox().files
    info = files.write("/home/sandbox/a.txt", "hello")
    assert isinstance(info, EntryInfo) and info.path == "/home/sandbox/a.txt"
    assert info.size == 5 and info.type == "file" and info.mode == 0o644
    assert files.read("/home/sandbox/a.txt") == "hello"
    assert last(fake, "PUT", "/files")["headers"]["Content-Length"] == "5"
    files.write("b.bin", b"\x00\xff")  # relative: the engine resolves it
    assert last(fake, "PUT", "/files")["query"]["path"] == "b.bin"
    assert files.read("/home/sandbox/b.bin", format="bytes") == b"\x00\xff"

    blob = os.urandom(700_000)
    p = tmp_path / "blob"
    p.write_bytes(blob)
    with open(p, "rb") as f:
        f.seek(100)
        files.write("/f", f, user="sandbox")
    req = last(fake, "PUT", "/files")
    assert req["headers"]["Content-Length"] == str(len(blob) - 100)
    assert req["query"] == {"path": "/f", "user": "sandbox"} and req["raw"] == blob[100:]

    files.write("/g", (blob[i:i + 1000] for i in range(0, len(blob), 1000)))
    req = last(fake, "PUT", "/files")
    assert req["headers"]["Transfer-Encoding"] == "chunked" and req["raw"] == blob
    assert "Content-Length" not in req["headers"]

    files.write("/h", io.BytesIO(b"in memory"))  # no fileno, but seekable: sized
    assert fake.files["/h"] == b"in memory"
    assert last(fake, "PUT", "/files")["headers"]["Content-Length"] == "9"

    class Pipe(io.RawIOBase):  # neither a file nor seekable: chunked
        def __init__(self) -> None:
            self.parts = [b"from ", b"a pipe"]

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            return self.parts.pop(0) if self.parts else b""
    files.write("/p", Pipe())
    assert fake.files["/p"] == b"from a pipe"
    assert last(fake, "PUT", "/files")["headers"]["Transfer-Encoding"] == "chunked"

    stream = files.read("/g", format="stream")
    chunks = list(stream)
    assert len(chunks) > 1 and b"".join(chunks) == blob
    with pytest.raises(TypeError):
        files.write("/x", 12)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        files.read("/g", format="lines")  # type: ignore[call-overload]


def test_files_read_stream_cut_short(fake: Fake) -> None:
    fake.files["/cut"] = b"abc"
    with pytest.raises(SandboxError, match="5 bytes before the end"):
        list(Sandbox().files.read("/cut", format="stream"))


def test_files_errors_and_misc(fake: Fake) -> None:
    files = Sandbox().files
    with pytest.raises(NotFoundError, match="/nope does not exist"):
        files.read("/nope")
    with pytest.raises(InvalidArgumentError, match="is a directory"):
        files.read("/home/sandbox")
    with pytest.raises(InvalidArgumentError, match="NUL"):
        files.read("/a\0b")
    with pytest.raises(InvalidArgumentError, match="is a directory"):
        files.write("/home/sandbox", "x")
    out = files.write_files([WriteEntry("/w/1", "one"), {"path": "/w/2", "data": b"two"},
                             ("/w/3", iter([b"thr", b"ee"]))])
    assert [e.path for e in out] == ["/w/1", "/w/2", "/w/3"]
    assert fake.files["/w/3"] == b"three"
    assert files.exists("/w/1") and not files.exists("/w/9")
    assert files.get_info("/w/2").size == 3
    assert [e.name for e in files.list("/w", depth=2)] == ["1", "2", "3"]
    assert last(fake, "GET", "/files/list")["query"] == {"path": "/w", "depth": "2"}
    assert files.make_dir("/d") is True and files.make_dir("/d") is False
    assert files.rename("/w/1", "/w/one").path == "/w/one"
    assert last(fake, "POST", "/files/rename")["body"] == {"from": "/w/1", "to": "/w/one"}
    files.remove("/w/one")
    assert not files.exists("/w/one")
    with pytest.raises(NotFoundError):
        files.remove("/w/one")
    with pytest.raises(NotFoundError):
        files.rename("/w/1", "/w/x")


def test_watch_dir(fake: Fake) -> None:
    fake.start_delay = 0.3
    fake.watch_events = [{"type": "create", "path": "/home/sandbox/x"},
                         {"type": "write", "path": "/home/sandbox/x"},
                         {"type": "rename", "path": "/home/sandbox/x",
                          "new_path": "/home/sandbox/y"},
                         {"type": "remove", "path": "/home/sandbox/y"}]
    files = Sandbox().files
    seen: List[Any] = []
    t0 = time.monotonic()
    w = files.watch_dir("/home/sandbox", on_event=seen.append, recursive=True)
    assert time.monotonic() - t0 >= 0.3  # returned only after the start event
    assert last(fake, "GET", "/files/watch")["query"] == {"path": "/home/sandbox",
                                                          "recursive": "true"}
    assert w.get_new_events() == []
    fake.watch_go.set()
    deadline = time.monotonic() + 5
    got: List[Any] = []
    while len(got) < 4 and time.monotonic() < deadline:
        got += w.get_new_events()
        time.sleep(0.02)
    assert [(e.type, e.path, e.new_path) for e in got] == [
        ("create", "/home/sandbox/x", None), ("write", "/home/sandbox/x", None),
        ("rename", "/home/sandbox/x", "/home/sandbox/y"), ("remove", "/home/sandbox/y", None)]
    assert got[2].name == "x" and seen == got
    # The fake then ends the stream: the watch reports it once the events are drained.
    time.sleep(0.4)
    with pytest.raises(SandboxError, match="watch of /home/sandbox ended"):
        w.get_new_events()
    w.stop()
    with pytest.raises(NotFoundError):
        files.watch_dir("/missing")


def test_watch_stop_is_quick(fake: Fake) -> None:
    w = Sandbox().files.watch_dir("/home/sandbox")
    t0 = time.monotonic()
    w.stop()
    assert time.monotonic() - t0 < 2 and not w.running
    assert w.get_new_events() == []


# -- async ------------------------------------------------------------------------------------


def test_async_streams(fake: Fake) -> None:
    fake.scripts["bg"] = lambda s: (s.out(b"hi\n"), fake.release.wait(5), s.end(5))
    fake.files["/home/sandbox/a"] = b"x" * 600_000

    async def main() -> None:
        sbx = await AsyncSandbox.connect(SID)
        h = await sbx.commands.run("bg", background=True)
        assert h.pid == 42
        fake.release.set()
        r = await h.wait()
        assert (r.stdout, r.exit_code) == ("hi\n", 5)
        assert await sbx.files.read("/home/sandbox/a", format="bytes") == b"x" * 600_000
        s = await sbx.files.read("/home/sandbox/a", format="stream")
        got = b"".join([c async for c in s])
        assert got == b"x" * 600_000
        assert (await sbx.files.write("/b", "x")).path == "/b"
        assert await sbx.files.exists("/b")
        assert [p.pid for p in await sbx.commands.list()] == [42]
        t = await sbx.pty.create(cols=10, rows=5, cmd="true")
        assert last(fake, "POST", "/processes")["body"] == {"pty": {"cols": 10, "rows": 5},
                                                            "cmd": "true"}
        await t.resize(20, 6)
        assert (await t.wait()).stdout_bytes == b"$ "

    fake.scripts["true"] = lambda s: (s.out(b"$ ", "pty"), s.end(0))
    asyncio.run(main())


def test_result_fields_positional_compat() -> None:
    r = ai2in.CommandResult("o", "e", 0)
    assert r.ok and r.stdout_bytes == b"" and r.error is None and not r.timed_out
    assert re.search(r"exit_code=0", repr(r)) and "stdout_bytes" not in repr(r)
