/**
 * Errors thrown by the SDK.
 *
 * Every error the engine answers with becomes a `SandboxError` (or a subclass picked from the
 * HTTP status) carrying the server's `{"error": {"code", "message"}}` body as `.status`,
 * `.code` and `.message`: `err.message` is the server's message, word for word. Client-side
 * failures (engine unreachable, no API key, a client-side timeout) are `SandboxError`s too,
 * with `status` undefined. An aborted call rejects with its `AbortSignal`'s reason instead
 * (a `DOMException` named `AbortError` unless the caller chose another), as `fetch` does.
 */

import type { CommandResult } from "./process.js";

/** Base class of every error the SDK throws (aborts aside). */
export class SandboxError extends Error {
  /** The HTTP status the engine answered with; undefined for client-side errors. */
  readonly status: number | undefined;
  /** The engine's error code (`"not_found"`, `"bad_request"`, ...), if it sent one. */
  readonly code: string | undefined;

  constructor(message: string, opts: { status?: number; code?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "SandboxError";
    this.status = opts.status;
    this.code = opts.code;
  }
}

/** The API key is missing or wrong (HTTP 401). */
export class AuthenticationError extends SandboxError {
  constructor(message: string, opts: { status?: number; code?: string; cause?: unknown } = {}) {
    super(message, opts);
    this.name = "AuthenticationError";
  }
}

/**
 * No such sandbox for this team (or it was killed), unknown template, no such process, file
 * or context in the sandbox (HTTP 404).
 */
export class NotFoundError extends SandboxError {
  constructor(message: string, opts: { status?: number; code?: string; cause?: unknown } = {}) {
    super(message, opts);
    this.name = "NotFoundError";
  }
}

/** A limit was reached, e.g. the team's cap on running sandboxes (HTTP 429). */
export class RateLimitError extends SandboxError {
  constructor(message: string, opts: { status?: number; code?: string; cause?: unknown } = {}) {
    super(message, opts);
    this.name = "RateLimitError";
  }
}

/**
 * A request timed out on the client side (`requestTimeoutMs`, or a stream silent for 60 s),
 * the engine reported a timeout (HTTP 504), or `wait({ timeoutMs })` ran out.
 */
export class TimeoutError extends SandboxError {
  constructor(message: string, opts: { status?: number; code?: string; cause?: unknown } = {}) {
    super(message, opts);
    this.name = "TimeoutError";
  }
}

/**
 * The engine rejected the request's arguments (HTTP 400 or 413), e.g. an unknown user, a
 * missing `cwd`, a path with a NUL, reading a directory, a timeout out of range.
 */
export class InvalidArgumentError extends SandboxError {
  constructor(message: string, opts: { status?: number; code?: string; cause?: unknown } = {}) {
    super(message, opts);
    this.name = "InvalidArgumentError";
  }
}

/**
 * The sandbox (or the process, or the file) is not in a state that allows the call (HTTP
 * 409): a paused sandbox, stdin of a process started without it, resizing what is not a
 * terminal, `makeDir` where a file is.
 */
export class ConflictError extends SandboxError {
  constructor(message: string, opts: { status?: number; code?: string; cause?: unknown } = {}) {
    super(message, opts);
    this.name = "ConflictError";
  }
}

/**
 * The engine or the sandbox cannot do it now, for a reason of their own that may pass (HTTP
 * 503; the engine adds `Retry-After`): the sandbox's pids limit is reached (a fork bomb:
 * `commands.killAll()` ends every process), it is out of memory, its agent has too many
 * requests open, the host has no free network address. The message says which.
 */
export class UnavailableError extends SandboxError {
  constructor(message: string, opts: { status?: number; code?: string; cause?: unknown } = {}) {
    super(message, opts);
    this.name = "UnavailableError";
  }
}

/**
 * A command run with `check: true` exited with a non-zero code (or its stream failed before
 * it ended: `result.error` says why). `result` holds its whole output.
 */
export class CommandExitError extends SandboxError {
  /** The command's full result. */
  readonly result: CommandResult;

  constructor(result: CommandResult) {
    const lines = result.stderr.trim().split("\n");
    const detail = result.stderr.trim() ? lines[lines.length - 1] : "";
    let msg: string;
    if (result.error) {
      msg = `command failed: ${result.error}`;
    } else {
      msg = `command exited with code ${result.exitCode}`;
      if (result.timedOut) msg += " (timed out)";
    }
    if (detail) msg += `: ${detail}`;
    super(msg);
    this.name = "CommandExitError";
    this.result = result;
  }

  /** The command's exit code. */
  get exitCode(): number {
    return this.result.exitCode;
  }

  /** The command's standard output. */
  get stdout(): string {
    return this.result.stdout;
  }

  /** The command's standard error. */
  get stderr(): string {
    return this.result.stderr;
  }
}

type ErrorClass = new (message: string, opts: { status?: number; code?: string }) => SandboxError;

const STATUS_ERRORS: Record<number, ErrorClass> = {
  400: InvalidArgumentError,
  401: AuthenticationError,
  404: NotFoundError,
  408: TimeoutError,
  409: ConflictError,
  413: InvalidArgumentError,
  429: RateLimitError,
  503: UnavailableError,
  504: TimeoutError,
};

/** The error for an engine's error answer, from its JSON body `{"error": {code, message}}`. */
export function errorFromResponse(status: number, body: string, statusText = ""): SandboxError {
  let code: string | undefined;
  let message = "";
  try {
    const doc: unknown = body ? JSON.parse(body) : null;
    const err = isObject(doc) ? doc["error"] : undefined;
    if (isObject(err)) {
      if (typeof err["code"] === "string") code = err["code"];
      if (typeof err["message"] === "string") message = err["message"];
    }
  } catch {
    // not JSON: the message says what came
  }
  if (!message) {
    const text = body.trim().slice(0, 500);
    message = `HTTP ${status} ${statusText}`.trim() + (text ? `: ${text}` : "");
  }
  let cls = STATUS_ERRORS[status] ?? SandboxError;
  if (code === "timeout") cls = TimeoutError;
  const opts: { status: number; code?: string } = { status };
  if (code !== undefined) opts.code = code;
  return new cls(message, opts);
}

/** True for a plain JSON object (not null, not an array). */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
