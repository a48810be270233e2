"""``AsyncSandbox``: the ``Sandbox`` surface as coroutines, for asyncio programs.

Each call runs the synchronous client in a worker thread (``asyncio.to_thread``), so it
never blocks the event loop; the transport opens one connection per request, which makes
that safe. ``run_code`` reads its stream on a worker thread too but runs its callbacks in the
event loop, so they may be coroutine functions.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import types
from typing import (Any, Callable, Dict, List, Literal, Mapping, Optional, Sequence, Type,
                    Union, overload)

from ._process import OnData, OnLine, ProcessHandle, Stdin
from .code import (Callbacks, Context, ContextRef, Execution, ExecutionBuilder, ExecutionError,
                   OutputHandler, OutputMessage, Result)
from .commands import (DEFAULT_TIMEOUT, CommandHandle, CommandResult, Commands, ProcessInfo,
                       Timeout)
from .files import EntryInfo, Files, FileStream, FilesystemEvent, WatchHandle, WriteData
from .pty import Pty, PtyHandle
from .sandbox import Sandbox

__all__ = ["AsyncSandbox", "AsyncCommands", "AsyncCommandHandle", "AsyncPty", "AsyncPtyHandle",
           "AsyncFiles", "AsyncFileStream", "AsyncWatchHandle"]


class _AsyncProcessHandle:
    """What async command and PTY handles share; see ``ProcessHandle``."""

    def __init__(self, handle: ProcessHandle) -> None:
        self._h = handle

    @property
    def pid(self) -> int:
        """The process id inside the sandbox."""
        return self._h.pid

    @property
    def stdout(self) -> str:
        """The output received so far, decoded as UTF-8."""
        return self._h.stdout

    @property
    def stderr(self) -> str:
        """The standard error received so far, decoded as UTF-8."""
        return self._h.stderr

    @property
    def stdout_bytes(self) -> bytes:
        """The output received so far, as bytes."""
        return self._h.stdout_bytes

    @property
    def stderr_bytes(self) -> bytes:
        """The standard error received so far, as bytes."""
        return self._h.stderr_bytes

    @property
    def dropped_bytes(self) -> int:
        """Bytes of output the engine discarded because they were not read in time."""
        return self._h.dropped_bytes

    @property
    def exit_code(self) -> Optional[int]:
        """The exit code once the process has ended; None before."""
        return self._h.exit_code

    @property
    def error(self) -> Optional[str]:
        """The engine's message if the stream failed before the process ended."""
        return self._h.error

    async def wait(self, timeout: Optional[float] = None) -> CommandResult:
        """Waits for the process to end; see ``CommandHandle.wait``."""
        return await asyncio.to_thread(self._h.wait, timeout)

    async def kill(self) -> bool:
        """Kills the process; False if it had already ended."""
        return await asyncio.to_thread(self._h.kill)

    async def send_signal(self, signal: Union[str, int]) -> None:
        """Sends a signal to the process group."""
        await asyncio.to_thread(self._h.send_signal, signal)

    async def disconnect(self) -> None:
        """Stops reading the output without killing the process."""
        await asyncio.to_thread(self._h.disconnect)

    def __repr__(self) -> str:
        return "Async" + repr(self._h)


class AsyncCommandHandle(_AsyncProcessHandle):
    """A running command of an AsyncSandbox; see ``CommandHandle``. Callbacks run on the
    handle's reader thread, not in the event loop."""

    def __init__(self, handle: CommandHandle) -> None:
        super().__init__(handle)
        self._cmd = handle

    async def send_stdin(self, data: Stdin) -> None:
        """Writes ``data`` to the command's stdin."""
        await asyncio.to_thread(self._cmd.send_stdin, data)

    async def close_stdin(self) -> None:
        """Closes the command's stdin (it reads end-of-file)."""
        await asyncio.to_thread(self._cmd.close_stdin)


