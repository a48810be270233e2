"""The synchronous ``Sandbox`` client: create, connect, list, timeouts, pause and resume,
kill, the ``commands``, ``pty`` and ``files`` namespaces, and running code (``run_code`` and
the code contexts)."""

from __future__ import annotations

import os
import types
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Type, TypeVar, Union

from ._transport import Transport, sandbox_path
from .code import (Callbacks, CodeApi, Context, ContextRef, Execution, ExecutionError,
                   OutputMessage, Result)
from .commands import Commands
from .exceptions import InvalidArgumentError, NotFoundError, SandboxError
from .files import Files
from .pty import Pty

__all__ = ["Sandbox"]

S = TypeVar("S", bound="Sandbox")

_LIST_PAGE_SIZE = 100

#: Where preview URLs live when neither ``domain=``, ``$AI2IN_DOMAIN`` nor the engine says:
#: the preview proxy on this machine (``*.localhost`` is loopback).
DEFAULT_DOMAIN = "localhost:7301"


def _domain(domain: Optional[str], info: Dict[str, Any]) -> str:
    """``domain=``, else ``$AI2IN_DOMAIN``, else the engine's (its ``preview-domain``)."""
    preview = info.get("preview") if isinstance(info.get("preview"), dict) else {}
    return (domain or os.environ.get("AI2IN_DOMAIN", "") or str(preview.get("domain") or "")
            or DEFAULT_DOMAIN)


