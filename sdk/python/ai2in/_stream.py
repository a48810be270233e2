"""Live event streams and output decoding, shared by commands, PTYs and file watches.

``EventStream`` reads an ``application/x-ndjson`` answer (one JSON object per line, sent as
it happens over chunked HTTP) event by event, without waiting for more than the next line,
and can be closed from another thread to wake a reader blocked on it. ``OutputBuffer`` turns
the base64 output chunks of one stream (stdout or stderr) into the raw bytes, the text
(decoded incrementally, so a multi-byte character split across two events is not broken)
and whole lines for a per-line callback.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import codecs
import http.client
import json
import socket
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional

from .exceptions import SandboxError, TimeoutError

__all__ = ["EventStream", "OutputBuffer", "decode_data", "dropped_marker"]

# Longest event line accepted (an output event carries at most a few hundred KiB of base64).
MAX_EVENT_LINE = 64 * 1024 * 1024
_READ_SIZE = 64 * 1024


def dropped_marker(n: int) -> str:
    """The line put in place of ``n`` bytes of output the engine discarded."""
    return f"[ai2in: {n} bytes of output dropped]"


def decode_data(ev: Dict[str, Any]) -> bytes:
    """Returns the bytes of an output event's base64 ``data`` field."""
    data = ev.get("data")
    if not isinstance(data, str):
        raise SandboxError(f"output event without base64 data: {str(ev)[:200]}")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SandboxError(f"output event with invalid base64 data: {data[:100]!r}") from e


class EventStream:
    """An open NDJSON event stream: iterate it for events (dicts); ``close()`` ends it.

    Keepalive events are consumed here and never yielded. Iteration stops at the end of the
    response; a broken connection or a read timeout raises SandboxError / TimeoutError, unless
    the stream was closed on purpose (then iteration just stops).
    """

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                 what: str, api_url: str,
                 release: Optional[Callable[[http.client.HTTPConnection,
                                             http.client.HTTPResponse], bool]] = None) -> None:
        self._conn = conn
        self._release = release
        self._resp = resp
        self._what = what
        self._api_url = api_url
        self._buf = bytearray()
        self._closed = False
        self._lock = threading.Lock()
        # The socket, kept by the transport's connection class: http.client drops its own
        # reference when it hands the socket to the response.
        self._sock: Optional[socket.socket] = getattr(conn, "stream_socket", None) or conn.sock

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return self.events()

    def events(self) -> Iterator[Dict[str, Any]]:
        """Yields the stream's events in order until it ends."""
        while True:
            line = self._next_line()
            if line is None:
                return
            if not line.strip():
                continue
            try:
                ev = json.loads(line.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise SandboxError(f"the AI2IN engine at {self._api_url} sent an unreadable "
                                   f"event on {self._what}: {bytes(line[:200])!r}") from e
            if not isinstance(ev, dict) or not isinstance(ev.get("type"), str):
                raise SandboxError(f"the AI2IN engine at {self._api_url} sent an event without "
                                   f"a type on {self._what}: {bytes(line[:200])!r}")
            if ev["type"] == "keepalive":
                continue
            yield ev

    def _next_line(self) -> Optional[bytes]:
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[:nl + 1]
                return line
            if len(self._buf) > MAX_EVENT_LINE:
                raise SandboxError(f"an event on {self._what} is longer than "
                                   f"{MAX_EVENT_LINE} bytes")
            chunk = self._read()
            if not chunk:
                if self._buf.strip():  # a last line without its newline
                    line = bytes(self._buf)
                    self._buf.clear()
                    return line
                return None
            self._buf += chunk

    def _read(self) -> bytes:
        if self._closed:
            return b""
        try:
            return self._resp.read1(_READ_SIZE)
        except (socket.timeout, builtins.TimeoutError) as e:
            if self._closed:
                return b""
            raise TimeoutError(f"no data from the AI2IN engine at {self._api_url} on "
                               f"{self._what} for 60 s (it sends a keepalive every 10 s): "
                               "the engine or the connection is gone") from e
        except (OSError, ValueError, AttributeError, http.client.HTTPException) as e:
            # ValueError / AttributeError: the response was closed under us by close().
            if self._closed:
                return b""
            raise SandboxError(f"the stream {self._what} from the AI2IN engine at "
                               f"{self._api_url} broke: {e!r}") from e

    def finish(self) -> None:
        """Called after the stream's last event: reads what remains of the answer (its
        terminating chunk, normally already there) for at most a second, so that the
        connection can carry the next request, then closes the stream."""
        if not self._closed and self._release is not None and self._sock is not None:
            try:
                self._sock.settimeout(1.0)
                rest = 0
                while not self._resp.isclosed() and rest <= _READ_SIZE:
                    chunk = self._resp.read1(_READ_SIZE)
                    if not chunk:
                        break
                    rest += len(chunk)
            except (OSError, ValueError, AttributeError, http.client.HTTPException):
                pass
        self.close()

    def close(self) -> None:
        """Ends the stream; a thread blocked reading it wakes up and stops. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # A stream read to its end leaves a connection that can carry the next request.
        if self._release is not None and self._resp.isclosed() and self._release(self._conn, self._resp):
            return
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self._conn.close()
        except OSError:
            pass


class OutputBuffer:
    """Accumulates one output stream (stdout, stderr or a terminal) of a process.

    ``feed(bytes)`` keeps the raw bytes and decodes them incrementally as UTF-8 (invalid
    bytes become U+FFFD); with ``lines`` it returns the lines completed by this chunk, without
    their trailing newline (for a per-line callback, called by the owner outside its lock).
    ``finish()`` decodes what is pending and returns a last partial line. ``gap(marker)``
    records lost output: the pending partial line is flushed, the decoder restarted, and
    ``marker`` is added to the text on a line of its own (and returned as a line).
    """

    def __init__(self, lines: bool = False) -> None:
        self._lines = lines
        self._raw = bytearray()
        self._text: List[str] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial: List[str] = []  # pieces of the current line (joined at its end)
        self._ends_with_newline = True

    @property
    def raw(self) -> bytes:
        """Every byte received so far."""
        return bytes(self._raw)

    @property
    def text(self) -> str:
        """Everything received so far, decoded (a split character at the end is pending)."""
        if len(self._text) > 1:
            self._text = ["".join(self._text)]
        return self._text[0] if self._text else ""

    def feed(self, data: bytes) -> List[str]:
        """Adds a chunk of output; returns the lines it completed."""
        self._raw += data
        return self._add_text(self._decoder.decode(data))

    def finish(self) -> List[str]:
        """The stream ended: decodes what is pending; returns the last partial line."""
        out = self._add_text(self._decoder.decode(b"", True))
        self._decoder.reset()
        if self._partial:
            out.append("".join(self._partial))
            self._partial = []
        return out

    def gap(self, marker: str) -> List[str]:
        """Records that output was lost here; returns the lines completed (see above)."""
        out = self.finish()
        if not self._ends_with_newline:  # the flushed partial line ends here
            self._text.append("\n")
            self._ends_with_newline = True
        return out + self._add_text(marker + "\n")

    def _add_text(self, s: str) -> List[str]:
        if not s:
            return []
        self._text.append(s)
        self._ends_with_newline = s.endswith("\n")
        if not self._lines:
            return []
        if "\n" not in s:  # a long line arriving in pieces stays linear
            self._partial.append(s)
            return []
        pieces = s.split("\n")
        pieces[0] = "".join(self._partial) + pieces[0]
        last = pieces.pop()
        self._partial = [last] if last else []
        return pieces
