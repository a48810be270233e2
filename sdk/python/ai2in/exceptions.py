"""Exceptions raised by the AI2IN SDK.

Every error the engine answers with is a ``SandboxError`` (or a subclass picked from the
HTTP status) that carries the server's ``{"error": {"code", "message"}}`` body as
``.status``, ``.code`` and ``.message``; ``str(err)`` is the server's message.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .commands import CommandResult

__all__ = [
    "SandboxError",
    "AuthenticationError",
    "NotFoundError",
    "RateLimitError",
    "TimeoutError",
    "InvalidArgumentError",
    "ConflictError",
    "UnavailableError",
    "CommandExitError",
]


class SandboxError(Exception):
    """Base class of every error raised by the SDK.

    Attributes:
        status: the HTTP status the engine answered with, or None for client-side errors
            (engine not reachable, no API key, client-side timeout).
        code: the engine's error code (``"not_found"``, ``"bad_request"``, ...), or None.
        message: the engine's message (or the SDK's own, for client-side errors).
    """

    def __init__(self, message: str, *, status: Optional[int] = None,
                 code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message: str = message
        self.status: Optional[int] = status
        self.code: Optional[str] = code

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(message={self.message!r}, status={self.status!r}, "
                f"code={self.code!r})")


class AuthenticationError(SandboxError):
    """The API key is missing or wrong (HTTP 401)."""


class NotFoundError(SandboxError):
    """No such sandbox for this team (or it was killed), unknown template, no such process or
    file in the sandbox (HTTP 404)."""


class RateLimitError(SandboxError):
    """A limit was reached, e.g. the team's cap on running sandboxes (HTTP 429)."""


class TimeoutError(SandboxError, builtins.TimeoutError):  # noqa: A001 - deliberate name
    """The request timed out on the client side, or the engine reported a timeout.

    Also a subclass of the built-in ``TimeoutError``, so ``except TimeoutError`` catches it
    whichever of the two names is in scope.
    """

    def __init__(self, message: str, *, status: Optional[int] = None,
                 code: Optional[str] = None) -> None:
        SandboxError.__init__(self, message, status=status, code=code)

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(SandboxError):
    """The engine rejected the request's arguments (HTTP 400 or 413), e.g. an unknown user,
    a missing ``cwd``, a path with a NUL, reading a directory."""


class ConflictError(SandboxError):
    """The sandbox (or the process, or the file) is not in a state that allows the call
    (HTTP 409): a paused sandbox, stdin of a process started without it, resizing what is
    not a terminal, ``make_dir`` where a file is."""


class UnavailableError(SandboxError):
    """The engine or the sandbox cannot do it now, for a reason of their own that may pass
    (HTTP 503; the engine adds ``Retry-After``): the sandbox's pids limit is reached (a fork
    bomb: ``commands.kill_all()`` ends every process), it is out of memory, its agent has too
    many requests open, the host has no free network address. The message says which."""


class CommandExitError(SandboxError):
    """A command run with ``check=True`` exited with a non-zero code.

    Also raised when the command's stream failed before it ended (``result.error`` says why).

    Attributes:
        result: the full ``CommandResult`` (stdout, stderr, exit_code).
    """

    def __init__(self, result: "CommandResult") -> None:
        detail = result.stderr.strip().splitlines()[-1:] if result.stderr.strip() else []
        error = getattr(result, "error", None)
        if error:
            msg = f"command failed: {error}"
        else:
            msg = f"command exited with code {result.exit_code}"
            if result.timed_out:
                msg += " (timed out)"
        if detail:
            msg += f": {detail[0]}"
        super().__init__(msg)
        self.result: "CommandResult" = result

    @property
    def exit_code(self) -> int:
        """The command's exit code."""
        return self.result.exit_code

    @property
    def stdout(self) -> str:
        """The command's standard output."""
        return self.result.stdout

    @property
    def stderr(self) -> str:
        """The command's standard error."""
        return self.result.stderr
