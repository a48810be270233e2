"""Keep-alive in the transport: requests and streams read to their end leave their
connection for the next request; a connection the engine closed meanwhile is replaced
transparently; a stream abandoned midway is never reused."""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, List

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ai2in import Sandbox  # noqa: E402

KEY = "ai2in_live_abcdefgh" + "0" * 32
SID = "sbx_" + "0" * 20


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.connections: List[socket.socket] = []
        self.close_after_next = False
        super().__init__(("127.0.0.1", 0), Handler)

    def get_request(self) -> Any:
        sock, addr = super().get_request()
        self.connections.append(sock)
        return sock, addr


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, chunked streams
    server: Server

    def log_message(self, *a: Any) -> None:
        pass

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n)) if n else None

    def do_GET(self) -> None:
        self._body()
        data = json.dumps({"id": SID, "state": "running"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if self.server.close_after_next:  # the engine drops the idle connection later
            self.server.close_after_next = False
            self.close_connection = True

    def do_POST(self) -> None:  # a process stream, chunked like the engine's
        body = self._body()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = [{"type": "start", "pid": 7},
                  {"type": "stdout", "data": base64.b64encode(body["cmd"].encode()).decode()},
                  {"type": "end", "exit_code": 0, "timed_out": False, "signal": None}]
        for ev in events:
            line = json.dumps(ev).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    srv = Server()
    t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    t.start()
    monkeypatch.setenv("AI2IN_API_URL", f"http://127.0.0.1:{srv.server_address[1]}")
    monkeypatch.setenv("AI2IN_API_KEY", KEY)
    yield srv
    srv.shutdown()
    srv.server_close()


def test_requests_and_finished_streams_share_one_connection(server: Server) -> None:
    sbx = Sandbox.connect(SID)
    for i in range(5):
        assert sbx.commands.run(f"echo {i}").stdout == f"echo {i}"
        assert sbx.get_info()["state"] == "running"
    assert len(server.connections) == 1


def test_a_connection_closed_by_the_engine_is_replaced(server: Server) -> None:
    sbx = Sandbox.connect(SID)
    server.close_after_next = True
    sbx.get_info()
    assert sbx.get_info()["id"] == SID  # sent again on a new connection, transparently
    assert sbx.commands.run("x").stdout == "x"
    assert len(server.connections) == 2
