"""HTTP transport of the SDK: the one place that builds headers, sends requests and turns
the engine's error bodies into exceptions.

It uses only the standard library (``http.client``). Each request opens its own connection,
so one ``Transport`` may be shared between threads (``AsyncSandbox`` runs calls in worker
threads). A request body is JSON (``body=``) or raw bytes (``raw=`` a ``RawBody``: bytes, or an
iterator of chunks sent with Content-Length when the size is known and chunked transfer
encoding otherwise). ``request`` reads a JSON answer; ``open_stream`` returns a live
newline-delimited JSON event stream (``_stream.EventStream``) and ``open_download`` a live
byte response. All three raise the same typed exceptions, with the server's message, for an
error status answered before a stream starts.
"""

from __future__ import annotations

import builtins
import http.client
import json
import os
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple, Type, Union

from . import __version__ as _version
from .exceptions import (
    AuthenticationError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    RateLimitError,
    SandboxError,
    TimeoutError,
    UnavailableError,
)

if TYPE_CHECKING:  # pragma: no cover
    from ._stream import EventStream

DEFAULT_API_URL = "http://127.0.0.1:7300"
DEFAULT_REQUEST_TIMEOUT = 60.0
# Kept-alive connections one Transport holds at most (each holds a thread in the engine).
MAX_IDLE_CONNECTIONS = 4
# Read timeout of a live stream: the engine sends a keepalive every 10 s on a silent stream,
# so 60 s without a byte means the engine (or the network) is gone.
STREAM_READ_TIMEOUT = 60.0
# Bytes handed to the socket per send when uploading a body.
UPLOAD_BLOCK = 256 * 1024

Query = Sequence[Tuple[str, str]]

_STATUS_ERRORS: Dict[int, Type[SandboxError]] = {
    400: InvalidArgumentError,
    401: AuthenticationError,
    404: NotFoundError,
    408: TimeoutError,
    409: ConflictError,
    413: InvalidArgumentError,
    429: RateLimitError,
    503: UnavailableError,
    504: TimeoutError,
}


@dataclass
class RawBody:
    """A raw (non-JSON) request body.

    ``data`` is the whole body as bytes, or an iterable of bytes chunks read lazily while
    sending. ``length`` is the total size when known (sent as Content-Length); None sends the
    chunks with chunked transfer encoding.
    """

    data: Union[bytes, Iterable[bytes]]
    length: Optional[int] = None
    content_type: str = "application/octet-stream"


def resolve_api_key(api_key: Optional[str]) -> str:
    """Returns ``api_key``, else ``$AI2IN_API_KEY``; raises AuthenticationError if neither."""
    key = api_key if api_key else os.environ.get("AI2IN_API_KEY", "")
    if not key:
        raise AuthenticationError(
            "no API key: pass api_key=\"ai2in_live_…\" or set the AI2IN_API_KEY environment "
            "variable (make one on the engine's host with `ai2ind keys create --team NAME`)")
    return key


def resolve_api_url(api_url: Optional[str]) -> str:
    """Returns ``api_url``, else ``$AI2IN_API_URL``, else ``http://127.0.0.1:7300``."""
    url = api_url if api_url else os.environ.get("AI2IN_API_URL", "") or DEFAULT_API_URL
    return url.rstrip("/")


def error_from_response(status: int, body: bytes, reason: str = "") -> SandboxError:
    """Builds the exception for an error answer from the engine's JSON error body."""
    code: Optional[str] = None
    message = ""
    try:
        doc = json.loads(body.decode("utf-8")) if body else None
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        err = doc["error"]
        code = err.get("code") if isinstance(err.get("code"), str) else None
        message = err.get("message") if isinstance(err.get("message"), str) else ""
    if not message:
        text = body.decode("utf-8", "replace").strip()[:500]
        message = f"HTTP {status} {reason}".strip() + (f": {text}" if text else "")
    cls = _STATUS_ERRORS.get(status, SandboxError)
    if code == "timeout":
        cls = TimeoutError
    return cls(message, status=status, code=code)


# What sending on a kept-alive connection the engine has closed meanwhile raises.
_STALE_ERRORS = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                 ConnectionAbortedError)


