"""Running shell commands in a sandbox: ``sbx.commands.run("echo hi")``.

A command is a process started with bash under the login environment whose life the engine streams as it
happens (``POST /v1/sandboxes/{id}/processes``): ``run`` either reads that stream until the end
and returns a ``CommandResult``, or (``background=True``) returns a ``CommandHandle`` at once
whose daemon thread reads it. Output callbacks get one line at a time, as it is printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Literal, Optional, Union, overload

from ._process import CommandResult, OnLine, ProcessApi, ProcessHandle, Stdin
from ._transport import Transport
from .exceptions import SandboxError

__all__ = ["CommandResult", "CommandHandle", "Commands", "ProcessInfo", "DEFAULT_TIMEOUT"]

class _EngineDefault:
    """The type of ``DEFAULT_TIMEOUT``."""

    def __repr__(self) -> str:
        return "DEFAULT_TIMEOUT"


# ``run(timeout=...)`` left out: the engine's default, 60 s for a command that is waited for
# and none for a background one.
DEFAULT_TIMEOUT: Any = _EngineDefault()

Timeout = Union[float, None, _EngineDefault]


@dataclass(frozen=True)
class ProcessInfo:
    """A running process started through the API (an entry of ``commands.list()``)."""

    pid: int
    cmd: Optional[str]
    tag: Optional[str]
    cwd: Optional[str]
    user: Optional[str]
    pty: bool
    stdin: bool
    background: bool
    started_at: Optional[str]

    @classmethod
    def from_json(cls, doc: Dict[str, Any]) -> "ProcessInfo":
        """Builds it from the engine's JSON object."""
        def s(k: str) -> Optional[str]:
            v = doc.get(k)
            return v if isinstance(v, str) else None
        return cls(pid=int(doc.get("pid", -1)), cmd=s("cmd"), tag=s("tag"), cwd=s("cwd"),
                   user=s("user"), pty=bool(doc.get("pty")), stdin=bool(doc.get("stdin")),
                   background=bool(doc.get("background")), started_at=s("started_at"))


class CommandHandle(ProcessHandle):
    """A running command: returned by ``run(..., background=True)`` and ``connect(pid)``.

    A daemon thread reads the command's output as it arrives (calling ``on_stdout`` /
    ``on_stderr`` per line); ``stdout``, ``stderr`` and friends show what arrived so far.
    ``wait()`` returns the ``CommandResult``; ``kill()`` ends the command; ``disconnect()`` stops
    reading and leaves the command running.
    """

    def send_stdin(self, data: Stdin) -> None:
        """Writes ``data`` (str as UTF-8, or bytes) to the command's stdin.

        Raises:
            ConflictError: the command was started without ``stdin=True``, or its stdin was
                closed.
            NotFoundError: the command is not running.
        """
        self._api.send_stdin(self._pid, data)

    def close_stdin(self) -> None:
        """Closes the command's stdin, so that it reads end-of-file.

        Raises:
            ConflictError: the command has no stdin pipe, or it is already closed.
            NotFoundError: the command is not running.
        """
        self._api.close_stdin(self._pid)