class AsyncCommands:
    """The ``commands`` namespace of an AsyncSandbox; see ``Commands``."""

    def __init__(self, commands: Commands) -> None:
        self._commands = commands

    @overload
    async def run(self, cmd: str, envs: Optional[Dict[str, str]] = None,
                  cwd: Optional[str] = None, user: Optional[str] = None,
                  timeout: Timeout = DEFAULT_TIMEOUT, check: bool = False, *,
                  background: Literal[False] = False, stdin: bool = False,
                  on_stdout: Optional[OnLine] = None, on_stderr: Optional[OnLine] = None,
                  tag: Optional[str] = None) -> CommandResult: ...

    @overload
    async def run(self, cmd: str, envs: Optional[Dict[str, str]] = None,
                  cwd: Optional[str] = None, user: Optional[str] = None,
                  timeout: Timeout = DEFAULT_TIMEOUT, check: bool = False, *,
                  background: Literal[True], stdin: bool = False,
                  on_stdout: Optional[OnLine] = None, on_stderr: Optional[OnLine] = None,
                  tag: Optional[str] = None) -> AsyncCommandHandle: ...

    async def run(self, cmd: str, envs: Optional[Dict[str, str]] = None,
                  cwd: Optional[str] = None, user: Optional[str] = None,
                  timeout: Timeout = DEFAULT_TIMEOUT, check: bool = False, *,
                  background: bool = False, stdin: bool = False,
                  on_stdout: Optional[OnLine] = None, on_stderr: Optional[OnLine] = None,
                  tag: Optional[str] = None) -> Union[CommandResult, AsyncCommandHandle]:
        """Runs ``cmd`` in the sandbox; see ``Commands.run``. Callbacks run in a worker
        thread."""
        def go() -> Union[CommandResult, CommandHandle]:
            return self._commands.run(cmd, envs, cwd, user, timeout, check,
                                      background=background, stdin=stdin,
                                      on_stdout=on_stdout, on_stderr=on_stderr, tag=tag)
        r = await asyncio.to_thread(go)
        return AsyncCommandHandle(r) if isinstance(r, CommandHandle) else r

    async def connect(self, pid: int, on_stdout: Optional[OnLine] = None,
                      on_stderr: Optional[OnLine] = None) -> AsyncCommandHandle:
        """Attaches to a running command; see ``Commands.connect``."""
        h = await asyncio.to_thread(self._commands.connect, pid, on_stdout, on_stderr)
        return AsyncCommandHandle(h)

    async def list(self) -> List[ProcessInfo]:
        """Returns the running processes started through the API."""
        return await asyncio.to_thread(self._commands.list)

    async def kill(self, pid: int) -> bool:
        """Kills a process; False if it was not running."""
        return await asyncio.to_thread(self._commands.kill, pid)

    async def kill_all(self) -> int:
        """Ends every process in the sandbox but its agent; see ``Commands.kill_all``."""
        return await asyncio.to_thread(self._commands.kill_all)

    async def send_stdin(self, pid: int, data: Stdin) -> None:
        """Writes ``data`` to the stdin of process ``pid``."""
        await asyncio.to_thread(self._commands.send_stdin, pid, data)

    async def close_stdin(self, pid: int) -> None:
        """Closes the stdin of process ``pid``."""
        await asyncio.to_thread(self._commands.close_stdin, pid)

    async def send_signal(self, pid: int, signal: Union[str, int]) -> None:
        """Sends a signal to the process group of ``pid``."""
        await asyncio.to_thread(self._commands.send_signal, pid, signal)


class AsyncPtyHandle(_AsyncProcessHandle):
    """A running terminal of an AsyncSandbox; see ``PtyHandle``. ``on_data`` runs on the
    handle's reader thread."""

    def __init__(self, handle: PtyHandle) -> None:
        super().__init__(handle)
        self._pty = handle

    async def send_input(self, data: Stdin) -> None:
        """Types ``data`` into the terminal."""
        await asyncio.to_thread(self._pty.send_input, data)

    async def resize(self, cols: int, rows: int) -> None:
        """Sets the terminal's size."""
        await asyncio.to_thread(self._pty.resize, cols, rows)


