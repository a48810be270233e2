"""Running shell commands in a sandbox: ``sbx.commands.run("echo hi")``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from ._transport import Transport, sandbox_path
from .exceptions import CommandExitError, SandboxError

# Extra seconds the HTTP request may take beyond the command's own timeout.
_REQUEST_SLACK = 30.0
_SERVER_DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class CommandResult:
    """What a finished command printed and how it exited.

    A non-zero ``exit_code`` is a result, not an error (unless ``run(check=True)``).
    ``timed_out`` is True when the engine killed the command at its timeout
    (``exit_code`` is then 124).
    """

    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """True when the command exited with code 0."""
        return self.exit_code == 0


class Commands:
    """The ``commands`` namespace of a sandbox."""

    def __init__(self, sandbox_id: str, transport: Transport,
                 on_result: Optional[Callable[[], None]] = None) -> None:
        self._sandbox_id = sandbox_id
        self._transport = transport
        self._on_result = on_result

    def run(self, cmd: str, envs: Optional[Dict[str, str]] = None, cwd: Optional[str] = None,
            user: Optional[str] = None, timeout: Optional[float] = 60,
            check: bool = False) -> CommandResult:
        """Runs ``cmd`` with ``/bin/bash -lc`` in the sandbox and waits for it to finish.

        Args:
            cmd: shell text.
            envs: extra environment variables for this command only.
            cwd: working directory (the engine's default is ``/home/sandbox``).
            user: ``"root"`` or ``"sandbox"`` (None: the engine's default).
            timeout: seconds before the engine kills the command's process group
                (the result then has ``exit_code`` 124 and ``timed_out`` True); None uses
                the engine's default (60 s).
            check: raise CommandExitError instead of returning when the exit code is not 0.

        Returns:
            CommandResult with stdout, stderr and exit_code.

        Raises:
            CommandExitError: ``check`` is True and the command exited non-zero.
            NotFoundError: the sandbox is gone.
            ConflictError: the sandbox is not running.
            SandboxError: any other failure reported by the engine.
        """
        body: Dict[str, Any] = {"cmd": cmd}
        if envs is not None:
            body["envs"] = dict(envs)
        if cwd is not None:
            body["cwd"] = cwd
        if user is not None:
            body["user"] = user
        if timeout is not None:
            body["timeout"] = timeout
        wait = float(timeout) if timeout is not None else _SERVER_DEFAULT_TIMEOUT
        request_timeout = max(self._transport.request_timeout, wait + _REQUEST_SLACK)
        doc = self._transport.request("POST", sandbox_path(self._sandbox_id, "/commands"),
                                      body=body, timeout=request_timeout)
        if not isinstance(doc, dict):
            raise SandboxError(f"unexpected answer to a command in {self._sandbox_id}: {doc!r}")
        result = CommandResult(
            stdout=str(doc.get("stdout") or ""),
            stderr=str(doc.get("stderr") or ""),
            exit_code=int(doc.get("exit_code", -1)),
            timed_out=bool(doc.get("timed_out", False)),
        )
        if check and result.exit_code != 0:
            raise CommandExitError(result)
        return result