def _scheme(info: Dict[str, Any]) -> str:
    preview = info.get("preview") if isinstance(info.get("preview"), dict) else {}
    return "https" if preview.get("scheme") == "https" else "http"


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
                 request_timeout: Optional[float] = None, secure: Optional[bool] = None,
                 domain: Optional[str] = None, disk_mb: Optional[int] = None,
                 allow_internet_access: Optional[bool] = None,
                 network: Optional[Mapping[str, Sequence[str]]] = None,
                 runtime: Optional[str] = None) -> None:
        """Creates a sandbox (``POST /v1/sandboxes``) and returns once it is running.

        Args:
            api_key: the team's key; defaults to ``$AI2IN_API_KEY``.
            timeout: hard lifetime in seconds (at least 1; the engine caps more than 86400,
                24 h, to 86400): the sandbox lives until then, active or not. None for none
                (the sandbox then lives until killed or idle-reaped).
            template: template name (the engine's default is ``"base"``).
            metadata: string → string labels, echoed by get_info() and filterable in list().
            envs: environment variables set in every command (never echoed back).
            cpu_count: CPUs (0.1..64; engine default 1).
            memory_mb: memory limit in MiB (64..65536; engine default 512).
            disk_mb: disk limit in MiB of everything the sandbox writes, kept across pause
                and resume (16 up to the engine's ``max-disk-mb``; engine default 2048).
                Past it, writes inside fail with "Disk quota exceeded".
            api_url: engine URL; defaults to ``$AI2IN_API_URL`` or ``http://127.0.0.1:7300``.
            request_timeout: client-side timeout of each HTTP request, in seconds.
            secure: every request to the sandbox's preview URLs must then carry its
                ``traffic_access_token`` in the ``X-Ai2in-Traffic-Token`` header.
            domain: the preview URLs' domain for get_host(); defaults to ``$AI2IN_DOMAIN``
                or ``localhost:7301``.
            allow_internet_access: False: the sandbox reaches nothing beyond itself (a
                connection out fails at once); True: the internet through the engine's NAT,
                never the host, other sandboxes, 169.254.0.0/16 or the engine's
                ``deny-out`` ranges. None: the engine's ``internet-access`` setting (on
                unless its operator turned it off). Shown in ``get_info()["network"]``,
                kept across pause and resume.
            network: rules of the sandbox's own: ``{"allow_out": [...]}``, IPv4 CIDRs and
                domains (``"pypi.org"``, ``"*.githubusercontent.com"``: every name below it)
                it reaches even without internet access, a domain meaning the addresses the
                engine's DNS forwarder answers for it, kept current as they change;
                ``{"deny_out": [...]}``, IPv4 CIDRs it never reaches (no domains: an
                address can be reached without its name). allow_out wins over deny_out; the
                engine's own deny list wins over both.
            runtime: ``"runc"`` (a Linux container) or ``"gvisor"`` (gVisor's user-space
                kernel between the sandbox and the host's); None: the engine's default
                (its ``--runtime``). Shown in ``get_info()["runtime"]``.

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
        if disk_mb is not None:
            body["disk_mb"] = disk_mb
        if secure is not None:
            body["secure"] = secure
        if allow_internet_access is not None:
            body["allow_internet_access"] = allow_internet_access
        if network is not None:
            body["network"] = {k: list(v) for k, v in network.items()}
        if runtime is not None:
            body["runtime"] = runtime
        info = transport.request("POST", "/v1/sandboxes", body=body)
        self._attach(_expect_sandbox(info), transport, domain)

    def _attach(self, info: Dict[str, Any], transport: Transport,
                domain: Optional[str] = None) -> None:
        self._transport = transport
        self._domain = _domain(domain, info)
        self._scheme = _scheme(info)
        self._id: str = info["id"]
        self._info: Dict[str, Any] = info
        self.commands: Commands = Commands(self._id, transport)
        self.pty: Pty = Pty(self._id, transport)
        self.files: Files = Files(self._id, transport)
        self._code = CodeApi(self._id, transport)

    @classmethod
    def create(cls: Type[S], api_key: Optional[str] = None, timeout: Optional[int] = None,
               template: Optional[str] = None, metadata: Optional[Mapping[str, str]] = None,
               envs: Optional[Mapping[str, str]] = None, cpu_count: Optional[float] = None,
               memory_mb: Optional[int] = None, api_url: Optional[str] = None,
               request_timeout: Optional[float] = None, secure: Optional[bool] = None,
               domain: Optional[str] = None, disk_mb: Optional[int] = None,
               allow_internet_access: Optional[bool] = None,
               network: Optional[Mapping[str, Sequence[str]]] = None,
               runtime: Optional[str] = None) -> S:
        """Creates a sandbox; the same as calling ``Sandbox(...)``."""
        return cls(api_key=api_key, timeout=timeout, template=template, metadata=metadata,
                   envs=envs, cpu_count=cpu_count, memory_mb=memory_mb, api_url=api_url,
                   request_timeout=request_timeout, secure=secure, domain=domain,
                   disk_mb=disk_mb, allow_internet_access=allow_internet_access, network=network,
                   runtime=runtime)

    @classmethod
    def connect(cls: Type[S], sandbox_id: str, api_key: Optional[str] = None,
                api_url: Optional[str] = None, request_timeout: Optional[float] = None,
                domain: Optional[str] = None) -> S:
        """Attaches to an existing sandbox by id; never creates one.

        Raises:
            NotFoundError: no such sandbox for this team (or it was killed).
            InvalidArgumentError: ``sandbox_id`` is not a well-formed id.
        """
        transport = Transport(api_key, api_url, request_timeout)
        info = transport.request("GET", sandbox_path(sandbox_id))
        sbx = cls.__new__(cls)
        sbx._attach(_expect_sandbox(info), transport, domain)
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

    @property
    def traffic_access_token(self) -> Optional[str]:
        """The token a secure sandbox's preview requests must carry (header
        ``X-Ai2in-Traffic-Token``); None for a sandbox created without ``secure=True``."""
        return self._info.get("traffic_access_token")

    def get_host(self, port: int) -> str:
        """The preview host of ``port``: ``"{port}-{id}.{domain}"`` with the id's ``_`` as
        ``-`` (a host name has no ``_``, and a wildcard certificate ``*.{domain}`` matches
        only a valid one), e.g. ``8000-sbx-….localhost:7301``. ``http://`` + it reaches
        whatever listens on that port inside the sandbox (on 0.0.0.0 or 127.0.0.1), also
        after pause and resume. The proxy takes the id's own form (``8000-sbx_…``) too.

        Raises:
            InvalidArgumentError: port is not in 1..65535.
        """
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidArgumentError(f"port must be an integer in 1..65535, got {port!r}")
        return f"{port}-{self._id.replace('_', '-')}.{self._domain}"

    def get_url(self, port: int) -> str:
        """The preview URL of ``port``: ``"{scheme}://{get_host(port)}/"``, e.g.
        ``http://8000-sbx-….localhost:7301/``, with the scheme the engine serves preview
        URLs on (its ``preview-scheme``). Opens from a browser, curl, ``urllib`` or
        ``fetch`` on the engine's machine (``*.localhost`` is loopback).

        Raises:
            InvalidArgumentError: port is not in 1..65535.
        """
        return f"{self._scheme}://{self.get_host(port)}/"

    def get_info(self) -> Dict[str, Any]:
        """Returns the engine's sandbox object as a plain dict (``get_info()["end_at"]``).

        Among its keys: ``state``; ``timeout`` (seconds, or None); ``deadline``; ``end_at``,
        when the sandbox will end if nothing else happens, and ``end_reason``, which rule
        ends it: ``"timeout"`` (its hard deadline: ``end_at`` is ``deadline`` and it lives
        until then, active or not) or ``"idle"`` (no deadline: ``end_at`` is
        ``last_activity_at`` + ``idle_timeout`` and moves with activity). Both are None
        while the sandbox is paused (neither rule ends it then). The timestamps are RFC 3339
        strings.

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
        """Sets the hard deadline to now + ``timeout`` seconds, extending or shortening the
        sandbox's life; it then lives until the deadline, active or not (the idle timeout no
        longer applies). More than 86400 (24 h) is capped to 86400 by the engine, not refused:
        ``get_info()["end_at"]`` shows the deadline that applies. On a paused sandbox it sets
        the lifetime that ``resume()`` arms.

        Raises:
            InvalidArgumentError: ``timeout`` is less than 1 or not a whole number.
            NotFoundError: the sandbox is gone.
        """
        info = self._transport.request("POST", sandbox_path(self._id, "/timeout"),
                                       body={"timeout": timeout})
        if isinstance(info, dict) and "id" in info:
            self._info = info

    def pause(self, keep_memory: bool = False) -> Dict[str, Any]:
        """Pauses the sandbox (``POST /v1/sandboxes/{id}/pause``).

        By default the container and every process in it stop (no CPU, no RAM) and the
        address is released, while the whole filesystem is kept: every file, in any
        directory, is there after ``resume()``; what was only in memory (variables of the code
        kernel, running processes) is lost. A paused sandbox counts against no running cap
        and is never reaped for idleness or by its timeout. Pausing a paused sandbox changes
        nothing.

        Args:
            keep_memory: keep every process's memory too: ``resume()`` continues them where
                they were, at the same address. On runc they are frozen (cgroup freezer: no
                CPU, resumed in milliseconds, still counted against the running cap); on
                gVisor (``runtime="gvisor"``) the memory is checkpointed to disk (no CPU, no
                RAM, not in the cap; resume takes about a second). ``get_info()["pause_kind"]``
                says ``"memory"`` (else ``"filesystem"``).

        Returns:
            The engine's answer, ``{"status": "paused"}``.

        Raises:
            NotFoundError: the sandbox is gone.
            ConflictError: the sandbox is neither running nor paused (e.g. in error); or, on
                gVisor with ``keep_memory``, it holds what a checkpoint cannot save (a TCP
                connection from outside, a unix socket on its disk: the message lists them),
                and it keeps running, unchanged.
        """
        return _expect_status(self._transport.request(
            "POST", sandbox_path(self._id, "/pause"), body={"keep_memory": bool(keep_memory)}))

    def resume(self, timeout: Optional[int] = None) -> Dict[str, Any]:
        """Resumes a paused sandbox (``POST /v1/sandboxes/{id}/resume``); works from any
        ``Sandbox`` object, e.g. one from ``Sandbox.connect(id)``.

        The sandbox starts again on the filesystem it had, with a fresh address (its preview
        hosts stay the same) and fresh processes: the code kernel starts anew. It counts
        against the running cap again. If it has a timeout, the hard deadline is set again,
        that many seconds from now. Resuming a running sandbox changes nothing.

        Args:
            timeout: a new hard lifetime in seconds counted from now (at least 1; more than
                86400 is capped to 86400); None keeps the sandbox's own.

        Returns:
            The engine's answer, ``{"status": "running"}``.

        Raises:
            RateLimitError: the team's running cap is reached (the sandbox stays paused).
            NotFoundError: the sandbox is gone (killed).
            ConflictError: the sandbox is in error (kill it) or still being created.
            SandboxError: the sandbox could not be started again (it stays paused).
        """
        body: Dict[str, Any] = {}
        if timeout is not None:
            body["timeout"] = timeout
        return _expect_status(self._transport.request(
            "POST", sandbox_path(self._id, "/resume"), body=body))

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

    # -- running code ------------------------------------------------------------------------

    def run_code(self, code: str, language: Optional[str] = None,
                 context: Optional[ContextRef] = None,
                 on_stdout: Optional[Callable[[OutputMessage], Any]] = None,
                 on_stderr: Optional[Callable[[OutputMessage], Any]] = None,
                 on_result: Optional[Callable[[Result], Any]] = None,
                 on_error: Optional[Callable[[ExecutionError], Any]] = None,
                 envs: Optional[Mapping[str, str]] = None,
                 timeout: Optional[float] = None) -> Execution:
        """Runs code in a context and returns once it has finished.

        State (variables, imports, functions, the working directory) persists from one call
        to the next in the same context, also for other ``Sandbox`` objects connected to the
        same sandbox. Executions in one context run one at a time, in the order they arrive.
        Callbacks run in the calling thread, in the order of the events, all before
        ``run_code`` returns; if one raises, the execution is interrupted and the exception
        propagates.

        Args:
            code: the code (non-empty).
            language: ``"python"`` (the default), ``"bash"`` or ``"javascript"`` (also
                ``"js"``, ``"sh"``; case-insensitive): runs in that language's default
                context. With ``context`` it must match the context's language.
            context: a ``Context`` (or its id) from ``create_code_context``.
            on_stdout: called with an ``OutputMessage`` for each chunk of standard output.
            on_stderr: the same for standard error (``error`` True).
            on_result: called with each ``Result`` (displays, and the main result).
            on_error: called with the ``ExecutionError`` if the code raised.
            envs: environment variables set for this execution only.
            timeout: seconds (a float is fine) after which the engine interrupts the
                execution (``KeyboardInterrupt`` in Python); the context and its state
                survive, and the Execution has ``timed_out`` True. None: the engine's default,
                300 s. 0: no timeout.

        Returns:
            The Execution: ``results``, ``logs``, ``error`` (what the code raised, or None;
            an error is a result, not an exception), ``text``, ``execution_count``.

        Raises:
            ValueError: ``language`` conflicts with the language of ``context``.
            InvalidArgumentError: empty code, unknown language, bad envs (engine's message).
            NotFoundError: unknown or removed context, or the sandbox is gone.
            ConflictError: the sandbox is not running.
            SandboxError: the engine's stream failed (its message), or any other failure.
        """
        cbs = Callbacks(on_stdout, on_stderr, on_result, on_error)
        return self._code.run(code, language, context, cbs, envs, timeout)

    def create_code_context(self, cwd: Optional[str] = None, language: Optional[str] = None,
                            user: Optional[str] = None) -> Context:
        """Starts a new context (a fresh interpreter) and returns it once it can run code.

        Args:
            cwd: its working directory (default ``/home/sandbox``; must exist).
            language: ``"python"`` (the default), ``"bash"`` or ``"javascript"``.
            user: the user it runs as (default ``"root"``; the base template also has
                ``"sandbox"``).

        Raises:
            InvalidArgumentError: unknown language or user, missing ``cwd``.
        """
        return self._code.create_context(language=language, cwd=cwd, user=user)

    def list_code_contexts(self) -> List[Context]:
        """Returns the sandbox's contexts, the default ones that have started included
        (``default`` True)."""
        return self._code.list_contexts()

    def restart_code_context(self, context: ContextRef) -> Context:
        """Replaces the context's interpreter with a fresh one: its state is gone.

        Raises:
            NotFoundError: no such context (with the engine's message).
        """
        return self._code.restart_context(context)

    def remove_code_context(self, context: ContextRef) -> None:
        """Stops the context's interpreter and forgets the context. A default context comes
        back, fresh, on next use.

        Raises:
            NotFoundError: no such context (with the engine's message).
        """
        self._code.remove_context(context)

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


def _expect_status(doc: Any) -> Dict[str, Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get("status"), str):
        raise SandboxError(f"unexpected answer from the engine (no status): {doc!r}")
    return doc


def _expect_sandbox(info: Any) -> Dict[str, Any]:
    if not isinstance(info, dict) or not isinstance(info.get("id"), str):
        raise SandboxError(f"unexpected answer from the engine (no sandbox object): {info!r}")
    return info
