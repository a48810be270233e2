"""A network client cannot crowd the API out (issue 13): connections from one address are
capped (api-connections-per-address, default 256: one more is answered 503 at once), and a
connection must send its request head within api-head-timeout (10 s) of waiting for it, the
whole request when it has no API key, or it is closed; a slowloris dribble does not extend
that. What legitimate clients do still works: a stream silent for longer than the deadline,
and a kept-alive authenticated connection idle for longer than it.

The attacking sockets connect from 127.0.0.2 (all of 127.0.0.0/8 is loopback), so that the
per-address accounting sees them apart from the SDK's calls from 127.0.0.1. These tests use
the engine's defaults (no flags), so that they run unchanged against an engine without the
guard, and fail there.
"""

from __future__ import annotations

import http.client
import select
import socket
import time
from typing import List, Optional

import pytest

from it import Engine, Sandbox

PER_ADDRESS = 256  # the default of api-connections-per-address
HEAD_TIMEOUT = 10  # the default of api-head-timeout, s
ATTACKER = "127.0.0.2"
# How long after the deadline a closed connection may still look open: the watchdog looks
# twice a second, and the machine may be busy with other jobs.
SLACK = 15


def attacker_socket(engine: Engine, timeout: float = 10) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((ATTACKER, 0))
    s.connect(("127.0.0.1", engine.port))
    return s


def closed_by_peer(s: socket.socket) -> bool:
    """Whether the engine closed s (end of file or reset), without waiting."""
    readable, _, _ = select.select([s], [], [], 0)
    if not readable:
        return False
    try:
        return s.recv(4096, socket.MSG_PEEK) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def seconds_until_closed(s: socket.socket, limit: float, drip: Optional[bytes] = None) -> Optional[float]:
    """Waits (sending one byte of drip a second, if given) until the engine closes s;
    returns how long that took, or None if it was still open after limit seconds."""
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < limit:
        if closed_by_peer(s):
            return time.monotonic() - t0
        if drip is not None:
            try:
                s.send(drip[i % len(drip):i % len(drip) + 1])
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - t0
            i += 1
        time.sleep(1)
    return None


def test_connections_from_one_address_are_capped(engine: Engine, key: str) -> None:
    idle: List[socket.socket] = []
    try:
        for _ in range(PER_ADDRESS):
            idle.append(attacker_socket(engine))
        time.sleep(0.5)  # let the engine accept them all
        # One more from the same address: a clear answer at once, not a silent hang.
        with attacker_socket(engine) as s:
            try:
                answer = s.recv(4096)
            except socket.timeout:
                answer = b"(no answer within 10 s)"
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"api-connections-per-address" in answer, answer
        # Another address is served, promptly, while the first holds its whole share.
        t0 = time.monotonic()
        assert isinstance(engine.list(key), list)
        status, doc, _ = engine.raw("GET", "/v1/health", timeout=10)
        assert status == 200 and doc["status"] == "ok"
        assert time.monotonic() - t0 < 10
    finally:
        for s in idle:
            s.close()
    # Once they close, the address may connect again.
    def served() -> bool:
        with attacker_socket(engine) as s:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(4096).startswith(b"HTTP/1.1 200 ")
    deadline = time.monotonic() + 10
    while not served():
        assert time.monotonic() < deadline, "the address was still refused 10 s after closing its connections"
        time.sleep(0.2)


def test_silent_connection_is_closed_after_the_head_deadline(engine: Engine) -> None:
    with attacker_socket(engine) as s:
        took = seconds_until_closed(s, HEAD_TIMEOUT + SLACK)
    assert took is not None, f"a connection that sent nothing was still open after {HEAD_TIMEOUT + SLACK} s"
    assert took >= HEAD_TIMEOUT - 1, f"closed after {took:.1f} s, before the deadline"


@pytest.mark.parametrize("what", ["head", "body"])
def test_slowloris_is_closed_within_the_head_deadline(engine: Engine, what: str) -> None:
    """One byte a second, of a head that never ends, or of the body of a request that needs
    no key (GET /v1/health): the engine closes it once the deadline passed, whatever the
    bytes still arriving."""
    with attacker_socket(engine) as s:
        if what == "head":
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
            drip = b"X-Slow-" * 1000
        else:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            drip = b"x"
        took = seconds_until_closed(s, HEAD_TIMEOUT + SLACK, drip=drip)
    assert took is not None, f"a dribbled {what} still held its connection after {HEAD_TIMEOUT + SLACK} s"


def test_request_without_key_is_refused_before_its_body(engine: Engine) -> None:
    """A client without a key cannot make the engine wait for a body it will refuse: the 401
    comes as soon as the head has, and the connection closes."""
    with attacker_socket(engine) as s:
        s.sendall(b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000000\r\n\r\n{")
        answer = b""
        try:
            while chunk := s.recv(4096):
                answer += chunk
        except socket.timeout:
            pass
    assert answer.startswith(b"HTTP/1.1 401 "), answer or b"(no answer within 10 s)"
    assert b"missing API key" in answer


def test_kept_alive_connection_without_key_is_closed_after_the_deadline(engine: Engine) -> None:
    with attacker_socket(engine) as s:
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
        took = seconds_until_closed(s, HEAD_TIMEOUT + SLACK)
    assert took is not None, f"an idle kept-alive connection without a key was open after {HEAD_TIMEOUT + SLACK} s"


def test_kept_alive_authenticated_connection_outlives_the_deadline(engine: Engine, key: str) -> None:
    """An SDK's kept-alive connection, idle between two calls for longer than the head
    deadline, is still open: the engine closes it only after the idle timeout (120 s)."""
    conn = http.client.HTTPConnection("127.0.0.1", engine.port, timeout=30)
    try:
        conn.request("GET", "/v1/sandboxes", headers={"X-API-Key": key})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200 and not resp.will_close
        sock = conn.sock
        time.sleep(HEAD_TIMEOUT + 4)
        assert sock is not None and not closed_by_peer(sock), "the engine closed an authenticated kept-alive connection"
        conn.request("GET", "/v1/sandboxes", headers={"X-API-Key": key})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        assert conn.sock is sock  # the same connection, not a new one
    finally:
        conn.close()


def test_sdk_calls_work_across_idle_gaps_and_silent_streams(engine: Engine, module_key: str) -> None:
    """The SDK as a user drives it: a command that prints nothing for longer than the head
    deadline streams its output at the end, and a call after an idle gap longer than it
    works."""
    sbx: Sandbox = engine.sandbox(module_key)
    t0 = time.monotonic()
    r = sbx.commands.run(f"sleep {HEAD_TIMEOUT + 5}; echo hi", timeout=120)
    assert r.stdout == "hi\n" and r.exit_code == 0
    assert time.monotonic() - t0 >= HEAD_TIMEOUT + 5
    time.sleep(HEAD_TIMEOUT + 3)
    assert sbx.commands.run("echo again").stdout == "again\n"