class _HTTPConnection(http.client.HTTPConnection):
    """Remembers its socket (``stream_socket``) even after http.client hands it to the
    response, so that a stream can be shut down from another thread."""

    stream_socket: Optional[socket.socket] = None

    def connect(self) -> None:
        super().connect()
        self.stream_socket = self.sock


class _HTTPSConnection(http.client.HTTPSConnection):
    """The HTTPS twin of ``_HTTPConnection``."""

    stream_socket: Optional[socket.socket] = None

    def connect(self) -> None:
        super().connect()
        self.stream_socket = self.sock


class Transport:
    """Sends JSON requests to one engine with one API key."""

    def __init__(self, api_key: Optional[str] = None, api_url: Optional[str] = None,
                 request_timeout: Optional[float] = None) -> None:
        self.api_key: str = resolve_api_key(api_key)
        self.api_url: str = resolve_api_url(api_url)
        self.request_timeout: float = (DEFAULT_REQUEST_TIMEOUT if request_timeout is None
                                       else float(request_timeout))
        parsed = urllib.parse.urlsplit(self.api_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise SandboxError(f"invalid API URL {self.api_url!r}: expected http://HOST[:PORT]")
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port
        self._base_path = parsed.path.rstrip("/")
        # Keep-alive: connections whose last answer was read to its end wait here for the
        # next request (a new TCP connection costs the engine a thread start and the client
        # a handshake: about half of a short command's round trip).
        self._idle: List[http.client.HTTPConnection] = []
        self._idle_lock = threading.Lock()

    def _headers(self, content_type: Optional[str]) -> Dict[str, str]:
        headers = {
            "X-API-Key": self.api_key,
            "Accept": "application/json",
            "User-Agent": f"ai2in-python/{_version}",
        }
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers

    def _take(self, timeout: float) -> Tuple[http.client.HTTPConnection, bool]:
        """An idle kept-alive connection (True) or a new one (False), with timeout set."""
        with self._idle_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None and conn.sock is not None:
            conn.timeout = timeout
            conn.sock.settimeout(timeout)
            return conn, True
        return self._connection(timeout), False

    def release(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> bool:
        """Keeps conn for the next request if its answer was read to the end and the engine
        keeps the connection open; closes it otherwise. Returns whether it was kept."""
        if resp.isclosed() and conn.sock is not None and not resp.will_close:
            with self._idle_lock:
                if len(self._idle) < MAX_IDLE_CONNECTIONS:
                    self._idle.append(conn)
                    return True
        conn.close()
        return False

    def close(self) -> None:
        """Closes the kept-alive connections (new requests open new ones)."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return _HTTPSConnection(self._host, self._port, timeout=timeout,
                                    context=ssl.create_default_context(), blocksize=UPLOAD_BLOCK)
        return _HTTPConnection(self._host, self._port, timeout=timeout, blocksize=UPLOAD_BLOCK)

    def _send(self, conn: http.client.HTTPConnection, method: str, url: str,
              body: Optional[Any], raw: Optional[RawBody]) -> http.client.HTTPResponse:
        """Writes the request and reads the status line and headers of the answer."""
        if raw is None:
            data = None if body is None else json.dumps(body).encode("utf-8")
            conn.request(method, url, body=data,
                         headers=self._headers(None if data is None else "application/json"))
            return conn.getresponse()
        headers = self._headers(raw.content_type)
        chunked = False
        if isinstance(raw.data, (bytes, bytearray, memoryview)):
            headers["Content-Length"] = str(memoryview(raw.data).nbytes)
        elif raw.length is not None:
            headers["Content-Length"] = str(raw.length)
        else:
            headers["Transfer-Encoding"] = "chunked"
            chunked = True
        try:
            conn.request(method, url, body=raw.data, headers=headers, encode_chunked=chunked)
        except (BrokenPipeError, ConnectionResetError) as e:
            # The engine may answer (an error, typically) and close before reading the whole
            # body: that answer, if it arrived, says more than the broken pipe does.
            try:
                return conn.getresponse()
            except (OSError, http.client.HTTPException):
                raise e from None
        return conn.getresponse()

    def _open(self, method: str, path: str, body: Optional[Any] = None,
              query: Optional[Query] = None, timeout: Optional[float] = None,
              raw: Optional[RawBody] = None
              ) -> Tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Sends a request; returns the connection and the unread response.

        ``body`` is sent as JSON, ``raw`` as bytes (at most one of them). Raises the mapped
        SandboxError for error statuses (after reading the error body), TimeoutError on a
        client-side timeout and SandboxError when the engine is not reachable. The caller
        must close the connection.
        """
        url = self._base_path + path
        if query:
            url += "?" + urllib.parse.urlencode(list(query))
        t = self.request_timeout if timeout is None else timeout
        # A body that is an iterator or a file cannot be sent twice: it gets a new connection.
        replayable = raw is None or isinstance(raw.data, (bytes, bytearray, memoryview))
        conn, reused = self._take(t) if replayable else (self._connection(t), False)
        try:
            try:
                resp = self._send(conn, method, url, body, raw)
            except _STALE_ERRORS:
                if not reused:
                    raise
                # The engine closed the kept-alive connection before reading the request:
                # nothing was done; send it again on a new connection.
                conn.close()
                conn = self._connection(t)
                resp = self._send(conn, method, url, body, raw)
        except BaseException as e:
            conn.close()
            if isinstance(e, (socket.timeout, builtins.TimeoutError)):
                raise TimeoutError(f"request {method} {path} to the AI2IN engine at "
                                   f"{self.api_url} timed out after {t:g} s") from e
            if isinstance(e, (ConnectionRefusedError, socket.gaierror)):
                raise SandboxError(f"the AI2IN engine at {self.api_url} is not reachable ({e}); "
                                   "is ai2ind running? (set api_url= or AI2IN_API_URL)") from e
            if isinstance(e, (OSError, http.client.HTTPException)):
                raise SandboxError(f"request {method} {path} to the AI2IN engine at "
                                   f"{self.api_url} failed: {e}") from e
            raise  # the caller's own body iterator failed, or KeyboardInterrupt
        if resp.status >= 400:
            try:
                err = resp.read()
            except (OSError, http.client.HTTPException):
                err = b""
            finally:
                self.release(conn, resp)
            raise error_from_response(resp.status, err, resp.reason)
        return conn, resp

    def request(self, method: str, path: str, body: Optional[Any] = None,
                query: Optional[Query] = None, timeout: Optional[float] = None,
                raw: Optional[RawBody] = None) -> Any:
        """Sends a request (JSON ``body`` or ``raw`` bytes) and returns the decoded JSON
        answer (None for an empty body)."""
        conn, resp = self._open(method, path, body=body, query=query, timeout=timeout, raw=raw)
        try:
            answer = resp.read()
        except (socket.timeout, builtins.TimeoutError) as e:
            raise TimeoutError(f"reading the answer to {method} {path} from the AI2IN engine "
                               f"at {self.api_url} timed out") from e
        except (OSError, http.client.HTTPException) as e:
            raise SandboxError(f"reading the answer to {method} {path} from the AI2IN engine "
                               f"at {self.api_url} failed: {e}") from e
        finally:
            self.release(conn, resp)
        if not answer:
            return None
        try:
            return json.loads(answer.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise SandboxError(f"the AI2IN engine at {self.api_url} answered {method} {path} "
                               f"with invalid JSON: {answer[:200]!r}", status=resp.status) from e


    def open_stream(self, method: str, path: str, body: Optional[Any] = None,
                    query: Optional[Query] = None) -> "EventStream":
        """Sends a request whose answer is an NDJSON event stream; returns the open stream.

        An error status before the stream starts raises the mapped SandboxError. Reads on
        the stream time out after ``STREAM_READ_TIMEOUT`` seconds without a byte.
        """
        from ._stream import EventStream  # the stream module imports this one

        conn, resp = self._open(method, path, body=body, query=query,
                                timeout=STREAM_READ_TIMEOUT)
        return EventStream(conn, resp, f"{method} {path}", self.api_url, release=self.release)

    def open_download(self, method: str, path: str, query: Optional[Query] = None
                      ) -> Tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Sends a request whose answer is raw bytes; returns the connection and the unread
        response (the caller closes the connection). Errors as for ``request``."""
        return self._open(method, path, query=query)


def sandbox_path(sandbox_id: str, suffix: str = "") -> str:
    """Returns ``/v1/sandboxes/{id}{suffix}`` with the id percent-encoded."""
    return "/v1/sandboxes/" + urllib.parse.quote(sandbox_id, safe="") + suffix
