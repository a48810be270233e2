"""The process machinery shared by ``commands`` and ``pty``: the per-process routes of the
REST API (start, re-attach, stdin, signals, resize, kill) and the handle that reads one
process's event stream.

A handle reads its stream either in the caller's thread (a foreground ``run`` that waits) or
on a daemon thread (a background command, a PTY, a re-attached process): the reader feeds the
output callbacks as events arrive, accumulates the output and records the end. ``wait()``
joins the reader; ``disconnect()`` closes the stream without touching the process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from ._stream import EventStream, OutputBuffer, decode_data, dropped_marker
from ._transport import RawBody, Transport, sandbox_path
from .exceptions import CommandExitError, NotFoundError, SandboxError, TimeoutError

__all__ = ["CommandResult", "ProcessApi", "ProcessHandle", "Stdin"]

# The engine accepts at most 1 MiB of stdin per request.
_STDIN_CHUNK = 1024 * 1024

Stdin = Union[str, bytes, bytearray, memoryview]


@dataclass(frozen=True)
class CommandResult:
    """What a finished command printed and how it exited.

    A non-zero ``exit_code`` is a result, not an error (unless ``run(check=True)``).
    ``timed_out`` is True when the engine killed the command at its timeout (``exit_code``
    is then 124); a command ended by a signal has ``exit_code`` 128 + the signal's number and
    ``signal`` its name. ``stdout`` and ``stderr`` are the output decoded as UTF-8 (invalid
    bytes replaced); ``stdout_bytes`` and ``stderr_bytes`` are the bytes exactly as printed.
    ``dropped_bytes`` counts output the engine discarded because it was not read fast enough
    (a line ``[ai2in: N bytes of output dropped]`` marks the place in ``stdout``). ``error``
    is the engine's message when the stream failed before the command ended (``exit_code``
    is then -1).
    """

    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool = False
    error: Optional[str] = None
    signal: Optional[str] = None
    stdout_bytes: bytes = field(default=b"", repr=False)
    stderr_bytes: bytes = field(default=b"", repr=False)
    dropped_bytes: int = 0

    @property
    def ok(self) -> bool:
        """True when the command exited with code 0."""
        return self.exit_code == 0 and self.error is None


def _pid_str(pid: int) -> str:
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    return str(pid)


def _as_bytes(data: Stdin) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be str or bytes, not {type(data).__name__}")


class ProcessApi:
    """The ``/processes`` routes of one sandbox."""

    def __init__(self, sandbox_id: str, transport: Transport) -> None:
        self.sandbox_id = sandbox_id
        self.transport = transport

    def path(self, pid: Optional[int] = None, suffix: str = "") -> str:
        """``/v1/sandboxes/{id}/processes[/{pid}][suffix]``."""
        p = "/processes" if pid is None else "/processes/" + _pid_str(pid)
        return sandbox_path(self.sandbox_id, p + suffix)

    def start(self, body: Dict[str, Any]) -> Tuple[EventStream, int]:
        """Starts a process; returns its open stream and its pid (from the ``start`` event)."""
        stream = self.transport.open_stream("POST", self.path(), body=body)
        return stream, self._expect_start(stream, "starting a process")

    def attach(self, pid: int) -> EventStream:
        """Re-attaches to a process's stream; the ``start`` event is already consumed."""
        stream = self.transport.open_stream("GET", self.path(pid, "/stream"))
        self._expect_start(stream, f"attaching to process {pid}")
        return stream

    def _expect_start(self, stream: EventStream, what: str) -> int:
        try:
            for ev in stream:
                if ev["type"] == "start" and isinstance(ev.get("pid"), int):
                    return int(ev["pid"])
                if ev["type"] == "error":
                    raise SandboxError(f"{what} in {self.sandbox_id} failed: "
                                       f"{ev.get('message') or 'unknown error'}")
                raise SandboxError(f"{what} in {self.sandbox_id}: expected a start event, "
                                   f"got {str(ev)[:200]}")
            raise SandboxError(f"{what} in {self.sandbox_id}: the stream ended before the "
                               "start event")
        except BaseException:
            stream.close()
            raise

    def send_stdin(self, pid: int, data: Stdin) -> None:
        """Writes ``data`` to the process's stdin (in requests of at most 1 MiB)."""
        raw = _as_bytes(data)
        for off in range(0, max(len(raw), 1), _STDIN_CHUNK):
            self.transport.request("POST", self.path(pid, "/stdin"),
                                   raw=RawBody(raw[off:off + _STDIN_CHUNK]))

    def close_stdin(self, pid: int) -> None:
        """Closes the process's stdin: it reads end-of-file."""
        self.transport.request("DELETE", self.path(pid, "/stdin"))

    def signal(self, pid: int, sig: Union[str, int]) -> None:
        """Sends a signal (a name like ``"SIGINT"`` or a number) to the process group."""
        self.transport.request("POST", self.path(pid, "/signal"), body={"signal": sig})

    def resize(self, pid: int, cols: int, rows: int) -> None:
        """Resizes a PTY."""
        self.transport.request("POST", self.path(pid, "/resize"),
                               body={"cols": cols, "rows": rows})

    def kill(self, pid: int) -> bool:
        """SIGKILLs every process of the command; False if it was not running."""
        try:
            self.transport.request("DELETE", self.path(pid))
        except NotFoundError:
            return False
        return True


