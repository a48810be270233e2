/**
 * Running shell commands in a sandbox: `await sbx.commands.run("echo hi")`.
 *
 * A command is a process started with bash under the user's login environment, whose life
 * the engine streams as it happens (`POST /v1/sandboxes/{id}/processes`): `run` either reads
 * that stream until the end and resolves to a `CommandResult`, or (`background: true`)
 * resolves to a `CommandHandle` as soon as the command has started, whose reader goes on in
 * the background. Output callbacks get one line at a time, as it is printed.
 */

import { SandboxError, isObject } from "./errors.js";
import {
  CommandResult,
  OnLine,
  ProcessApi,
  ProcessHandle,
  Signal,
  StdinData,
} from "./process.js";
import { CallOpts, Transport } from "./transport.js";

/** Options shared by every process start (commands and terminals). */
export interface ProcessStartOpts {
  /** Extra environment variables for this process (on top of the sandbox's). */
  envs?: Record<string, string>;
  /** Working directory (default `/home/sandbox`; relative paths resolve against it). */
  cwd?: string;
  /** `"root"` (the default), `"sandbox"`, or any user of the sandbox's `/etc/passwd`. */
  user?: string;
  /**
   * Milliseconds after which the engine kills the process and every process it started
   * (SIGTERM, SIGKILL 2 s later); the result then has `exitCode` 124 and `timedOut` true. 0 or null: none. Left
   * out: 60 s for a command that is waited for, none for a background one or a terminal.
   */
  timeoutMs?: number | null;
  /** A label shown in `commands.list()`. */
  tag?: string;
  /**
   * Aborts the call. For a command that is waited for, an abort closes its stream and the
   * engine kills the command; for a handle (background command, terminal) it disconnects
   * the handle, whose `wait()` then rejects with the reason.
   */
  signal?: AbortSignal;
}

/** Options of `commands.run`. */
export interface CommandStartOpts extends ProcessStartOpts {
  /** Return a handle as soon as the command has started instead of waiting for it. */
  background?: boolean;
  /** Give the command a stdin pipe fed by `sendStdin` (otherwise stdin is `/dev/null`). */
  stdin?: boolean;
  /**
   * Throw a CommandExitError (from `run`, or the handle's `wait()`) instead of resolving
   * when the exit code is not 0.
   */
  check?: boolean;
  /**
   * Called with each line of standard output (without its newline) as it is printed; a
   * last line without a newline is passed at the end. A returned promise is awaited before
   * the next line. For a command that is waited for, every call happens before `run` resolves.
   */
  onStdout?: OnLine;
  /** The same for standard error. */
  onStderr?: OnLine;
}

/** Options of `commands.connect`. */
export interface CommandConnectOpts {
  onStdout?: OnLine;
  onStderr?: OnLine;
  /** Aborting disconnects the handle (the command runs on). */
  signal?: AbortSignal;
}

/** A running process started through the API (an entry of `commands.list()`). */
export interface ProcessInfo {
  pid: number;
  cmd: string | undefined;
  tag: string | undefined;
  cwd: string | undefined;
  user: string | undefined;
  pty: boolean;
  stdin: boolean;
  background: boolean;
  startedAt: string | undefined;
}

/**
 * A running command: returned by `run(cmd, { background: true })` and `connect(pid)`.
 *
 * Its output is read in the background as it arrives (calling `onStdout` / `onStderr` per
 * line); `stdout`, `stderr` and friends show what arrived so far. `wait()` resolves to the
 * `CommandResult`; `kill()` ends the command; `disconnect()` stops reading and leaves the
 * command running. While the handle reads, its open connection keeps a Node.js process alive:
 * `wait()`, `kill()` or `disconnect()` before the program ends.
 */
export class CommandHandle extends ProcessHandle {
  /**
   * Writes `data` (a string as UTF-8, or bytes) to the command's stdin.
   *
   * @throws ConflictError the command was started without `stdin: true`, or its stdin was closed.
   * @throws NotFoundError the command is not running.
   */
  sendStdin(data: StdinData, opts: CallOpts = {}): Promise<void> {
    return this.api.sendStdin(this.pid, data, opts);
  }

  /**
   * Closes the command's stdin, so that it reads end-of-file.
   *
   * @throws ConflictError the command has no stdin pipe, or it is already closed.
   */
  closeStdin(opts: CallOpts = {}): Promise<void> {
    return this.api.closeStdin(this.pid, opts);
  }
}

/** The `commands` namespace of a sandbox. */
export class Commands {
  private readonly api: ProcessApi;

  /** @internal */
  constructor(sandboxId: string, transport: Transport) {
    this.api = new ProcessApi(sandboxId, transport);
  }

  /**
   * Runs `cmd` in bash (with the user's login environment) in the sandbox.
   *
   * Without `background` it waits for the command and resolves to its result, after every
   * output callback has run. With `background: true` it resolves to a `CommandHandle` as soon
   * as the command has started.
   *
   * @throws CommandExitError `check` is true and the command exited non-zero.
   * @throws InvalidArgumentError bad arguments, unknown user, missing `cwd` (engine's message).
   * @throws NotFoundError the sandbox is gone.
   * @throws ConflictError the sandbox is not running.
   * @throws UnavailableError the sandbox cannot start it now (its pids limit is reached, it
   *   is out of memory), with the reason.
   */
  run(cmd: string, opts: CommandStartOpts & { background: true }): Promise<CommandHandle>;
  run(cmd: string, opts?: CommandStartOpts & { background?: false }): Promise<CommandResult>;
  run(cmd: string, opts?: CommandStartOpts): Promise<CommandResult | CommandHandle>;
  async run(cmd: string, opts: CommandStartOpts = {}): Promise<CommandResult | CommandHandle> {
    const body = startBody({ cmd }, opts);
    if (opts.stdin) body["stdin"] = true;
    const [stream, pid] = await this.api.start(body, opts.signal);
    const handle = new CommandHandle(this.api, stream, pid, {
      onStdout: opts.onStdout,
      onStderr: opts.onStderr,
      check: opts.check,
    });
    if (opts.background) {
      handle.startReader();
      return handle;
    }
    await handle.read(); // closes the stream whatever happens: the engine kills the command
    return handle.result();
  }

