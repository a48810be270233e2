/**
 * The process machinery shared by `commands` and `pty`: the per-process routes of the REST
 * API (start, re-attach, stdin, signals, resize, kill) and the handle that reads one
 * process's event stream.
 *
 * A handle reads its stream either inside the call that waits for it (a foreground
 * `commands.run`) or in the background (a background command, a PTY, a re-attached process):
 * the reader feeds the output callbacks as events arrive, in order, awaiting a callback that
 * returns a promise before the next event; it accumulates the output and records the end.
 * `wait()` waits for the reader; `disconnect()` closes the stream without touching the process.
 */

import {
  CommandExitError,
  NotFoundError,
  SandboxError,
  TimeoutError,
} from "./errors.js";
import { EventStream, OutputBuffer, StreamEvent, decodeData, droppedMarker } from "./stream.js";
import { CallOpts, Transport, sandboxPath } from "./transport.js";

/** The engine accepts at most 1 MiB of stdin per request. */
const STDIN_CHUNK = 1024 * 1024;

/** What `sendStdin` and `sendInput` accept: text (sent as UTF-8) or bytes. */
export type StdinData = string | Uint8Array | ArrayBuffer;

/** A per-line output callback; a returned promise is awaited before the next event. */
export type OnLine = (line: string) => unknown;
/** A terminal output callback (raw bytes); a returned promise is awaited. */
export type OnData = (data: Uint8Array) => unknown;

/** A signal by name (`"SIGINT"`, `"SIGTERM"`, ...) or number (1..64). */
export type Signal = string | number;

/**
 * What a finished command printed and how it exited.
 *
 * A non-zero `exitCode` is a result, not an error (unless `run(cmd, { check: true })`).
 * `timedOut` is true when the engine killed the command at its timeout (`exitCode` is then
 * 124); a command ended by a signal has `exitCode` 128 + the signal's number and `signal` its
 * name. `stdout` and `stderr` are the output decoded as UTF-8 (invalid bytes replaced);
 * `stdoutBytes` and `stderrBytes` are the bytes exactly as printed. `droppedBytes` counts
 * output the engine discarded because it was not read fast enough (a line
 * `[ai2in: N bytes of output dropped]` marks the place in `stdout`). `error` is the engine's
 * message when the stream failed before the command ended (`exitCode` is then -1).
 */
export class CommandResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
  readonly timedOut: boolean;
  readonly error: string | undefined;
  readonly signal: string | undefined;
  readonly stdoutBytes: Uint8Array;
  readonly stderrBytes: Uint8Array;
  readonly droppedBytes: number;

  constructor(fields: {
    stdout: string;
    stderr: string;
    exitCode: number;
    timedOut?: boolean;
    error?: string | undefined;
    signal?: string | undefined;
    stdoutBytes?: Uint8Array;
    stderrBytes?: Uint8Array;
    droppedBytes?: number;
  }) {
    this.stdout = fields.stdout;
    this.stderr = fields.stderr;
    this.exitCode = fields.exitCode;
    this.timedOut = fields.timedOut ?? false;
    this.error = fields.error;
    this.signal = fields.signal;
    this.stdoutBytes = fields.stdoutBytes ?? new Uint8Array(0);
    this.stderrBytes = fields.stderrBytes ?? new Uint8Array(0);
    this.droppedBytes = fields.droppedBytes ?? 0;
  }

  /** True when the command exited with code 0 (and its stream did not fail). */
  get ok(): boolean {
    return this.exitCode === 0 && this.error === undefined;
  }
}

function pidStr(pid: number): string {
  if (!Number.isInteger(pid)) throw new TypeError(`pid must be an integer, not ${String(pid)}`);
  return String(pid);
}

/** Text as UTF-8 bytes, or the bytes themselves. */
export function asBytes(data: StdinData): Uint8Array {
  if (typeof data === "string") return new TextEncoder().encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new TypeError(`data must be a string, Uint8Array or ArrayBuffer, not ${typeof data}`);
}

