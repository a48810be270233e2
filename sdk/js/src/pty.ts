/**
 * Interactive terminals in a sandbox:
 * `const t = await sbx.pty.create({ cols: 80, rows: 24, onData })`.
 *
 * A PTY is a process started in a new pseudo-terminal (an interactive login `bash` unless a
 * command is given). Its output arrives as raw terminal bytes on `onData`; `sendInput` types
 * into it and `resize` changes its window size.
 */

import { ProcessStartOpts, startBody } from "./commands.js";
import { CommandResult, OnData, ProcessApi, ProcessHandle, StdinData, WaitOpts } from "./process.js";
import { CallOpts, Transport } from "./transport.js";

/** A terminal's size in characters. */
export interface PtySize {
  /** Width, 1..1000. */
  cols: number;
  /** Height, 1..1000. */
  rows: number;
}

/** Options of `pty.create`. */
export interface PtyCreateOpts extends ProcessStartOpts {
  /** Width in characters (1..1000, default 80). */
  cols?: number;
  /** Height in lines (1..1000, default 24). */
  rows?: number;
  /** Called with each chunk of terminal output (bytes); a returned promise is awaited. */
  onData?: OnData;
  /**
   * A command to run in the terminal with bash (login environment); left out, an
   * interactive login shell (`bash -il`). `TERM` is `xterm-256color`.
   */
  cmd?: string;
  /**
   * Keep the terminal running when this handle disconnects (or this program exits); by
   * default losing the connection kills it.
   */
  background?: boolean;
}

/** Options of `pty.connect`. */
export interface PtyConnectOpts {
  onData?: OnData;
  /** Aborting disconnects the handle. */
  signal?: AbortSignal;
}

/**
 * A running pseudo-terminal. Its output is read in the background and passed, as bytes, to
 * `onData`; it is also kept (`stdoutBytes`, and `wait()`'s result). If the engine had to drop
 * output because it was not read in time, `onData` gets a line
 * `[ai2in: N bytes of output dropped]` in its place and `droppedBytes` counts it.
 */
export class PtyHandle extends ProcessHandle {
  /**
   * Types `data` (bytes, or a string sent as UTF-8) into the terminal.
   *
   * @throws NotFoundError the terminal's process has ended.
   */
  sendInput(data: StdinData, opts: CallOpts = {}): Promise<void> {
    return this.api.sendStdin(this.pid, data, opts);
  }

  /**
   * Sets the terminal's size (1..1000 each); the program gets SIGWINCH.
   *
   * @throws InvalidArgumentError a size out of range.
   */
  resize(size: PtySize, opts: CallOpts = {}): Promise<void> {
    return this.api.resize(this.pid, size.cols, size.rows, opts);
  }

  /**
   * Waits for the terminal's process to end; resolves to its result (the terminal's output
   * is `stdout`).
   */
  override wait(opts: WaitOpts = {}): Promise<CommandResult> {
    return super.wait(opts);
  }
}

/** The `pty` namespace of a sandbox. */
export class Pty {
  private readonly api: ProcessApi;

  /** @internal */
  constructor(sandboxId: string, transport: Transport) {
    this.api = new ProcessApi(sandboxId, transport);
  }

  /**
   * Starts a terminal and resolves to its handle once the process has started.
   *
   * @throws InvalidArgumentError a size out of range, unknown user, missing `cwd`.
   * @throws ConflictError the sandbox is not running.
   */
  async create(opts: PtyCreateOpts = {}): Promise<PtyHandle> {
    const body: Record<string, unknown> = { pty: { cols: opts.cols ?? 80, rows: opts.rows ?? 24 } };
    if (opts.cmd !== undefined) body["cmd"] = opts.cmd;
    startBody(body, opts);
    const [stream, pid] = await this.api.start(body, opts.signal);
    const handle = new PtyHandle(this.api, stream, pid, { onData: opts.onData });
    handle.startReader();
    return handle;
  }

  /**
   * Attaches to a running terminal (its held output is replayed first).
   *
   * @throws NotFoundError no such process.
   */
  async connect(pid: number, opts: PtyConnectOpts = {}): Promise<PtyHandle> {
    const stream = await this.api.attach(pid, opts.signal);
    const handle = new PtyHandle(this.api, stream, pid, { onData: opts.onData });
    handle.startReader();
    return handle;
  }

  /** Types `data` into terminal `pid`. */
  sendInput(pid: number, data: StdinData, opts: CallOpts = {}): Promise<void> {
    return this.api.sendStdin(pid, data, opts);
  }

  /**
   * Resizes terminal `pid`.
   *
   * @throws ConflictError `pid` is not a terminal.
   */
  resize(pid: number, size: PtySize, opts: CallOpts = {}): Promise<void> {
    return this.api.resize(pid, size.cols, size.rows, opts);
  }

  /** Kills terminal `pid`; false if it was not running. */
  kill(pid: number, opts: CallOpts = {}): Promise<boolean> {
    return this.api.kill(pid, opts);
  }
}