OnLine = Callable[[str], Any]
OnData = Callable[[bytes], Any]


class ProcessHandle:
    """A started (or re-attached) process and the reader of its event stream.

    Subclassed by ``CommandHandle`` and ``PtyHandle``; see the module comment.
    """

    def __init__(self, api: ProcessApi, stream: EventStream, pid: int, *,
                 on_stdout: Optional[OnLine] = None, on_stderr: Optional[OnLine] = None,
                 on_data: Optional[OnData] = None, check: bool = False) -> None:
        self._api = api
        self._stream = stream
        self._pid = pid
        self._on_stdout = on_stdout
        self._on_stderr = on_stderr
        self._on_data = on_data
        self._check = check
        # Guards the output buffers; never held while a callback runs.
        self._lock = threading.Lock()
        self._stdout = OutputBuffer(lines=on_stdout is not None)
        self._stderr = OutputBuffer(lines=on_stderr is not None)
        self._dropped = 0
        self._end: Optional[Dict[str, Any]] = None
        self._error: Optional[str] = None
        self._exc: Optional[BaseException] = None
        self._done = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- reading -----------------------------------------------------------------------------

    def _start_reader(self) -> None:
        self._thread = threading.Thread(target=self._read_in_thread,
                                        name=f"ai2in-process-{self._pid}", daemon=True)
        self._thread.start()

    def _read_in_thread(self) -> None:
        try:
            self._read()
        except BaseException as e:  # noqa: BLE001 - handed to wait()
            self._exc = e

    def _read(self) -> None:
        """Reads events until the end; raises what broke the stream or a callback raised."""
        try:
            for ev in self._stream:
                if self._on_event(ev):
                    self._stream.finish()
                    return
            if not self._stream.closed:
                raise SandboxError(f"the stream of process {self._pid} in "
                                   f"{self._api.sandbox_id} ended before the process did")
        finally:
            self._stream.close()
            try:
                with self._lock:
                    out, err = self._stdout.finish(), self._stderr.finish()
                self._call(self._on_stdout, out)
                self._call(self._on_stderr, err)
            finally:
                self._done.set()

    def _on_event(self, ev: Dict[str, Any]) -> bool:
        """Applies one event and runs the callbacks it calls for; True when it is the last."""
        t = ev["type"]
        if t == "stdout" or t == "pty":
            data = decode_data(ev)
            with self._lock:
                lines = self._stdout.feed(data)
            if t == "pty" and self._on_data is not None:
                self._on_data(data)
            self._call(self._on_stdout, lines)
        elif t == "stderr":
            data = decode_data(ev)
            with self._lock:
                lines = self._stderr.feed(data)
            self._call(self._on_stderr, lines)
        elif t == "dropped":
            n = ev.get("bytes")
            n = n if isinstance(n, int) and n > 0 else 0
            with self._lock:
                self._dropped += n
                lines = self._stdout.gap(dropped_marker(n))
            if self._on_data is not None:
                self._on_data(("\r\n" + dropped_marker(n) + "\r\n").encode())
            self._call(self._on_stdout, lines)
        elif t == "end":
            self._end = ev
            return True
        elif t == "error":
            self._error = str(ev.get("message") or "the stream failed")
            return True
        # "start" (repeated on re-attach) and unknown types: nothing to do.
        return False

    @staticmethod
    def _call(cb: Optional[OnLine], lines: List[str]) -> None:
        if cb is not None:
            for line in lines:
                cb(line)

    # -- state -------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The process id inside the sandbox (it leads its own process group)."""
        return self._pid

    @property
    def stdout(self) -> str:
        """The standard output received so far, decoded as UTF-8."""
        with self._lock:
            return self._stdout.text

    @property
    def stderr(self) -> str:
        """The standard error received so far, decoded as UTF-8."""
        with self._lock:
            return self._stderr.text

    @property
    def stdout_bytes(self) -> bytes:
        """The standard output received so far, as bytes."""
        with self._lock:
            return self._stdout.raw

    @property
    def stderr_bytes(self) -> bytes:
        """The standard error received so far, as bytes."""
        with self._lock:
            return self._stderr.raw

    @property
    def dropped_bytes(self) -> int:
        """Bytes of output the engine discarded because they were not read in time."""
        return self._dropped

    @property
    def exit_code(self) -> Optional[int]:
        """The exit code once the process has ended; None before (or if unknown)."""
        end = self._end
        return None if end is None else _int(end.get("exit_code"), -1)

    @property
    def error(self) -> Optional[str]:
        """The engine's message if the stream failed before the process ended."""
        return self._error

    # -- control -----------------------------------------------------------------------------

    def wait(self, timeout: Optional[float] = None) -> CommandResult:
        """Waits for the process to end and returns its result.

        Args:
            timeout: seconds to wait at most (None: as long as it takes).

        Raises:
            TimeoutError: ``timeout`` passed first (the process keeps running).
            CommandExitError: the command was started with ``check=True`` and exited non-zero.
            SandboxError: the stream broke, or the handle was disconnected first.
        """
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"process {self._pid} in {self._api.sandbox_id} is still "
                                   f"running after {timeout:g} s")
        elif not self._done.wait(timeout):
            raise TimeoutError(f"process {self._pid} in {self._api.sandbox_id} is still "
                               f"running after {timeout:g} s")
        return self._result()

    def _result(self) -> CommandResult:
        if self._exc is not None:
            raise self._exc
        if self._end is None and self._error is None:
            raise SandboxError(f"disconnected from process {self._pid} in "
                               f"{self._api.sandbox_id} before it ended; attach again with "
                               f"commands.connect({self._pid})")
        end = self._end or {}
        sig = end.get("signal")
        with self._lock:
            result = CommandResult(
                stdout=self._stdout.text, stderr=self._stderr.text,
                exit_code=_int(end.get("exit_code"), -1),
                timed_out=bool(end.get("timed_out", False)), error=self._error,
                signal=sig if isinstance(sig, str) else None,
                stdout_bytes=self._stdout.raw, stderr_bytes=self._stderr.raw,
                dropped_bytes=self._dropped)
        if self._check and not result.ok:
            raise CommandExitError(result)
        return result

    def kill(self) -> bool:
        """Kills the process and every process it started (SIGKILL).

        Returns:
            True if it was running, False if it had already ended.
        """
        return self._api.kill(self._pid)

    def send_signal(self, signal: Union[str, int]) -> None:
        """Sends a signal (``"SIGINT"``, ``"SIGTERM"``, ... or a number) to the process group.

        Raises:
            NotFoundError: the process is not running.
            InvalidArgumentError: unknown signal.
        """
        self._api.signal(self._pid, signal)

    def disconnect(self) -> None:
        """Stops reading the process's output without killing it (a background process runs
        on; attach again with ``connect(pid)``)."""
        self._stream.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __repr__(self) -> str:
        state = "running" if self._end is None else f"exit_code={self.exit_code}"
        return f"{type(self).__name__}(pid={self._pid}, {state})"


def _int(v: Any, default: int) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default