class Commands:
    """The ``commands`` namespace of a sandbox."""

    def __init__(self, sandbox_id: str, transport: Transport) -> None:
        self._api = ProcessApi(sandbox_id, transport)

    @overload
    def run(self, cmd: str, envs: Optional[Dict[str, str]] = None, cwd: Optional[str] = None,
            user: Optional[str] = None, timeout: Timeout = DEFAULT_TIMEOUT,
            check: bool = False, *, background: Literal[False] = False, stdin: bool = False,
            on_stdout: Optional[OnLine] = None, on_stderr: Optional[OnLine] = None,
            tag: Optional[str] = None) -> CommandResult: ...

    @overload
    def run(self, cmd: str, envs: Optional[Dict[str, str]] = None, cwd: Optional[str] = None,
            user: Optional[str] = None, timeout: Timeout = DEFAULT_TIMEOUT,
            check: bool = False, *, background: Literal[True], stdin: bool = False,
            on_stdout: Optional[OnLine] = None, on_stderr: Optional[OnLine] = None,
            tag: Optional[str] = None) -> CommandHandle: ...

    @overload
    def run(self, cmd: str, envs: Optional[Dict[str, str]] = None, cwd: Optional[str] = None,
            user: Optional[str] = None, timeout: Timeout = DEFAULT_TIMEOUT,
            check: bool = False, *, background: bool, stdin: bool = False,
            on_stdout: Optional[OnLine] = None, on_stderr: Optional[OnLine] = None,
            tag: Optional[str] = None) -> Union[CommandResult, CommandHandle]: ...

    def run(self, cmd: str, envs: Optional[Dict[str, str]] = None, cwd: Optional[str] = None,
            user: Optional[str] = None, timeout: Timeout = DEFAULT_TIMEOUT,
            check: bool = False, *, background: bool = False, stdin: bool = False,
            on_stdout: Optional[OnLine] = None, on_stderr: Optional[OnLine] = None,
            tag: Optional[str] = None) -> Union[CommandResult, CommandHandle]:
        """Runs ``cmd`` in bash (with the user's login environment) in the sandbox.

        Without ``background`` it waits for the command and returns its result; callbacks run
        in the calling thread, before ``run`` returns. With ``background=True`` it returns a
        ``CommandHandle`` as soon as the command has started; callbacks then run on the
        handle's reader thread.

        Args:
            cmd: shell text.
            envs: extra environment variables for this command only (on top of the
                sandbox's).
            cwd: working directory (default ``/home/sandbox``; relative paths resolve
                against it).
            user: ``"root"`` (the default) or ``"sandbox"``, or any user of the sandbox's
                ``/etc/passwd``.
            timeout: seconds (a float is fine) after which the engine kills the command and
                every process it started (SIGTERM, SIGKILL 2 s later); the result then has
                ``exit_code`` 124 and ``timed_out`` True. None: no timeout. Left out: 60 s
                for a command that is waited for, none for a background one.
            check: raise CommandExitError instead of returning (or from ``wait()``) when the
                exit code is not 0.
            background: return a handle at once instead of waiting.
            stdin: give the command a stdin pipe, fed by ``send_stdin`` (otherwise stdin is
                ``/dev/null``).
            on_stdout: called with each line of standard output (without its newline) as it
                is printed; a last line without a newline is passed at the end.
            on_stderr: the same for standard error.
            tag: a label shown in ``commands.list()``.

        Returns:
            CommandResult (waited for) or CommandHandle (``background=True``).

        Raises:
            CommandExitError: ``check`` is True and the command exited non-zero.
            InvalidArgumentError: bad arguments, unknown user, missing ``cwd`` (with the
                engine's message).
            NotFoundError: the sandbox is gone.
            ConflictError: the sandbox is not running.
            UnavailableError: the sandbox cannot start it now (its pids limit is reached, it is
                out of memory), with the reason.
            SandboxError: any other failure reported by the engine.
        """
        body = start_body({"cmd": cmd}, envs, cwd, user, timeout, background, tag)
        if stdin:
            body["stdin"] = True
        stream, pid = self._api.start(body)
        handle = CommandHandle(self._api, stream, pid, on_stdout=on_stdout,
                               on_stderr=on_stderr, check=check)
        if background:
            handle._start_reader()
            return handle
        try:
            handle._read()
        finally:
            stream.close()  # an interrupted foreground command is killed by the engine
        return handle._result()

    def connect(self, pid: int, on_stdout: Optional[OnLine] = None,
                on_stderr: Optional[OnLine] = None) -> CommandHandle:
        """Attaches to a running (or just ended) command, e.g. from another process.

        The handle first replays the output the engine still holds (the last 1 MiB), then
        follows the live output. Closing it (``disconnect()``) never kills the command.

        Raises:
            NotFoundError: no such process (or it ended more than 60 s ago).
        """
        stream = self._api.attach(pid)
        handle = CommandHandle(self._api, stream, pid, on_stdout=on_stdout,
                               on_stderr=on_stderr)
        handle._start_reader()
        return handle

    def list(self) -> List[ProcessInfo]:
        """Returns the running processes started through the API (commands and PTYs)."""
        doc = self._api.transport.request("GET", self._api.path())
        if not isinstance(doc, dict) or not isinstance(doc.get("processes"), list):
            raise SandboxError(f"unexpected answer to a process list in "
                               f"{self._api.sandbox_id}: {str(doc)[:200]}")
        return [ProcessInfo.from_json(p) for p in doc["processes"] if isinstance(p, dict)]

    def kill(self, pid: int) -> bool:
        """Kills a command: SIGKILL to every process it started, including those that left its
        process group or session (``setsid``, a daemon's double fork).

        Returns:
            True if it was running, False if there is no such running process.
        """
        return self._api.kill(pid)

    def kill_all(self) -> int:
        """Ends every process in the sandbox but its agent: commands (background ones and
        whatever they started, daemons included), terminals, a runaway fork bomb, and the
        interpreters of code contexts (each starts afresh on its next ``run_code``: its
        variables and imports are gone). Works while the sandbox's pids limit is reached, when
        nothing new can start.

        Returns:
            How many processes were killed.
        """
        doc = self._api.transport.request("POST", self._api.path(suffix="/kill_all"))
        killed = doc.get("killed") if isinstance(doc, dict) else None
        if not isinstance(killed, int) or isinstance(killed, bool):
            raise SandboxError(f"unexpected answer to kill_all in {self._api.sandbox_id}: "
                               f"{str(doc)[:200]}")
        return killed

    def send_stdin(self, pid: int, data: Stdin) -> None:
        """Writes ``data`` (str as UTF-8, or bytes) to the stdin of process ``pid``.

        Raises:
            NotFoundError: no such running process.
            ConflictError: it was started without ``stdin=True`` or its stdin was closed.
        """
        self._api.send_stdin(pid, data)

    def close_stdin(self, pid: int) -> None:
        """Closes the stdin of process ``pid`` (it reads end-of-file).

        Raises:
            NotFoundError: no such running process.
            ConflictError: it has no stdin pipe, or it is already closed.
        """
        self._api.close_stdin(pid)

    def send_signal(self, pid: int, signal: Union[str, int]) -> None:
        """Sends a signal (``"SIGINT"``, ``"SIGTERM"``, ... or a number 1..64) to the process
        group of ``pid``.

        Raises:
            NotFoundError: no such running process.
            InvalidArgumentError: unknown signal.
        """
        self._api.signal(pid, signal)


def start_body(body: Dict[str, Any], envs: Optional[Dict[str, str]], cwd: Optional[str],
               user: Optional[str], timeout: Timeout, background: bool,
               tag: Optional[str]) -> Dict[str, Any]:
    """Adds the options every process start shares (commands and PTYs) to ``body``, leaving
    out what the engine should default; returns ``body``."""
    if envs is not None:
        body["envs"] = dict(envs)
    if cwd is not None:
        body["cwd"] = cwd
    if user is not None:
        body["user"] = user
    if not isinstance(timeout, _EngineDefault):
        body["timeout_ms"] = timeout_ms(timeout)
    if background:
        body["background"] = True
    if tag is not None:
        body["tag"] = tag
    return body


def timeout_ms(timeout: Optional[float]) -> int:
    """Seconds (None or 0: no timeout) → the engine's ``timeout_ms``."""
    if timeout is None:
        return 0
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not "
                        f"{type(timeout).__name__}")
    ms = int(round(float(timeout) * 1000))
    return 1 if ms == 0 and timeout > 0 else ms
