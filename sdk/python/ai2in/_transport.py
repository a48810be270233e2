"""HTTP transport of the SDK: the one place that builds headers, sends requests and turns
the engine's error bodies into exceptions.

It uses only the standard library (``http.client``). Each request opens its own connection,
so one ``Transport`` may be shared between threads (``AsyncSandbox`` runs calls in worker
threads). ``_open`` returns the live response, unread, so that streaming (newline-delimited
JSON over chunked HTTP) can be added beside ``request`` without touching the error handling.
"""

from __future__ import annotations

import builtins
import http.client
import json
import os
import socket
import ssl
import urllib.parse
from typing import Any, Dict, Optional, Sequence, Tuple, Type

from . import __version__ as _version
from .exceptions import (
    AuthenticationError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    RateLimitError,
    SandboxError,
    TimeoutError,
)

DEFAULT_API_URL = "http://127.0.0.1:7300"
DEFAULT_REQUEST_TIMEOUT = 60.0

Query = Sequence[Tuple[str, str]]

_STATUS_ERRORS: Dict[int, Type[SandboxError]] = {
    400: InvalidArgumentError,
    401: AuthenticationError,
    404: NotFoundError,
    408: TimeoutError,
    409: ConflictError,
    413: InvalidArgumentError,
    429: RateLimitError,
    504: TimeoutError,
}


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

    def _headers(self, has_body: bool) -> Dict[str, str]:
        headers = {
            "X-API-Key": self.api_key,
            "Accept": "application/json",
            "User-Agent": f"ai2in-python/{_version}",
        }
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _open(self, method: str, path: str, body: Optional[Any] = None,
              query: Optional[Query] = None, timeout: Optional[float] = None
              ) -> Tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Sends a request; returns the connection and the unread response.

        Raises the mapped SandboxError for error statuses (after reading the error body),
        TimeoutError on a client-side timeout and SandboxError when the engine is not
        reachable. The caller must close the connection.
        """
        url = self._base_path + path
        if query:
            url += "?" + urllib.parse.urlencode(list(query))
        data = None if body is None else json.dumps(body).encode("utf-8")
        t = self.request_timeout if timeout is None else timeout
        conn = self._connection(t)
        try:
            conn.request(method, url, body=data, headers=self._headers(data is not None))
            resp = conn.getresponse()
        except (socket.timeout, builtins.TimeoutError) as e:
            conn.close()
            raise TimeoutError(f"request {method} {path} to the AI2IN engine at {self.api_url} "
                               f"timed out after {t:g} s") from e
        except (ConnectionRefusedError, socket.gaierror) as e:
            conn.close()
            raise SandboxError(f"the AI2IN engine at {self.api_url} is not reachable ({e}); "
                               "is ai2ind running? (set api_url= or AI2IN_API_URL)") from e
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise SandboxError(f"request {method} {path} to the AI2IN engine at "
                               f"{self.api_url} failed: {e}") from e
        if resp.status >= 400:
            try:
                raw = resp.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                conn.close()
            raise error_from_response(resp.status, raw, resp.reason)
        return conn, resp

    def request(self, method: str, path: str, body: Optional[Any] = None,
                query: Optional[Query] = None, timeout: Optional[float] = None) -> Any:
        """Sends a request and returns the decoded JSON answer (None for an empty body)."""
        conn, resp = self._open(method, path, body=body, query=query, timeout=timeout)
        try:
            raw = resp.read()
        except (socket.timeout, builtins.TimeoutError) as e:
            raise TimeoutError(f"reading the answer to {method} {path} from the AI2IN engine "
                               f"at {self.api_url} timed out") from e
        except (OSError, http.client.HTTPException) as e:
            raise SandboxError(f"reading the answer to {method} {path} from the AI2IN engine "
                               f"at {self.api_url} failed: {e}") from e
        finally:
            conn.close()
        if not raw:
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise SandboxError(f"the AI2IN engine at {self.api_url} answered {method} {path} "
                               f"with invalid JSON: {raw[:200]!r}", status=resp.status) from e


def sandbox_path(sandbox_id: str, suffix: str = "") -> str:
    """Returns ``/v1/sandboxes/{id}{suffix}`` with the id percent-encoded."""
    return "/v1/sandboxes/" + urllib.parse.quote(sandbox_id, safe="") + suffix
