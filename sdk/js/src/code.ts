/**
 * Running code in a sandbox: `await sbx.runCode("x + 1")`, in the style of E2B's code
 * interpreter.
 *
 * Code runs in contexts: one live interpreter each (an IPython kernel for Python, a
 * persistent `bash` or `node`), whose state (variables, imports, working directory) lasts
 * from one call to the next, also across SDK objects and programs. `runCode` sends
 * `POST /v1/sandboxes/{id}/execute` and reads its event stream to the end, calling the
 * callbacks as events arrive and resolving to an `Execution` (results, logs, error) once
 * every callback has run. The models mirror E2B's (`Execution`, `Result`, `Logs`,
 * `ExecutionError`, `OutputMessage`, `Context`) so that code written against E2B reads the same.
 */

import { InvalidArgumentError, SandboxError, isObject } from "./errors.js";
import { EventStream, StreamEvent, droppedMarker } from "./stream.js";
import { CallOpts, Transport, sandboxPath } from "./transport.js";

/** The MIME types that have a field of their own on a Result; others go to `extra`. */
export const MIME_FIELDS = {
  "text/plain": "text",
  "text/html": "html",
  "text/markdown": "markdown",
  "image/svg+xml": "svg",
  "image/png": "png",
  "image/jpeg": "jpeg",
  "application/pdf": "pdf",
  "text/latex": "latex",
  "application/json": "json",
  "application/javascript": "javascript",
} as const;

type MimeField = (typeof MIME_FIELDS)[keyof typeof MIME_FIELDS];

const LANGUAGE_ALIASES: Record<string, string> = { js: "javascript", sh: "bash" };

function normLanguage(language: string): string {
  const l = language.trim().toLowerCase();
  return LANGUAGE_ALIASES[l] ?? l;
}

/** An event's `ts` (RFC 3339) as Unix nanoseconds; the time of arrival if unreadable. */
function timestampNs(ts: unknown): number {
  if (typeof ts === "string") {
    const ms = Date.parse(ts);
    if (!Number.isNaN(ms)) {
      const frac = /\.(\d+)/.exec(ts)?.[1] ?? "";
      const subMs = frac.length > 3 ? Number(frac.slice(3, 9).padEnd(6, "0")) : 0;
      return ms * 1e6 + subMs;
    }
  }
  return Date.now() * 1e6;
}

/**
 * One chunk of standard output or error, as the code printed it (one stream event): `line`
 * is the text (it may hold several lines, or part of one), `timestamp` when the engine saw
 * it in Unix nanoseconds, `error` true for standard error.
 */
export class OutputMessage {
  constructor(readonly line: string, readonly timestamp: number, readonly error: boolean) {}

  toString(): string {
    return this.line;
  }
}

/**
 * What the code raised: `name` (e.g. `ZeroDivisionError`; `KernelDied` when the interpreter
 * died and was restarted), `value` (the message) and `traceback` (the interpreter's traceback
 * lines joined with newlines; Python's carry ANSI colours).
 */
export class ExecutionError {
  constructor(readonly name: string, readonly value: string, readonly traceback: string) {}

  toJSON(): { name: string; value: string; traceback: string } {
    return { name: this.name, value: this.value, traceback: this.traceback };
  }

  toString(): string {
    return this.value ? `${this.name}: ${this.value}` : this.name;
  }
}

/**
 * A displayable value the code produced: the value of the cell's last expression
 * (`isMainResult` true), or a display such as a matplotlib figure or `display(df)`.
 *
 * Each representation the interpreter sent is a field: `text` (text/plain), `html`,
 * `markdown`, `svg`, `png` and `jpeg` (base64), `pdf`, `latex`, `json` (the decoded value),
 * `javascript`; other MIME types are in `extra` (MIME → value). `data` is the whole bundle
 * exactly as sent and `metadata` the interpreter's metadata.
 */
export class Result {
  text: string | undefined;
  html: string | undefined;
  markdown: string | undefined;
  svg: string | undefined;
  png: string | undefined;
  jpeg: string | undefined;
  pdf: string | undefined;
  latex: string | undefined;
  json: unknown;
  javascript: string | undefined;
  readonly extra: Record<string, unknown> = {};
  readonly data: Record<string, unknown>;
  readonly metadata: Record<string, unknown>;
  readonly isMainResult: boolean;

  constructor(data: Record<string, unknown> = {}, isMainResult = false, metadata: Record<string, unknown> = {}) {
    this.data = { ...data };
    this.metadata = { ...metadata };
    this.isMainResult = isMainResult;
    for (const [mime, value] of Object.entries(this.data)) {
      const field = (MIME_FIELDS as Record<string, MimeField>)[mime];
      if (field === undefined) this.extra[mime] = value;
      else (this as Record<MimeField, unknown>)[field] = value;
    }
  }