/** The `/processes` routes of one sandbox. */
export class ProcessApi {
  constructor(readonly sandboxId: string, readonly transport: Transport) {}

  /** `/v1/sandboxes/{id}/processes[/{pid}][suffix]`. */
  path(pid?: number, suffix = ""): string {
    const p = pid === undefined ? "/processes" : "/processes/" + pidStr(pid);
    return sandboxPath(this.sandboxId, p + suffix);
  }

  /** Starts a process; returns its open stream and its pid (from the `start` event). */
  async start(body: Record<string, unknown>, signal?: AbortSignal): Promise<[EventStream, number]> {
    const stream = await this.transport.openStream("POST", this.path(), { body, signal });
    return [stream, await this.expectStart(stream, "starting a process")];
  }

  /** Re-attaches to a process's stream; the `start` event is already consumed. */
  async attach(pid: number, signal?: AbortSignal): Promise<EventStream> {
    const stream = await this.transport.openStream("GET", this.path(pid, "/stream"), { signal });
    await this.expectStart(stream, `attaching to process ${pid}`);
    return stream;
  }

  private async expectStart(stream: EventStream, what: string): Promise<number> {
    try {
      const ev = await stream.next();
      if (ev === null) {
        throw new SandboxError(`${what} in ${this.sandboxId}: the stream ended before the start event`);
      }
      if (ev.type === "start" && typeof ev["pid"] === "number") return ev["pid"];
      if (ev.type === "error") {
        throw new SandboxError(`${what} in ${this.sandboxId} failed: ${String(ev["message"] || "unknown error")}`);
      }
      throw new SandboxError(`${what} in ${this.sandboxId}: expected a start event, got ${JSON.stringify(ev).slice(0, 200)}`);
    } catch (e) {
      stream.close();
      throw e;
    }
  }

  /** Writes `data` to the process's stdin (in requests of at most 1 MiB). */
  async sendStdin(pid: number, data: StdinData, opts: CallOpts = {}): Promise<void> {
    const raw = asBytes(data);
    for (let off = 0; off < Math.max(raw.byteLength, 1); off += STDIN_CHUNK) {
      await this.transport.request("POST", this.path(pid, "/stdin"), {
        raw: { data: raw.subarray(off, off + STDIN_CHUNK) },
        signal: opts.signal,
        timeoutMs: opts.requestTimeoutMs,
      });
    }
  }

  /** Closes the process's stdin: it reads end-of-file. */
  async closeStdin(pid: number, opts: CallOpts = {}): Promise<void> {
    await this.transport.request("DELETE", this.path(pid, "/stdin"), { signal: opts.signal, timeoutMs: opts.requestTimeoutMs });
  }

  /** Sends a signal (a name like `"SIGINT"` or a number) to the process group. */
  async signal(pid: number, sig: Signal, opts: CallOpts = {}): Promise<void> {
    await this.transport.request("POST", this.path(pid, "/signal"), {
      body: { signal: sig },
      signal: opts.signal,
      timeoutMs: opts.requestTimeoutMs,
    });
  }

  /** Resizes a PTY. */
  async resize(pid: number, cols: number, rows: number, opts: CallOpts = {}): Promise<void> {
    await this.transport.request("POST", this.path(pid, "/resize"), {
      body: { cols, rows },
      signal: opts.signal,
      timeoutMs: opts.requestTimeoutMs,
    });
  }

