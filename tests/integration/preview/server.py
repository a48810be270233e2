"""A test server run INSIDE a sandbox (python3 stdlib only) for the preview proxy tests.

    python3 server.py PORT [BIND]      (BIND defaults to 0.0.0.0)

Routes:
    GET  /            an HTML page whose script writes "rendered-by-js" into the DOM
    GET  /hello       "hello from the sandbox"
    GET  /headers     the request's headers as JSON
    GET  /big?n=N     N bytes: the repeated pattern bytes(range(256))
    POST /sha         the sha256 and length of the body (Content-Length or chunked)
    GET  /sse?n=N     N server-sent events, 0.5 s apart, each "data: event-i"
    GET  /ws          a WebSocket that echoes text and binary messages
    GET  /silent      never answers
HTTP/1.1 with keep-alive; one thread per connection.
"""

import base64
import hashlib
import json
import socket
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PAGE = b"""<!doctype html><html><head><title>ai2in preview</title></head>
<body><p id="out">static</p>
<script>document.getElementById("out").textContent = "rendered-by-" + "js";</script>
</body></html>"""
PATTERN = bytes(range(256))
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        q = parse_qs(url.query)
        if url.path == "/":
            self.reply(200, PAGE, "text/html; charset=utf-8")
        elif url.path == "/hello":
            self.reply(200, b"hello from the sandbox")
        elif url.path == "/headers":
            self.reply(200, json.dumps({k.lower(): v for k, v in self.headers.items()}).encode(),
                       "application/json")
        elif url.path == "/big":
            n = int(q.get("n", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            block = PATTERN * 4096
            left = n
            while left > 0:
                chunk = block[:min(left, len(block))]
                self.wfile.write(chunk)
                left -= len(chunk)
        elif url.path == "/sse":
            self.sse(int(q.get("n", ["3"])[0]))
        elif url.path == "/ws":
            self.websocket()
        elif url.path == "/silent":
            time.sleep(3600)
        else:
            self.reply(404, b"no such route")

    def do_POST(self):
        h = hashlib.sha256()
        n = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = size
                while left:
                    data = self.rfile.read(min(left, 1 << 20))
                    h.update(data)
                    n += len(data)
                    left -= len(data)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                data = self.rfile.read(min(left, 1 << 20))
                if not data:
                    break
                h.update(data)
                n += len(data)
                left -= len(data)
        self.reply(200, json.dumps({"sha256": h.hexdigest(), "length": n}).encode(),
                   "application/json")

    def sse(self, n):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(n):
            ev = f"data: event-{i} at {time.time():.3f}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
            self.wfile.flush()
            time.sleep(0.5)
        self.wfile.write(b"0\r\n\r\n")

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack(">H", self.rfile.read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            if opcode == 8:  # close: answer it and end
                self.wfile.write(b"\x88\x00")
                self.wfile.flush()
                return
            out = bytes([0x80 | opcode])
            if len(data) < 126:
                out += bytes([len(data)])
            elif len(data) < 65536:
                out += bytes([126]) + struct.pack(">H", len(data))
            else:
                out += bytes([127]) + struct.pack(">Q", len(data))
            self.wfile.write(out + data)
            self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    address_family = socket.AF_INET


if __name__ == "__main__":
    port = int(sys.argv[1])
    bind = sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0"
    Server((bind, port), Handler).serve_forever()