  /** A Result from a `result` event of the stream. */
  static fromEvent(ev: StreamEvent): Result {
    const data = ev["data"];
    const meta = ev["metadata"];
    return new Result(isObject(data) ? data : {}, ev["is_main_result"] === true, isObject(meta) ? meta : {});
  }

  /** The representations present: field names (`"text"`, `"png"`, ...), then extra MIME types. */
  formats(): string[] {
    const out: string[] = Object.values(MIME_FIELDS).filter((f) => (this as Record<MimeField, unknown>)[f] !== undefined);
    return out.concat(Object.keys(this.extra));
  }

  /** The representations present (by field name, extra MIME types as they are) and `isMainResult`. */
  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const f of Object.values(MIME_FIELDS)) {
      const v = (this as Record<MimeField, unknown>)[f];
      if (v !== undefined) out[f] = v;
    }
    Object.assign(out, this.extra);
    out["isMainResult"] = this.isMainResult;
    return out;
  }

  toString(): string {
    return this.text ?? `Result(Formats: ${this.formats().join(", ")})`;
  }
}

/**
 * What the code printed: `stdout` and `stderr` as lists of chunks, one per event, in order
 * (`logs.stdout.join("")` is the whole output).
 */
export interface Logs {
  stdout: string[];
  stderr: string[];
}

/**
 * The outcome of one `runCode` call.
 *
 * `results`: the displays and the main result, in the order produced. `logs`: output chunks.
 * `error`: what the code raised, or undefined (a kernel that died is an error named
 * `KernelDied`; an execution stopped at its `timeoutMs` carries the interpreter's error, or
 * one named `TimeoutError`). `executionCount`: the context's execution counter (Python's
 * `In [N]`; undefined when the interpreter gave none). `status`: `"ok"`, `"error"` or `"interrupted"`. `timedOut`: the engine
 * interrupted the execution at its timeout (the context and its state survive).
 * `droppedBytes`: output the engine did not send because one execution printed more than
 * 32 MiB (a line `[ai2in: N bytes of output dropped]` marks it in `logs.stdout`).
 */
export class Execution {
  results: Result[] = [];
  logs: Logs = { stdout: [], stderr: [] };
  error: ExecutionError | undefined = undefined;
  executionCount: number | undefined = undefined;
  status: string | undefined = undefined;
  timedOut = false;
  droppedBytes = 0;
  contextId: string | undefined = undefined;

  /** The text of the main result (the value of the last expression), or undefined. */
  get text(): string | undefined {
    return this.results.find((r) => r.isMainResult)?.text;
  }

  toJSON(): Record<string, unknown> {
    return {
      results: this.results.map((r) => r.toJSON()),
      logs: this.logs,
      error: this.error?.toJSON() ?? null,
      executionCount: this.executionCount ?? null,
    };
  }
}

/** A code context: one live interpreter with its own state. */
export interface Context {
  /** `ctx_…` */
  id: string;
  /** `"python"`, `"bash"` or `"javascript"`. */
  language: string;
  cwd: string;
  user: string;
  /** True for a language's default context (used when a call names none). */
  default: boolean;
}

/** A context, or its id. */
export type ContextRef = Context | string;

function contextFromJson(doc: unknown): Context {
  if (!isObject(doc) || typeof doc["id"] !== "string") {
    throw new SandboxError(`unexpected answer from the engine (no context object): ${JSON.stringify(doc).slice(0, 200)}`);
  }
  const s = (k: string, d: string): string => (typeof doc[k] === "string" ? (doc[k] as string) : d);
  return {
    id: doc["id"],
    language: s("language", "python"),
    cwd: s("cwd", ""),
    user: s("user", "root"),
    default: doc["default"] === true,
  };
}

/** The id of a Context, or the string itself. */
export function contextId(context: ContextRef): string {
  if (typeof context === "string" && context) return context;
  if (isObject(context) && typeof context["id"] === "string") return context["id"];
  throw new TypeError(`context must be a Context or a context id, not ${JSON.stringify(context)}`);
}