class AsyncPty:
    """The ``pty`` namespace of an AsyncSandbox; see ``Pty``."""

    def __init__(self, pty: Pty) -> None:
        self._pty = pty

    async def create(self, cols: int = 80, rows: int = 24, on_data: Optional[OnData] = None,
                     *, cmd: Optional[str] = None, envs: Optional[Dict[str, str]] = None,
                     cwd: Optional[str] = None, user: Optional[str] = None,
                     timeout: Timeout = DEFAULT_TIMEOUT, background: bool = False,
                     tag: Optional[str] = None) -> AsyncPtyHandle:
        """Starts a terminal; see ``Pty.create``. ``on_data`` runs on the handle's thread."""
        h = await asyncio.to_thread(self._pty.create, cols, rows, on_data, cmd=cmd, envs=envs,
                                    cwd=cwd, user=user, timeout=timeout,
                                    background=background, tag=tag)
        return AsyncPtyHandle(h)

    async def connect(self, pid: int, on_data: Optional[OnData] = None) -> AsyncPtyHandle:
        """Attaches to a running terminal."""
        return AsyncPtyHandle(await asyncio.to_thread(self._pty.connect, pid, on_data))

    async def send_input(self, pid: int, data: Stdin) -> None:
        """Types ``data`` into terminal ``pid``."""
        await asyncio.to_thread(self._pty.send_input, pid, data)

    async def resize(self, pid: int, cols: int, rows: int) -> None:
        """Resizes terminal ``pid``."""
        await asyncio.to_thread(self._pty.resize, pid, cols, rows)

    async def kill(self, pid: int) -> bool:
        """Kills terminal ``pid``; False if it was not running."""
        return await asyncio.to_thread(self._pty.kill, pid)


class AsyncFileStream:
    """The chunks of a file being downloaded: ``async for chunk in stream``."""

    def __init__(self, stream: FileStream) -> None:
        self._s = stream

    def __aiter__(self) -> "AsyncFileStream":
        return self

    async def __anext__(self) -> bytes:
        chunk = await asyncio.to_thread(self._s.read_chunk)
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def close(self) -> None:
        """Stops the download."""
        await asyncio.to_thread(self._s.close)

    async def __aenter__(self) -> "AsyncFileStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class AsyncWatchHandle:
    """A live directory watch of an AsyncSandbox; see ``WatchHandle``."""

    def __init__(self, handle: WatchHandle) -> None:
        self._h = handle

    async def get_new_events(self) -> List[FilesystemEvent]:
        """Returns the events that arrived since the last call."""
        return self._h.get_new_events()

    async def stop(self) -> None:
        """Ends the watch."""
        await asyncio.to_thread(self._h.stop)


