"""A TCP server for the preview proxy's framing tests, run inside a sandbox: it answers
nothing and writes every byte each connection brings, in order, to DIR/NNNN (first as
NNNN.part, renamed once the proxy closes its side), so that a test can compare what reached
the sandbox with what the client sent.

Usage: python3 recorder.py PORT DIR [BIND]
"""

import os
import socket
import sys
import threading


def serve(conn: socket.socket, path: str) -> None:
    with open(path + ".part", "wb") as f:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            f.write(data)
            f.flush()
    os.rename(path + ".part", path)
    conn.close()


def main() -> None:
    port, folder = int(sys.argv[1]), sys.argv[2]
    bind = sys.argv[3] if len(sys.argv) > 3 else "0.0.0.0"
    os.makedirs(folder, exist_ok=True)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((bind, port))
    srv.listen(64)
    n = 0
    while True:
        conn, _ = srv.accept()
        n += 1
        threading.Thread(target=serve, args=(conn, "%s/%04d" % (folder, n)), daemon=True).start()


main()