  /** SIGKILLs every process of the command; false if it was not running. */
  async kill(pid: number, opts: CallOpts = {}): Promise<boolean> {
    try {
      await this.transport.request("DELETE", this.path(pid), { signal: opts.signal, timeoutMs: opts.requestTimeoutMs });
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
    return true;
  }
}

/** Options of `wait()`. */
export interface WaitOpts {
  /** Give up waiting (TimeoutError) after this many milliseconds; the process runs on. */
  timeoutMs?: number;
  /** Stop waiting (reject with its reason); the process runs on. */
  signal?: AbortSignal;
}

interface HandleCallbacks {
  onStdout?: OnLine | undefined;
  onStderr?: OnLine | undefined;
  onData?: OnData | undefined;
  check?: boolean | undefined;
}

/**
 * A started (or re-attached) process and the reader of its event stream. Extended by
 * `CommandHandle` and `PtyHandle`.
 */
export class ProcessHandle {
  /** @internal */ protected readonly api: ProcessApi;
  private readonly stream: EventStream;
  private readonly _pid: number;
  private readonly cbs: HandleCallbacks;
  private readonly out: OutputBuffer;
  private readonly err: OutputBuffer;
  private dropped = 0;
  private end: StreamEvent | undefined;
  private streamError: string | undefined;
  private failure: { error: unknown } | undefined;
  private reading: Promise<void> | undefined;

  /** @internal */
  constructor(api: ProcessApi, stream: EventStream, pid: number, cbs: HandleCallbacks = {}) {
    this.api = api;
    this.stream = stream;
    this._pid = pid;
    this.cbs = cbs;
    this.out = new OutputBuffer(cbs.onStdout !== undefined);
    this.err = new OutputBuffer(cbs.onStderr !== undefined);
  }

  // -- reading -------------------------------------------------------------------------------

  /** @internal Starts reading the stream in the background (errors are kept for `wait`). */
  startReader(): void {
    this.reading = this.read().catch((e: unknown) => {
      this.failure = { error: e };
    });
  }

  /** @internal Reads events until the end; throws what broke the stream or a callback threw. */
  async read(): Promise<void> {
    try {
      for (;;) {
        const ev = await this.stream.next();
        if (ev === null) break;
        if (await this.onEvent(ev)) {
          await this.stream.finish();
          return;
        }
      }
      if (!this.stream.closed) {
        throw new SandboxError(`the stream of process ${this._pid} in ${this.api.sandboxId} ended before the process did`);
      }
    } finally {
      this.stream.close();
      await call(this.cbs.onStdout, this.out.finish());
      await call(this.cbs.onStderr, this.err.finish());
    }
  }

  /** Applies one event and runs the callbacks it calls for; true when it is the last. */
  private async onEvent(ev: StreamEvent): Promise<boolean> {
    switch (ev.type) {
      case "stdout":
      case "pty": {
        const data = decodeData(ev);
        const lines = this.out.feed(data);
        if (ev.type === "pty" && this.cbs.onData) await this.cbs.onData(data);
        await call(this.cbs.onStdout, lines);
        return false;
      }
      case "stderr": {
        const lines = this.err.feed(decodeData(ev));
        await call(this.cbs.onStderr, lines);
        return false;
      }
      case "dropped": {
        const b = ev["bytes"];
        const n = typeof b === "number" && b > 0 ? b : 0;
        this.dropped += n;
        const lines = this.out.gap(droppedMarker(n));
        if (this.cbs.onData) await this.cbs.onData(new TextEncoder().encode(`\r\n${droppedMarker(n)}\r\n`));
        await call(this.cbs.onStdout, lines);
        return false;
      }
      case "end":
        this.end = ev;
        return true;
      case "error":
        this.streamError = String(ev["message"] || "the stream failed");
        return true;
      default: // "start" (repeated on re-attach) and types newer engines may add
        return false;
    }
  }

  // -- state ---------------------------------------------------------------------------------

  /** The process id inside the sandbox (it leads its own process group). */
  get pid(): number {
    return this._pid;
  }

  /** The standard output received so far, decoded as UTF-8. */
  get stdout(): string {
    return this.out.text;
  }

  /** The standard error received so far, decoded as UTF-8. */
  get stderr(): string {
    return this.err.text;
  }

  /** The standard output received so far, as bytes. */
  get stdoutBytes(): Uint8Array {
    return this.out.bytes;
  }