class AsyncFiles:
    """The ``files`` namespace of an AsyncSandbox; see ``Files``."""

    def __init__(self, files: Files) -> None:
        self._files = files

    @overload
    async def read(self, path: str, format: Literal["text"] = "text", user: Optional[str] = None) -> str: ...

    @overload
    async def read(self, path: str, format: Literal["bytes"], user: Optional[str] = None) -> bytes: ...

    @overload
    async def read(self, path: str, format: Literal["stream"], user: Optional[str] = None) -> AsyncFileStream: ...

    async def read(self, path: str, format: str = "text", user: Optional[str] = None
                   ) -> Union[str, bytes, AsyncFileStream]:
        """Reads a file; ``format="stream"`` gives an async iterator of chunks."""
        files = self._files
        if format == "stream":
            return AsyncFileStream(await asyncio.to_thread(lambda: files.read(path, "stream", user)))
        if format == "bytes":
            return await asyncio.to_thread(lambda: files.read(path, "bytes", user))
        return await asyncio.to_thread(lambda: files.read(path, format, user))  # type: ignore

    async def write(self, path: str, data: WriteData, user: Optional[str] = None) -> EntryInfo:
        """Writes a file; see ``Files.write`` (an iterator is consumed in a worker thread)."""
        return await asyncio.to_thread(self._files.write, path, data, user)

    async def write_files(self, files: Sequence[Any], user: Optional[str] = None
                          ) -> List[EntryInfo]:
        """Writes several files; see ``Files.write_files``."""
        return await asyncio.to_thread(self._files.write_files, files, user)

    async def get_info(self, path: str, user: Optional[str] = None) -> EntryInfo:
        """Describes an entry; NotFoundError if there is none."""
        return await asyncio.to_thread(self._files.get_info, path, user)

    async def exists(self, path: str, user: Optional[str] = None) -> bool:
        """True if something is at ``path``."""
        return await asyncio.to_thread(self._files.exists, path, user)

    async def list(self, path: str, depth: int = 1, user: Optional[str] = None) -> List[EntryInfo]:
        """Lists a directory; see ``Files.list``."""
        return await asyncio.to_thread(self._files.list, path, depth, user)

    async def make_dir(self, path: str, user: Optional[str] = None) -> bool:
        """Creates a directory; False if it already was one."""
        return await asyncio.to_thread(self._files.make_dir, path, user)

    async def rename(self, old_path: str, new_path: str, user: Optional[str] = None
                     ) -> EntryInfo:
        """Moves an entry; see ``Files.rename``."""
        return await asyncio.to_thread(self._files.rename, old_path, new_path, user)

    async def remove(self, path: str, user: Optional[str] = None) -> None:
        """Removes a file or a directory tree."""
        await asyncio.to_thread(self._files.remove, path, user)

    async def watch_dir(self, path: str,
                        on_event: Optional[Callable[[FilesystemEvent], Any]] = None,
                        recursive: bool = False, user: Optional[str] = None) -> AsyncWatchHandle:
        """Watches a directory; returns once the watch is in place. ``on_event`` runs on the
        watch's thread."""
        h = await asyncio.to_thread(self._files.watch_dir, path, on_event, recursive, user)
        return AsyncWatchHandle(h)


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
        self.pty: AsyncPty = AsyncPty(sandbox.pty)
        self.files: AsyncFiles = AsyncFiles(sandbox.files)

    @classmethod
    async def create(cls, api_key: Optional[str] = None, timeout: Optional[int] = None,
                     template: Optional[str] = None,
                     metadata: Optional[Mapping[str, str]] = None,
                     envs: Optional[Mapping[str, str]] = None,
                     cpu_count: Optional[float] = None, memory_mb: Optional[int] = None,
                     api_url: Optional[str] = None,
                     request_timeout: Optional[float] = None, secure: Optional[bool] = None,
                     domain: Optional[str] = None,
                     disk_mb: Optional[int] = None,
                     allow_internet_access: Optional[bool] = None,
                     network: Optional[Mapping[str, Sequence[str]]] = None,
                     runtime: Optional[str] = None) -> "AsyncSandbox":
        """Creates a sandbox; the arguments are those of ``Sandbox(...)``."""
        sbx = await asyncio.to_thread(
            Sandbox, api_key=api_key, timeout=timeout, template=template, metadata=metadata,
            envs=envs, cpu_count=cpu_count, memory_mb=memory_mb, api_url=api_url,
            request_timeout=request_timeout, secure=secure, domain=domain, disk_mb=disk_mb,
            allow_internet_access=allow_internet_access, network=network, runtime=runtime)
        return cls(sbx)

    @classmethod
    async def connect(cls, sandbox_id: str, api_key: Optional[str] = None,
                      api_url: Optional[str] = None,
                      request_timeout: Optional[float] = None,
                      domain: Optional[str] = None) -> "AsyncSandbox":
        """Attaches to an existing sandbox by id; NotFoundError if there is none."""
        sbx = await asyncio.to_thread(Sandbox.connect, sandbox_id, api_key=api_key,
                                      api_url=api_url, request_timeout=request_timeout,
                                      domain=domain)
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

    @property
    def traffic_access_token(self) -> Optional[str]:
        """The token a secure sandbox's preview requests must carry (see Sandbox)."""
        return self._sync.traffic_access_token

    def get_host(self, port: int) -> str:
        """The preview host of ``port``: ``"{port}-{id}.{domain}"``, the id's ``_`` as ``-``
        (see Sandbox.get_host)."""
        return self._sync.get_host(port)

    def get_url(self, port: int) -> str:
        """The preview URL of ``port``: ``"{scheme}://{host}/"`` (see Sandbox.get_url)."""
        return self._sync.get_url(port)

    async def get_info(self) -> Dict[str, Any]:
        """Returns the engine's sandbox object as a plain dict (``end_at``, ``end_reason``, …;
        see ``Sandbox.get_info``)."""
        return await asyncio.to_thread(self._sync.get_info)

    async def is_running(self) -> bool:
        """True if the sandbox exists and its state is ``running``."""
        return await asyncio.to_thread(self._sync.is_running)

    async def set_timeout(self, timeout: int) -> None:
        """Sets the hard deadline to now + ``timeout`` seconds (more than 86400 is capped to
        86400); see ``Sandbox.set_timeout``."""
        await asyncio.to_thread(self._sync.set_timeout, timeout)

    async def pause(self, keep_memory: bool = False) -> Dict[str, Any]:
        """Pauses the sandbox, keeping its whole filesystem (or, with ``keep_memory``, its
        frozen processes too); returns ``{"status": "paused"}``. See ``Sandbox.pause``."""
        return await asyncio.to_thread(self._sync.pause, keep_memory)

    async def resume(self, timeout: Optional[int] = None) -> Dict[str, Any]:
        """Resumes a paused sandbox (fresh processes, same files); returns
        ``{"status": "running"}``. See ``Sandbox.resume``."""
        return await asyncio.to_thread(self._sync.resume, timeout)

    async def kill(self) -> bool:
        """Kills the sandbox; True if killed now, False if it was already gone."""
        return await asyncio.to_thread(self._sync.kill)

    # -- running code ------------------------------------------------------------------------

    async def run_code(self, code: str, language: Optional[str] = None,
                       context: Optional[ContextRef] = None,
                       on_stdout: Optional[OutputHandler[OutputMessage]] = None,
                       on_stderr: Optional[OutputHandler[OutputMessage]] = None,
                       on_result: Optional[OutputHandler[Result]] = None,
                       on_error: Optional[OutputHandler[ExecutionError]] = None,
                       envs: Optional[Mapping[str, str]] = None,
                       timeout: Optional[float] = None) -> Execution:
        """Runs code in a context; see ``Sandbox.run_code``.

        The stream is read on a worker thread; the callbacks (plain functions or coroutine
        functions) run in the event loop, in order, all before this returns. Cancelling the
        call interrupts the execution.
        """
        api = self._sync._code
        body = await asyncio.to_thread(api.execute_body, code, language, context, envs,
                                       timeout)
        stream = await asyncio.to_thread(api.open, body)
        cbs = Callbacks(on_stdout, on_stderr, on_result, on_error)
        builder = ExecutionBuilder(api.sandbox_id, timeout)
        loop = asyncio.get_running_loop()
        queue: "asyncio.Queue[Any]" = asyncio.Queue()
        done = object()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

        def pump() -> None:
            try:
                for ev in stream:
                    put(ev)
            except BaseException as e:  # noqa: BLE001 - handed to the coroutine
                put(e)
            finally:
                put(done)

        threading.Thread(target=pump, name=f"ai2in-execute-{api.sandbox_id}",
                         daemon=True).start()
        try:
            while not builder.done:
                item = await queue.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                for kind, arg in builder.apply(item):
                    cb = cbs.get(kind)
                    if cb is not None:
                        r = cb(arg)
                        if inspect.isawaitable(r):
                            await r
        finally:
            # Ends the reader thread (close() never blocks); a stream closed before the end
            # interrupts the execution.
            stream.close()
        return builder.finish()

    async def create_code_context(self, cwd: Optional[str] = None,
                                  language: Optional[str] = None,
                                  user: Optional[str] = None) -> Context:
        """Starts a new context; see ``Sandbox.create_code_context``."""
        return await asyncio.to_thread(self._sync.create_code_context, cwd, language, user)

    async def list_code_contexts(self) -> List[Context]:
        """Returns the sandbox's contexts; see ``Sandbox.list_code_contexts``."""
        return await asyncio.to_thread(self._sync.list_code_contexts)

    async def restart_code_context(self, context: ContextRef) -> Context:
        """Gives the context a fresh interpreter; see ``Sandbox.restart_code_context``."""
        return await asyncio.to_thread(self._sync.restart_code_context, context)

    async def remove_code_context(self, context: ContextRef) -> None:
        """Removes the context; see ``Sandbox.remove_code_context``."""
        await asyncio.to_thread(self._sync.remove_code_context, context)

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
