"""AI2IN Python SDK: isolated Linux sandboxes for AI agents, on your own machine.

    from ai2in import Sandbox
    with Sandbox(api_key="ai2in_live_…", timeout=300) as sbx:
        print(sbx.commands.run("echo hi").stdout)
"""

__version__ = "0.1.0"

from .async_sandbox import AsyncCommands, AsyncSandbox  # noqa: E402
from .commands import CommandResult, Commands  # noqa: E402
from .exceptions import (  # noqa: E402
    AuthenticationError,
    CommandExitError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    RateLimitError,
    SandboxError,
    TimeoutError,
)
from .sandbox import Sandbox  # noqa: E402

__all__ = [
    "Sandbox",
    "AsyncSandbox",
    "Commands",
    "AsyncCommands",
    "CommandResult",
    "SandboxError",
    "AuthenticationError",
    "NotFoundError",
    "RateLimitError",
    "TimeoutError",
    "InvalidArgumentError",
    "ConflictError",
    "CommandExitError",
    "__version__",
]