  /**
   * Attaches to a running (or just ended) command, e.g. from another program. The handle
   * first replays the output the engine still holds (the last 1 MiB), then follows the live
   * output. Disconnecting never kills the command.
   *
   * @throws NotFoundError no such process (or it ended more than 60 s ago).
   */
  async connect(pid: number, opts: CommandConnectOpts = {}): Promise<CommandHandle> {
    const stream = await this.api.attach(pid, opts.signal);
    const handle = new CommandHandle(this.api, stream, pid, { onStdout: opts.onStdout, onStderr: opts.onStderr });
    handle.startReader();
    return handle;
  }

  /** The running processes started through the API (commands and terminals). */
  async list(opts: CallOpts = {}): Promise<ProcessInfo[]> {
    const doc = await this.api.transport.request("GET", this.api.path(), {
      signal: opts.signal,
      timeoutMs: opts.requestTimeoutMs,
    });
    const procs = isObject(doc) ? doc["processes"] : undefined;
    if (!Array.isArray(procs)) {
      throw new SandboxError(`unexpected answer to a process list in ${this.api.sandboxId}: ${JSON.stringify(doc).slice(0, 200)}`);
    }
    return procs.filter(isObject).map(processInfo);
  }

  /**
   * Kills a command: SIGKILL to every process it started, including those that left its
   * process group or session (`setsid`, a daemon's double fork); false if it was not running.
   */
  kill(pid: number, opts: CallOpts = {}): Promise<boolean> {
    return this.api.kill(pid, opts);
  }

  /**
   * Ends every process in the sandbox but its agent: commands (background ones and whatever
   * they started, daemons included), terminals, a runaway fork bomb, and the interpreters of
   * code contexts (each starts afresh on its next `runCode`: its variables and imports are
   * gone). Works while the sandbox's pids limit is reached, when nothing new can start.
   * Resolves to how many processes were killed.
   */
  async killAll(opts: CallOpts = {}): Promise<number> {
    const doc = await this.api.transport.request("POST", this.api.path(undefined, "/kill_all"), {
      signal: opts.signal,
      timeoutMs: opts.requestTimeoutMs,
    });
    const killed = isObject(doc) ? doc["killed"] : undefined;
    if (typeof killed !== "number") {
      throw new SandboxError(`unexpected answer to killAll in ${this.api.sandboxId}: ${JSON.stringify(doc).slice(0, 200)}`);
    }
    return killed;
  }

  /**
   * Writes `data` (a string as UTF-8, or bytes) to the stdin of process `pid`.
   *
   * @throws NotFoundError no such running process.
   * @throws ConflictError it was started without `stdin: true` or its stdin was closed.
   */
  sendStdin(pid: number, data: StdinData, opts: CallOpts = {}): Promise<void> {
    return this.api.sendStdin(pid, data, opts);
  }

  /** Closes the stdin of process `pid` (it reads end-of-file). */
  closeStdin(pid: number, opts: CallOpts = {}): Promise<void> {
    return this.api.closeStdin(pid, opts);
  }

  /**
   * Sends a signal (`"SIGINT"`, `"SIGTERM"`, ... or a number 1..64) to the process group of
   * `pid`.
   *
   * @throws NotFoundError no such running process.
   * @throws InvalidArgumentError unknown signal.
   */
  sendSignal(pid: number, signal: Signal, opts: CallOpts = {}): Promise<void> {
    return this.api.signal(pid, signal, opts);
  }
}

function processInfo(doc: Record<string, unknown>): ProcessInfo {
  const s = (k: string): string | undefined => (typeof doc[k] === "string" ? (doc[k] as string) : undefined);
  return {
    pid: typeof doc["pid"] === "number" ? doc["pid"] : -1,
    cmd: s("cmd"),
    tag: s("tag"),
    cwd: s("cwd"),
    user: s("user"),
    pty: doc["pty"] === true,
    stdin: doc["stdin"] === true,
    background: doc["background"] === true,
    startedAt: s("started_at"),
  };
}

/**
 * Adds the options every process start shares (commands and terminals) to `body`, leaving
 * out what the engine should default; returns `body`.
 */
export function startBody(
  body: Record<string, unknown>,
  opts: ProcessStartOpts & { background?: boolean | undefined },
): Record<string, unknown> {
  if (opts.envs !== undefined) body["envs"] = { ...opts.envs };
  if (opts.cwd !== undefined) body["cwd"] = opts.cwd;
  if (opts.user !== undefined) body["user"] = opts.user;
  if (opts.timeoutMs !== undefined) body["timeout_ms"] = timeoutMs(opts.timeoutMs);
  if (opts.background) body["background"] = true;
  if (opts.tag !== undefined) body["tag"] = opts.tag;
  return body;
}

/** Milliseconds (null or 0: none) as the engine's integer `timeout_ms`. */
export function timeoutMs(ms: number | null): number {
  if (ms === null) return 0;
  if (typeof ms !== "number" || Number.isNaN(ms)) {
    throw new TypeError(`timeoutMs must be a number of milliseconds or null, not ${String(ms)}`);
  }
  return Math.ceil(ms);
}