/** Options of `runCode`. */
export interface RunCodeOpts {
  /**
   * `"python"` (the default), `"bash"` or `"javascript"` (also `"js"`, `"sh"`;
   * case-insensitive): runs in that language's default context. With `context` it must match
   * the context's language.
   */
  language?: string;
  /** A Context (or its id) from `createCodeContext`. */
  context?: ContextRef;
  /** Called with each chunk of standard output; a returned promise is awaited. */
  onStdout?: (msg: OutputMessage) => unknown;
  /** Called with each chunk of standard error. */
  onStderr?: (msg: OutputMessage) => unknown;
  /** Called with each Result (displays, and the main result). */
  onResult?: (result: Result) => unknown;
  /** Called with the ExecutionError if the code raised. */
  onError?: (error: ExecutionError) => unknown;
  /** Environment variables set for this execution only. */
  envs?: Record<string, string>;
  /**
   * Milliseconds after which the engine interrupts the execution (`KeyboardInterrupt` in
   * Python); the context and its state survive and the Execution has `timedOut` true. Left
   * out: the engine's default, 300 000. 0: none.
   */
  timeoutMs?: number;
  /** Aborting interrupts the execution (the context keeps its state) and rejects. */
  signal?: AbortSignal;
}

/** Options of `createCodeContext`. */
export interface CreateContextOpts extends CallOpts {
  /** Working directory (default `/home/sandbox`; must exist). */
  cwd?: string;
  /** `"python"` (the default), `"bash"` or `"javascript"`. */
  language?: string;
  /** The user it runs as (default `"root"`; the base template also has `"sandbox"`). */
  user?: string;
}

/** A callback to run: which one, and its argument. */
type Dispatch =
  | ["stdout", OutputMessage]
  | ["stderr", OutputMessage]
  | ["result", Result]
  | ["error", ExecutionError];

/**
 * Applies the events of one execution's stream to an `Execution`; `apply(ev)` returns the
 * callbacks the event calls for; `done` turns true at the `end` event. A stream `error`
 * event (the engine's failure, with only a `message`) throws a SandboxError.
 */
class ExecutionBuilder {
  readonly execution = new Execution();
  done = false;

  constructor(private readonly sandboxId: string, private readonly timeoutMs: number | undefined) {}

  apply(ev: StreamEvent): Dispatch[] {
    const ex = this.execution;
    switch (ev.type) {
      case "stdout":
      case "stderr": {
        const text = ev["text"];
        if (typeof text !== "string") {
          throw new SandboxError(`output event without text from ${this.sandboxId}: ${JSON.stringify(ev).slice(0, 200)}`);
        }
        (ev.type === "stdout" ? ex.logs.stdout : ex.logs.stderr).push(text);
        const msg = new OutputMessage(text, timestampNs(ev["ts"]), ev.type === "stderr");
        return [ev.type === "stdout" ? ["stdout", msg] : ["stderr", msg]];
      }
      case "result": {
        const r = Result.fromEvent(ev);
        ex.results.push(r);
        return [["result", r]];
      }
      case "error": {
        if (!("name" in ev)) {
          throw new SandboxError(`running code in ${this.sandboxId} failed: ${String(ev["message"] || "the stream failed")}`);
        }
        const tb = ev["traceback"];
        const lines = Array.isArray(tb) ? tb.map(String) : typeof tb === "string" ? [tb] : [];
        ex.error = new ExecutionError(String(ev["name"] ?? ""), String(ev["value"] ?? ""), lines.join("\n"));
        return [["error", ex.error]];
      }
      case "dropped": {
        const b = ev["bytes"];
        const n = typeof b === "number" && b > 0 ? b : 0;
        ex.droppedBytes += n;
        const prev = ex.logs.stdout[ex.logs.stdout.length - 1] ?? "\n";
        const chunk = (prev.endsWith("\n") ? "" : "\n") + droppedMarker(n) + "\n";
        ex.logs.stdout.push(chunk);
        return [["stdout", new OutputMessage(chunk, timestampNs(ev["ts"]), false)]];
      }
      case "start": {
        const cid = ev["context_id"];
        if (typeof cid === "string") ex.contextId = cid;
        return [];
      }
      case "end": {
        this.done = true;
        const n = ev["execution_count"];
        ex.executionCount = typeof n === "number" && Number.isInteger(n) ? n : undefined;
        const status = ev["status"];
        ex.status = typeof status === "string" ? status : undefined;
        ex.timedOut = ev["timed_out"] === true;
        if (ex.timedOut && ex.error === undefined) {
          const after = this.timeoutMs === undefined ? "" : ` after ${this.timeoutMs / 1000} s`;
          ex.error = new ExecutionError("TimeoutError", `the execution timed out${after} and was interrupted`, "");
          return [["error", ex.error]];
        }
        return [];
      }
      default: // types newer engines may add
        return [];
    }
  }

  finish(): Execution {
    if (!this.done) {
      throw new SandboxError(`the execution stream of ${this.sandboxId} ended before the execution did`);
    }
    return this.execution;
  }
}

/** The `/execute` and `/contexts` routes of one sandbox (behind `Sandbox.runCode` and friends). */
export class CodeApi {
  constructor(readonly sandboxId: string, readonly transport: Transport) {}

