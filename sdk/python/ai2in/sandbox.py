"""The synchronous ``Sandbox`` client: create, connect, list, timeouts, kill, and the
``commands``, ``pty`` and ``files`` namespaces."""

from __future__ import annotations

import types
from typing import Any, Dict, List, Mapping, Optional, Sequence, Type, TypeVar, Union

from ._transport import Transport, sandbox_path
from .commands import Commands
from .exceptions import NotFoundError, SandboxError
from .files import Files
from .pty import Pty

__all__ = ["Sandbox"]

S = TypeVar("S", bound="Sandbox")

_LIST_PAGE_SIZE = 100


class Sandbox:
    """An isolated Linux sandbox on an AI2IN engine.

    ``Sandbox(...)`` (or ``Sandbox.create(...)``) creates a new sandbox at once;
    ``Sandbox.connect(id)`` attaches to an existing one. Use it as a context manager to kill
    the sandbox when the block ends::

        with Sandbox(api_key="ai2in_live_…", timeout=300) as sbx:
            print(sbx.commands.run("uname -a").stdout)
    """

    def __init__(self, api_key: Optional[str] = None, timeout: Optional[int] = None,
                 template: Optional[str] = None, metadata: Optional[Mapping[str, str]] = None,
                 envs: Optional[Mapping[str, str]] = None,
                 cpu_count: Optional[float] = None, memory_mb: Optional[int] = None,
                 api_url: Optional[str] = None,
                 request_timeout: Optional[float] = None) -> None:
        """Creates a sandbox (``POST /v1/sandboxes``) and returns once it is running.

        Args:
            api_key: the team's key; defaults to ``$AI2IN_API_KEY``.
            timeout: hard lifetime in seconds (1..86400); None for none (the sandbox then
                lives until killed or idle-reaped).
            template: template name (the engine's default is ``"base"``).
            metadata: string → string labels, echoed by get_info() and filterable in list().
            envs: environment variables set in every command (never echoed back).
            cpu_count: CPUs (0.1..64; engine default 1).
            memory_mb: memory limit in MiB (64..65536; engine default 512).
            api_url: engine URL; defaults to ``$AI2IN_API_URL`` or ``http://127.0.0.1:7300``.
            request_timeout: client-side timeout of each HTTP request, in seconds.

        Raises:
            AuthenticationError, InvalidArgumentError, NotFoundError (unknown template),
            RateLimitError (running cap reached), SandboxError.
        """
        transport = Transport(api_key, api_url, request_timeout)
        body: Dict[str, Any] = {}
        if template is not None:
            body["template"] = template
        if timeout is not None:
            body["timeout"] = timeout
        if metadata is not None:
            body["metadata"] = dict(metadata)
        if envs is not None:
            body["envs"] = dict(envs)
        if cpu_count is not None:
            body["cpu_count"] = cpu_count
        if memory_mb is not None:
            body["memory_mb"] = memory_mb
        info = transport.request("POST", "/v1/sandboxes", body=body)
        self._attach(_expect_sandbox(info), transport)

    def _attach(self, info: Dict[str, Any], transport: Transport) -> None:
        self._transport = transport
        self._id: str = info["id"]
        self._info: Dict[str, Any] = info
        self.commands: Commands = Commands(self._id, transport)
        self.pty: Pty = Pty(self._id, transport)
        self.files: Files = Files(self._id, transport)

    @classmethod
    def create(cls: Type[S], api_key: Optional[str] = None, timeout: Optional[int] = None,
               template: Optional[str] = None, metadata: Optional[Mapping[str, str]] = None,
               envs: Optional[Mapping[str, str]] = None, cpu_count: Optional[float] = None,
               memory_mb: Optional[int] = None, api_url: Optional[str] = None,
               request_timeout: Optional[float] = None) -> S:
        """Creates a sandbox; the same as calling ``Sandbox(...)``."""
        return cls(api_key=api_key, timeout=timeout, template=template, metadata=metadata,
                   envs=envs, cpu_count=cpu_count, memory_mb=memory_mb, api_url=api_url,
                   request_timeout=request_timeout)

    @classmethod
    def connect(cls: Type[S], sandbox_id: str, api_key: Optional[str] = None,
                api_url: Optional[str] = None, request_timeout: Optional[float] = None) -> S:
        """Attaches to an existing sandbox by id; never creates one.

        Raises:
            NotFoundError: no such sandbox for this team (or it was killed).
            InvalidArgumentError: ``sandbox_id`` is not a well-formed id.
        """
        transport = Transport(api_key, api_url, request_timeout)
        info = transport.request("GET", sandbox_path(sandbox_id))
        sbx = cls.__new__(cls)
        sbx._attach(_expect_sandbox(info), transport)
        return sbx

    @property
    def id(self) -> str:
        """The sandbox id, ``sbx_`` + 20 characters."""
        return self._id

    @property
    def sandbox_id(self) -> str:
        """The sandbox id (alias of ``id``)."""
        return self._id

    @property
    def api_url(self) -> str:
        """The URL of the engine this sandbox lives on."""
        return self._transport.api_url

    def get_info(self) -> Dict[str, Any]:
        """Returns the engine's sandbox object as a plain dict (``get_info()["end_at"]``).

        Raises:
            NotFoundError: the sandbox is gone.
        """
        info = _expect_sandbox(self._transport.request("GET", sandbox_path(self._id)))
        self._info = info
        return dict(info)

    def is_running(self) -> bool:
        """True if the sandbox exists and its state is ``running``."""
        try:
            return self.get_info().get("state") == "running"
        except NotFoundError:
            return False

    def set_timeout(self, timeout: int) -> None:
        """Sets the hard deadline to now + ``timeout`` seconds (1..86400), extending or
        shortening the sandbox's life.

        Raises:
            InvalidArgumentError: ``timeout`` is out of range.
            NotFoundError: the sandbox is gone.
        """
        info = self._transport.request("POST", sandbox_path(self._id, "/timeout"),
                                       body={"timeout": timeout})
        if isinstance(info, dict) and "id" in info:
            self._info = info

    def kill(self) -> bool:
        """Kills the sandbox and deletes its filesystem.

        Returns:
            True if it was killed now, False if it was already gone. Idempotent.
        """
        try:
            self._transport.request("DELETE", sandbox_path(self._id))
        except NotFoundError:
            return False
        return True

    @classmethod
    def list(cls, api_key: Optional[str] = None,
             state: Optional[Union[str, Sequence[str]]] = None,
             metadata: Optional[Mapping[str, str]] = None, api_url: Optional[str] = None,
             request_timeout: Optional[float] = None,
             page_size: Optional[int] = None) -> List[Dict[str, Any]]:
        """Returns this team's sandboxes (running and paused by default), oldest first.

        Follows ``next_token`` pages until the end.

        Args:
            state: a state or list of states to include (e.g. ``"running"``).
            metadata: only sandboxes whose metadata has all these key/value pairs.
            page_size: sandboxes fetched per request (1..1000; engine default 100).
        """
        transport = Transport(api_key, api_url, request_timeout)
        base: List[Any] = []
        if state is not None:
            states = [state] if isinstance(state, str) else list(state)
            base.append(("state", ",".join(states)))
        for k, v in (metadata or {}).items():
            base.append((f"metadata.{k}", v))
        base.append(("limit", str(page_size or _LIST_PAGE_SIZE)))
        out: List[Dict[str, Any]] = []
        token: Optional[str] = None
        while True:
            query = base + ([("next_token", token)] if token else [])
            doc = transport.request("GET", "/v1/sandboxes", query=query)
            if not isinstance(doc, dict) or not isinstance(doc.get("sandboxes"), list):
                raise SandboxError(f"unexpected answer to list: {doc!r}")
            out.extend(doc["sandboxes"])
            token = doc.get("next_token")
            if not token:
                return out

    def __enter__(self: S) -> S:
        """Returns the sandbox; it is killed when the ``with`` block ends."""
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[types.TracebackType]) -> None:
        """Kills the sandbox. If the block raised, a failure of this kill is swallowed so
        that the block's own exception propagates."""
        if exc_type is None:
            self.kill()
            return
        try:
            self.kill()
        except Exception:  # never hide the body's exception behind a cleanup failure
            pass

    def __repr__(self) -> str:
        return f"Sandbox(id={self._id!r}, api_url={self._transport.api_url!r})"


def _expect_sandbox(info: Any) -> Dict[str, Any]:
    if not isinstance(info, dict) or not isinstance(info.get("id"), str):
        raise SandboxError(f"unexpected answer from the engine (no sandbox object): {info!r}")
    return info
