"""``AsyncSandbox``: the ``Sandbox`` surface as coroutines, for asyncio programs.

Each call runs the synchronous client in a worker thread (``asyncio.to_thread``), so it
never blocks the event loop; the transport opens one connection per request, which makes
that safe.
"""

from __future__ import annotations

import asyncio
import types
from typing import Any, Dict, List, Mapping, Optional, Sequence, Type, Union

from .commands import CommandResult, Commands
from .sandbox import Sandbox

__all__ = ["AsyncSandbox", "AsyncCommands"]


class AsyncCommands:
    """The ``commands`` namespace of an AsyncSandbox."""

    def __init__(self, commands: Commands) -> None:
        self._commands = commands

    async def run(self, cmd: str, envs: Optional[Dict[str, str]] = None,
                  cwd: Optional[str] = None, user: Optional[str] = None,
                  timeout: Optional[float] = 60, check: bool = False) -> CommandResult:
        """Runs ``cmd`` in the sandbox and waits for it; see ``Commands.run``."""
        return await asyncio.to_thread(self._commands.run, cmd, envs, cwd, user, timeout, check)


class AsyncSandbox:
    """An AI2IN sandbox driven from asyncio.

    Create with ``sbx = await AsyncSandbox.create(...)`` (a constructor cannot await), or
    attach with ``await AsyncSandbox.connect(id)``; ``async with`` kills it on exit::

        async with await AsyncSandbox.create(api_key="…") as sbx:
            r = await sbx.commands.run("echo hi")
    """

    def __init__(self, sandbox: Sandbox) -> None:
        """Wraps a synchronous Sandbox; use ``AsyncSandbox.create`` or ``connect`` instead."""
        if not isinstance(sandbox, Sandbox):
            raise TypeError("use `await AsyncSandbox.create(...)` to create a sandbox")
        self._sync = sandbox
        self.commands: AsyncCommands = AsyncCommands(sandbox.commands)

    @classmethod
    async def create(cls, api_key: Optional[str] = None, timeout: Optional[int] = None,
                     template: Optional[str] = None,
                     metadata: Optional[Mapping[str, str]] = None,
                     envs: Optional[Mapping[str, str]] = None,
                     cpu_count: Optional[float] = None, memory_mb: Optional[int] = None,
                     api_url: Optional[str] = None,
                     request_timeout: Optional[float] = None) -> "AsyncSandbox":
        """Creates a sandbox; the arguments are those of ``Sandbox(...)``."""
        sbx = await asyncio.to_thread(
            Sandbox, api_key=api_key, timeout=timeout, template=template, metadata=metadata,
            envs=envs, cpu_count=cpu_count, memory_mb=memory_mb, api_url=api_url,
            request_timeout=request_timeout)
        return cls(sbx)

    @classmethod
    async def connect(cls, sandbox_id: str, api_key: Optional[str] = None,
                      api_url: Optional[str] = None,
                      request_timeout: Optional[float] = None) -> "AsyncSandbox":
        """Attaches to an existing sandbox by id; NotFoundError if there is none."""
        sbx = await asyncio.to_thread(Sandbox.connect, sandbox_id, api_key=api_key,
                                      api_url=api_url, request_timeout=request_timeout)
        return cls(sbx)

    @classmethod
    async def list(cls, api_key: Optional[str] = None,
                   state: Optional[Union[str, Sequence[str]]] = None,
                   metadata: Optional[Mapping[str, str]] = None,
                   api_url: Optional[str] = None, request_timeout: Optional[float] = None,
                   page_size: Optional[int] = None) -> List[Dict[str, Any]]:
        """Returns this team's sandboxes (running and paused by default); see Sandbox.list."""
        return await asyncio.to_thread(Sandbox.list, api_key=api_key, state=state,
                                       metadata=metadata, api_url=api_url,
                                       request_timeout=request_timeout, page_size=page_size)

    @property
    def id(self) -> str:
        """The sandbox id, ``sbx_`` + 20 characters."""
        return self._sync.id

    @property
    def sandbox_id(self) -> str:
        """The sandbox id (alias of ``id``)."""
        return self._sync.id

    async def get_info(self) -> Dict[str, Any]:
        """Returns the engine's sandbox object as a plain dict."""
        return await asyncio.to_thread(self._sync.get_info)

    async def is_running(self) -> bool:
        """True if the sandbox exists and its state is ``running``."""
        return await asyncio.to_thread(self._sync.is_running)

    async def set_timeout(self, timeout: int) -> None:
        """Sets the hard deadline to now + ``timeout`` seconds (1..86400)."""
        await asyncio.to_thread(self._sync.set_timeout, timeout)

    async def kill(self) -> bool:
        """Kills the sandbox; True if killed now, False if it was already gone."""
        return await asyncio.to_thread(self._sync.kill)

    async def __aenter__(self) -> "AsyncSandbox":
        """Returns the sandbox; it is killed when the ``async with`` block ends."""
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException],
                        tb: Optional[types.TracebackType]) -> None:
        """Kills the sandbox; a failure of this kill never hides the block's exception."""
        if exc_type is None:
            await self.kill()
            return
        try:
            await self.kill()
        except Exception:  # never hide the body's exception behind a cleanup failure
            pass

    def __repr__(self) -> str:
        return f"AsyncSandbox(id={self.id!r}, api_url={self._sync.api_url!r})"