  /** The standard error received so far, as bytes. */
  get stderrBytes(): Uint8Array {
    return this.err.bytes;
  }

  /** Bytes of output the engine discarded because they were not read in time. */
  get droppedBytes(): number {
    return this.dropped;
  }

  /** The exit code once the process has ended; undefined before. */
  get exitCode(): number | undefined {
    return this.end === undefined ? undefined : intOr(this.end["exit_code"], -1);
  }

  /** The engine's message if the stream failed before the process ended. */
  get error(): string | undefined {
    return this.streamError;
  }

  // -- control -------------------------------------------------------------------------------

  /**
   * Waits for the process to end and returns its result.
   *
   * @throws TimeoutError `timeoutMs` passed first (the process keeps running).
   * @throws CommandExitError the command was started with `check: true` and exited non-zero.
   * @throws SandboxError the stream broke, or the handle was disconnected first.
   */
  async wait(opts: WaitOpts = {}): Promise<CommandResult> {
    const reading = this.reading ?? Promise.resolve();
    if (opts.timeoutMs === undefined && opts.signal === undefined) {
      await reading;
      return this.result();
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onAbort: (() => void) | undefined;
    const stop = new Promise<never>((_, reject) => {
      if (opts.timeoutMs !== undefined) {
        timer = setTimeout(() => reject(new TimeoutError(
          `process ${this._pid} in ${this.api.sandboxId} is still running after ${opts.timeoutMs! / 1000} s`)), opts.timeoutMs);
      }
      const sig = opts.signal;
      if (sig) {
        if (sig.aborted) reject(sig.reason);
        onAbort = () => reject(sig.reason);
        sig.addEventListener("abort", onAbort, { once: true });
      }
    });
    try {
      await Promise.race([reading, stop]);
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      if (onAbort && opts.signal) opts.signal.removeEventListener("abort", onAbort);
    }
    return this.result();
  }

  /** @internal The result once reading is over. */
  result(): CommandResult {
    if (this.failure !== undefined) throw this.failure.error;
    if (this.end === undefined && this.streamError === undefined) {
      throw new SandboxError(`disconnected from process ${this._pid} in ${this.api.sandboxId} before it ended; ` +
        `attach again with commands.connect(${this._pid})`);
    }
    const end: Record<string, unknown> = this.end ?? {};
    const sig = end["signal"];
    const result = new CommandResult({
      stdout: this.out.text,
      stderr: this.err.text,
      exitCode: intOr(end["exit_code"], -1),
      timedOut: end["timed_out"] === true,
      error: this.streamError,
      signal: typeof sig === "string" ? sig : undefined,
      stdoutBytes: this.out.bytes,
      stderrBytes: this.err.bytes,
      droppedBytes: this.dropped,
    });
    if (this.cbs.check && !result.ok) throw new CommandExitError(result);
    return result;
  }

  /** Kills the process and every process it started (SIGKILL); false if it had already ended. */
  kill(opts: CallOpts = {}): Promise<boolean> {
    return this.api.kill(this._pid, opts);
  }

  /**
   * Sends a signal (`"SIGINT"`, `"SIGTERM"`, ... or a number) to the process group.
   *
   * @throws NotFoundError the process is not running.
   * @throws InvalidArgumentError unknown signal.
   */
  sendSignal(signal: Signal, opts: CallOpts = {}): Promise<void> {
    return this.api.signal(this._pid, signal, opts);
  }

  /**
   * Stops reading the process's output without killing it (a background process runs on;
   * attach again with `connect(pid)`). Resolves once the reader has stopped.
   */
  async disconnect(): Promise<void> {
    this.stream.close();
    if (this.reading) await this.reading;
  }
}

async function call(cb: OnLine | undefined, lines: string[]): Promise<void> {
  if (cb === undefined) return;
  for (const line of lines) await cb(line);
}

function intOr(v: unknown, dflt: number): number {
  return typeof v === "number" && Number.isInteger(v) ? v : dflt;
}