  private contextsPath(ctx?: ContextRef, suffix = ""): string {
    let p = "/contexts";
    if (ctx !== undefined) p += "/" + encodeURIComponent(contextId(ctx));
    return sandboxPath(this.sandboxId, p + suffix);
  }

  /** The request body of `runCode`; checks `language` against `context`. */
  private async executeBody(code: string, opts: RunCodeOpts): Promise<Record<string, unknown>> {
    if (typeof code !== "string") throw new TypeError(`code must be a string, not ${typeof code}`);
    const body: Record<string, unknown> = { code };
    if (opts.context !== undefined) {
      body["context_id"] = contextId(opts.context);
      if (opts.language !== undefined) await this.checkLanguage(opts.context, opts.language, opts.signal);
    } else if (opts.language !== undefined) {
      body["language"] = opts.language;
    }
    if (opts.envs !== undefined) body["envs"] = { ...opts.envs };
    if (opts.timeoutMs !== undefined) body["timeout_ms"] = Math.ceil(opts.timeoutMs);
    return body;
  }

  private async checkLanguage(context: ContextRef, language: string, signal?: AbortSignal): Promise<void> {
    let ctxLang: string | undefined;
    if (typeof context === "string") {
      // an id: look its language up (an unknown id is left to the engine's 404)
      const opts: CallOpts = {};
      if (signal) opts.signal = signal;
      ctxLang = (await this.listContexts(opts)).find((c) => c.id === context)?.language;
    } else {
      ctxLang = context.language;
    }
    if (ctxLang !== undefined && normLanguage(ctxLang) !== normLanguage(language)) {
      throw new InvalidArgumentError(`language ${JSON.stringify(language)} conflicts with context ` +
        `${contextId(context)}, a ${ctxLang} context: pass one of them`);
    }
  }

  /** Runs code and reads its stream to the end; see `Sandbox.runCode`. */
  async run(code: string, opts: RunCodeOpts = {}): Promise<Execution> {
    const body = await this.executeBody(code, opts);
    const builder = new ExecutionBuilder(this.sandboxId, opts.timeoutMs);
    const stream: EventStream = await this.transport.openStream("POST", sandboxPath(this.sandboxId, "/execute"), {
      body,
      signal: opts.signal,
    });
    try {
      // Closing the stream early (a callback threw, the call was aborted) interrupts the execution.
      for (;;) {
        const ev = await stream.next();
        if (ev === null) break;
        for (const d of builder.apply(ev)) {
          if (d[0] === "stdout") await opts.onStdout?.(d[1]);
          else if (d[0] === "stderr") await opts.onStderr?.(d[1]);
          else if (d[0] === "result") await opts.onResult?.(d[1]);
          else await opts.onError?.(d[1]);
        }
        if (builder.done) {
          await stream.finish();
          break;
        }
      }
    } finally {
      stream.close();
    }
    return builder.finish();
  }

  /** `POST …/contexts`: a new interpreter, resolved once it answers. */
  async createContext(opts: CreateContextOpts = {}): Promise<Context> {
    const body: Record<string, unknown> = {};
    if (opts.language !== undefined) body["language"] = opts.language;
    if (opts.cwd !== undefined) body["cwd"] = opts.cwd;
    if (opts.user !== undefined) body["user"] = opts.user;
    return contextFromJson(await this.transport.request("POST", this.contextsPath(), {
      body,
      signal: opts.signal,
      timeoutMs: opts.requestTimeoutMs,
    }));
  }

  /** `GET …/contexts`. */
  async listContexts(opts: CallOpts = {}): Promise<Context[]> {
    const doc = await this.transport.request("GET", this.contextsPath(), { signal: opts.signal, timeoutMs: opts.requestTimeoutMs });
    const list = isObject(doc) ? doc["contexts"] : undefined;
    if (!Array.isArray(list)) {
      throw new SandboxError(`unexpected answer to a context list in ${this.sandboxId}: ${JSON.stringify(doc).slice(0, 200)}`);
    }
    return list.map(contextFromJson);
  }

  /** `POST …/contexts/{id}/restart`. */
  async restartContext(context: ContextRef, opts: CallOpts = {}): Promise<Context> {
    return contextFromJson(await this.transport.request("POST", this.contextsPath(context, "/restart"), {
      signal: opts.signal,
      timeoutMs: opts.requestTimeoutMs,
    }));
  }

  /** `DELETE …/contexts/{id}`. */
  async removeContext(context: ContextRef, opts: CallOpts = {}): Promise<void> {
    await this.transport.request("DELETE", this.contextsPath(context), { signal: opts.signal, timeoutMs: opts.requestTimeoutMs });
  }
}
