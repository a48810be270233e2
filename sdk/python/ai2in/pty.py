"""Interactive terminals in a sandbox: ``t = sbx.pty.create(cols=80, rows=24, on_data=...)``.

A PTY is a process started in a new pseudo-terminal (an interactive login ``bash`` unless a
command is given). Its output arrives as raw terminal bytes on ``on_data``; ``send_input``
types into it and ``resize`` changes its window size.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ._process import CommandResult, OnData, ProcessApi, ProcessHandle, Stdin
from ._transport import Transport
from .commands import DEFAULT_TIMEOUT, Timeout, start_body

__all__ = ["Pty", "PtyHandle"]


class PtyHandle(ProcessHandle):
    """A running pseudo-terminal.

    A daemon thread reads the terminal's output and passes each chunk, as bytes, to
    ``on_data``; the output is also kept (``stdout_bytes``, and ``wait()``'s result). If the
    engine had to drop output because it was not read in time, ``on_data`` gets a line
    ``[ai2in: N bytes of output dropped]`` in its place and ``dropped_bytes`` counts it.
    """

    def send_input(self, data: Stdin) -> None:
        """Types ``data`` (bytes, or str sent as UTF-8) into the terminal.

        Raises:
            NotFoundError: the terminal's process has ended.
        """
        self._api.send_stdin(self._pid, data)

    def resize(self, cols: int, rows: int) -> None:
        """Sets the terminal's size (1..1000 each); the program gets SIGWINCH.

        Raises:
            InvalidArgumentError: a size out of range.
            NotFoundError: the terminal's process has ended.
        """
        self._api.resize(self._pid, cols, rows)

    def wait(self, timeout: Optional[float] = None) -> CommandResult:
        """Waits for the terminal's process to end; returns its result (the terminal's output
        is ``stdout``).

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
            SandboxError: the stream broke, or the handle was disconnected first.
        """
        return super().wait(timeout)


class Pty:
    """The ``pty`` namespace of a sandbox."""

    def __init__(self, sandbox_id: str, transport: Transport) -> None:
        self._api = ProcessApi(sandbox_id, transport)

    def create(self, cols: int = 80, rows: int = 24, on_data: Optional[OnData] = None, *,
               cmd: Optional[str] = None, envs: Optional[Dict[str, str]] = None,
               cwd: Optional[str] = None, user: Optional[str] = None,
               timeout: Timeout = DEFAULT_TIMEOUT, background: bool = False,
               tag: Optional[str] = None) -> PtyHandle:
        """Starts a terminal and returns its handle once the process has started.

        Args:
            cols: width in characters (1..1000).
            rows: height in lines (1..1000).
            on_data: called with each chunk of terminal output (bytes), on the handle's
                reader thread.
            cmd: a command to run in the terminal with bash (login environment); None (the default) runs
                an interactive login shell (``bash -il``). ``TERM`` is ``xterm-256color``.
            envs: extra environment variables.
            cwd: working directory (default ``/home/sandbox``).
            user: ``"root"`` (the default) or ``"sandbox"``.
            timeout: seconds before the engine kills it; None or left out: never.
            background: keep the terminal running when this handle disconnects (or this
                program exits); by default losing the connection kills it.
            tag: a label shown in ``commands.list()``.

        Raises:
            InvalidArgumentError: a size out of range, unknown user, missing ``cwd``.
            ConflictError: the sandbox is not running.
        """
        body: Dict[str, Any] = {"pty": {"cols": cols, "rows": rows}}
        if cmd is not None:
            body["cmd"] = cmd
        start_body(body, envs, cwd, user, timeout, background, tag)
        stream, pid = self._api.start(body)
        handle = PtyHandle(self._api, stream, pid, on_data=on_data)
        handle._start_reader()
        return handle

    def connect(self, pid: int, on_data: Optional[OnData] = None) -> PtyHandle:
        """Attaches to a running terminal (its held output is replayed first).

        Raises:
            NotFoundError: no such process.
        """
        stream = self._api.attach(pid)
        handle = PtyHandle(self._api, stream, pid, on_data=on_data)
        handle._start_reader()
        return handle

    def send_input(self, pid: int, data: Stdin) -> None:
        """Types ``data`` into terminal ``pid``."""
        self._api.send_stdin(pid, data)

    def resize(self, pid: int, cols: int, rows: int) -> None:
        """Resizes terminal ``pid``.

        Raises:
            ConflictError: ``pid`` is not a terminal.
        """
        self._api.resize(pid, cols, rows)

    def kill(self, pid: int) -> bool:
        """Kills terminal ``pid``; False if it was not running."""
        return self._api.kill(pid)
