"""AI2IN Python SDK: isolated Linux sandboxes for AI agents, on your own machine.

    from ai2in import Sandbox
    with Sandbox(api_key="ai2in_live_…", timeout=300) as sbx:
        print(sbx.commands.run("echo hi").stdout)
        sbx.files.write("/home/sandbox/a.txt", "hello")
        print(sbx.files.read("/home/sandbox/a.txt"))
        print(sbx.run_code("x = 41; x + 1").text)
"""

__version__ = "0.1.0"

from .async_sandbox import (  # noqa: E402
    AsyncCommandHandle,
    AsyncCommands,
    AsyncFiles,
    AsyncFileStream,
    AsyncPty,
    AsyncPtyHandle,
    AsyncSandbox,
    AsyncWatchHandle,
)
from .code import (  # noqa: E402
    Context,
    Execution,
    ExecutionError,
    Logs,
    OutputHandler,
    OutputMessage,
    Result,
)
from .commands import CommandHandle, CommandResult, Commands, ProcessInfo  # noqa: E402
from .exceptions import (  # noqa: E402
    AuthenticationError,
    CommandExitError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    RateLimitError,
    SandboxError,
    TimeoutError,
    UnavailableError,
)
from .files import (  # noqa: E402
    EntryInfo,
    Files,
    FilesystemEvent,
    FileStream,
    WatchHandle,
    WriteEntry,
)
from .pty import Pty, PtyHandle  # noqa: E402
from .sandbox import Sandbox  # noqa: E402

__all__ = [
    "Sandbox",
    "AsyncSandbox",
    "Commands",
    "CommandHandle",
    "CommandResult",
    "ProcessInfo",
    "Pty",
    "PtyHandle",
    "Files",
    "EntryInfo",
    "WriteEntry",
    "FilesystemEvent",
    "FileStream",
    "WatchHandle",
    "Execution",
    "Result",
    "Logs",
    "ExecutionError",
    "OutputMessage",
    "OutputHandler",
    "Context",
    "AsyncCommands",
    "AsyncCommandHandle",
    "AsyncPty",
    "AsyncPtyHandle",
    "AsyncFiles",
    "AsyncFileStream",
    "AsyncWatchHandle",
    "SandboxError",
    "AuthenticationError",
    "NotFoundError",
    "RateLimitError",
    "TimeoutError",
    "InvalidArgumentError",
    "ConflictError",
    "UnavailableError",
    "CommandExitError",
    "__version__",
]
