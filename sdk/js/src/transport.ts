/**
 * HTTP transport of the SDK: the one place that builds headers, sends requests with the
 * platform's `fetch`, applies client-side timeouts and the caller's `AbortSignal`, and turns
 * the engine's error bodies into typed errors.
 *
 * `request` reads a JSON answer; `openStream` returns a live newline-delimited JSON event
 * stream (`EventStream`) and `openDownload` a live byte response. All three throw the same
 * typed errors, with the server's message, for an error status answered before a stream
 * starts. Connections are kept alive by `fetch` itself between requests.
 */

import {
  AuthenticationError,
  SandboxError,
  TimeoutError,
  errorFromResponse,
} from "./errors.js";
import { EventStream } from "./stream.js";
import { VERSION } from "./version.js";

/** The engine's URL when neither `apiUrl` nor `AI2IN_API_URL` says otherwise. */
export const DEFAULT_API_URL = "http://127.0.0.1:7300";
/** The preview domain when neither `domain` nor `AI2IN_DOMAIN` says otherwise. */
export const DEFAULT_DOMAIN = "localhost:7301";
/** Client-side timeout of a request that is not a stream, in milliseconds. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
/**
 * A live stream silent for this long is dead: the engine sends a keepalive every 10 s on a
 * silent stream, so 60 s without a byte means the engine (or the network) is gone.
 */
export const STREAM_IDLE_TIMEOUT_MS = 60_000;

/** How to reach the engine; shared by every call on one sandbox. */
export interface ConnectionOpts {
  /** The team's API key; defaults to `AI2IN_API_KEY`. */
  apiKey?: string;
  /** The engine's URL; defaults to `AI2IN_API_URL`, else `http://127.0.0.1:7300`. */
  apiUrl?: string;
  /**
   * Client-side timeout of each request that is not a stream, in milliseconds (default
   * 60 000); reset whenever upload or download makes progress. 0: none.
   */
  requestTimeoutMs?: number;
  /**
   * The domain of preview hosts (`getHost`, `getUrl`); defaults to `AI2IN_DOMAIN`, else
   * the engine's `preview-domain` (by default `localhost:` + its preview port).
   */
  domain?: string;
}

/** Options every call takes. */
export interface CallOpts {
  /** Aborts the call (and closes its stream, if it has one); it rejects with the reason. */
  signal?: AbortSignal;
  /** This call's own client-side timeout in milliseconds (see `ConnectionOpts`). */
  requestTimeoutMs?: number;
}

/** A query string, as ordered pairs. */
export type Query = Array<[string, string]>;

/** A raw (non-JSON) request body: bytes, or a stream of bytes sent chunked. */
export interface RawBody {
  data: Uint8Array | ReadableStream<Uint8Array>;
  contentType?: string;
}

interface SendOpts {
  body?: unknown;
  raw?: RawBody;
  query?: Query;
  signal?: AbortSignal | undefined;
  timeoutMs?: number | undefined;
}

function env(name: string): string {
  const p = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return p?.env?.[name] ?? "";
}

/** `apiKey`, else `AI2IN_API_KEY`; throws AuthenticationError if neither is set. */
export function resolveApiKey(apiKey: string | undefined): string {
  const key = apiKey || env("AI2IN_API_KEY");
  if (!key) {
    throw new AuthenticationError(
      'no API key: pass { apiKey: "ai2in_live_…" } or set the AI2IN_API_KEY environment ' +
        "variable (make one on the engine's host with `ai2ind keys create --team NAME`)",
    );
  }
  return key;
}

/** `apiUrl`, else `AI2IN_API_URL`, else `http://127.0.0.1:7300`, without a trailing `/`. */
export function resolveApiUrl(apiUrl: string | undefined): string {
  return (apiUrl || env("AI2IN_API_URL") || DEFAULT_API_URL).replace(/\/+$/, "");
}

/** `domain`, else `AI2IN_DOMAIN`, else the engine's, else `localhost:7301`. */
export function resolveDomain(domain: string | undefined, engineDomain?: string): string {
  return domain || env("AI2IN_DOMAIN") || engineDomain || DEFAULT_DOMAIN;
}

/** `/v1/sandboxes/{id}{suffix}` with the id percent-encoded. */
export function sandboxPath(sandboxId: string, suffix = ""): string {
  return "/v1/sandboxes/" + encodeURIComponent(sandboxId) + suffix;
}

/**
 * The abort controller of one request: it aborts when the caller's signal does (with the
 * caller's reason) or when its watchdog expires (with a TimeoutError). The watchdog is reset
 * by `touch()` whenever the transfer makes progress.
 */
export class Link {
  readonly controller = new AbortController();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timeoutMs = 0;
  private onTimeout: (() => Error) | undefined;
  private readonly onUserAbort: (() => void) | undefined;

  constructor(private readonly user: AbortSignal | undefined) {
    if (user) {
      if (user.aborted) {
        this.controller.abort(user.reason);
      } else {
        this.onUserAbort = () => this.abort(user.reason);
        user.addEventListener("abort", this.onUserAbort, { once: true });
      }
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** True once aborted, by the caller or by the watchdog. */
  get aborted(): boolean {
    return this.controller.signal.aborted;
  }

  /** The reason of the abort (the caller's, or a TimeoutError). */
  get reason(): unknown {
    return this.controller.signal.reason;
  }

  /** Starts (or restarts) the watchdog: `ms` without `touch()` aborts with `onTimeout()`. */
  arm(ms: number, onTimeout: () => Error): void {
    this.timeoutMs = ms;
    this.onTimeout = onTimeout;
    this.touch();
  }

  /** The transfer made progress: restarts the watchdog if it is armed. */
  touch(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.timeoutMs > 0 && this.onTimeout && !this.aborted) {
      const make = this.onTimeout;
      this.timer = setTimeout(() => this.abort(make()), this.timeoutMs);
      // The request itself keeps the process alive; the watchdog alone must not.
      (this.timer as { unref?: () => void }).unref?.();
    }
  }

  /** Stops the watchdog's clock until the next `touch()` (the transfer waits on the caller). */
  hold(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Stops the watchdog. */
  disarm(): void {
    this.timeoutMs = 0;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  abort(reason: unknown): void {
    if (!this.aborted) this.controller.abort(reason);
    this.dispose();
  }

  /** Stops the watchdog and stops listening to the caller's signal. Idempotent. */
  dispose(): void {
    this.disarm();
    if (this.user && this.onUserAbort) this.user.removeEventListener("abort", this.onUserAbort);
  }
}

/** An open answer whose body is still to be read, with the link that controls it. */
export interface OpenResponse {
  response: Response;
  link: Link;
  what: string;
}

/** Sends requests to one engine with one API key. */
export class Transport {
  readonly apiKey: string;
  readonly apiUrl: string;
  readonly requestTimeoutMs: number;

  constructor(opts: ConnectionOpts = {}) {
    this.apiKey = resolveApiKey(opts.apiKey);
    this.apiUrl = resolveApiUrl(opts.apiUrl);
    this.requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    let parsed: URL;
    try {
      parsed = new URL(this.apiUrl);
    } catch {
      throw new SandboxError(`invalid API URL ${JSON.stringify(this.apiUrl)}: expected http://HOST[:PORT]`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new SandboxError(`invalid API URL ${JSON.stringify(this.apiUrl)}: expected http://HOST[:PORT]`);
    }
  }

  private headers(contentType: string | undefined): Record<string, string> {
    const h: Record<string, string> = {
      "X-API-Key": this.apiKey,
      Accept: "application/json",
      "User-Agent": `ai2in-js/${VERSION}`,
    };
    if (contentType !== undefined) h["Content-Type"] = contentType;
    return h;
  }

  /**
   * Sends a request and returns the answer with its headers read and its body unread;
   * throws the mapped SandboxError for an error status (with the server's message), a
   * TimeoutError when the watchdog expired, the caller's abort reason when aborted, and a
   * SandboxError when the engine is not reachable.
   */
  async open(method: string, path: string, opts: SendOpts = {}): Promise<OpenResponse> {
    let url = this.apiUrl + path;
    if (opts.query && opts.query.length) url += "?" + new URLSearchParams(opts.query).toString();
    const what = `${method} ${path}`;
    const link = new Link(opts.signal);
    const timeoutMs = opts.timeoutMs ?? this.requestTimeoutMs;
    link.arm(timeoutMs, () => new TimeoutError(
      `request ${what} to the AI2IN engine at ${this.apiUrl} timed out after ${timeoutMs / 1000} s`));
    const init: RequestInit & { duplex?: "half" } = { method, signal: link.signal };
    if (opts.raw !== undefined) {
      init.headers = this.headers(opts.raw.contentType ?? "application/octet-stream");
      if (opts.raw.data instanceof Uint8Array) {
        init.body = opts.raw.data;
      } else {
        init.body = progressStream(opts.raw.data, link);
        init.duplex = "half";
      }
    } else if (opts.body !== undefined) {
      init.headers = this.headers("application/json");
      init.body = JSON.stringify(opts.body);
    } else {
      init.headers = this.headers(undefined);
    }
    let response: Response;
    try {
      if (link.aborted) throw link.reason;
      response = await fetch(url, init);
    } catch (e) {
      link.dispose();
      throw this.failure(e, link, what);
    }
    link.touch();
    if (response.status >= 400) {
      let text = "";
      try {
        text = await response.text();
      } catch (e) {
        if (link.aborted) {
          link.dispose();
          throw link.reason;
        }
      }
      link.dispose();
      throw errorFromResponse(response.status, text, response.statusText);
    }
    return { response, link, what };
  }

  /** What a failed fetch becomes: the abort reason, or a SandboxError saying what broke. */
  failure(e: unknown, link: Link, what: string): unknown {
    if (link.aborted) return link.reason;
    if (e instanceof SandboxError) return e;
    const cause = (e as { cause?: { code?: string; message?: string } } | undefined)?.cause;
    const code = cause?.code ?? "";
    if (["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH"].includes(code)) {
      return new SandboxError(
        `the AI2IN engine at ${this.apiUrl} is not reachable (${cause?.message ?? code}); ` +
          "is ai2ind running? (set apiUrl or AI2IN_API_URL)",
        { cause: e },
      );
    }
    const detail = cause?.message ?? (e instanceof Error ? e.message : String(e));
    return new SandboxError(`request ${what} to the AI2IN engine at ${this.apiUrl} failed: ${detail}`, { cause: e });
  }

  /** Sends a request (JSON `body` or `raw` bytes) and returns the decoded JSON answer. */
  async request<T = unknown>(method: string, path: string, opts: SendOpts = {}): Promise<T> {
    const { response, link, what } = await this.open(method, path, opts);
    let text: string;
    try {
      text = await response.text();
    } catch (e) {
      throw this.failure(e, link, `reading the answer to ${what}`);
    } finally {
      link.dispose();
    }
    if (!text) return null as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new SandboxError(
        `the AI2IN engine at ${this.apiUrl} answered ${what} with invalid JSON: ${text.slice(0, 200)}`,
        { status: response.status },
      );
    }
  }

  /**
   * Sends a request whose answer is an NDJSON event stream; returns the open stream. The
   * caller's signal stays linked to the stream: aborting it closes the stream.
   */
  async openStream(method: string, path: string, opts: SendOpts = {}): Promise<EventStream> {
    const open = await this.open(method, path, opts);
    open.link.disarm();
    const body = open.response.body;
    if (body === null) {
      open.link.dispose();
      throw new SandboxError(`the AI2IN engine at ${this.apiUrl} answered ${open.what} without a body`);
    }
    return new EventStream(body, open.link, open.what, this.apiUrl);
  }

  /**
   * Sends a request whose answer is raw bytes; returns its body as a stream whose reads
   * are each bounded by the request timeout (the time between reads is the caller's), and
   * whose cancel closes the connection.
   */
  async openDownload(method: string, path: string, opts: SendOpts = {}): Promise<ReadableStream<Uint8Array>> {
    const { response, link, what } = await this.open(method, path, opts);
    const body = response.body;
    if (body === null) {
      link.dispose();
      return new ReadableStream<Uint8Array>({ start: (c) => c.close() });
    }
    const reader = body.getReader();
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        try {
          // The watchdog runs only while waiting on the engine, not while the caller takes
          // its time between reads (an abandoned download is closed by the engine).
          link.touch();
          const { value, done } = await reader.read();
          if (done) {
            link.dispose();
            controller.close();
            return;
          }
          link.hold();
          controller.enqueue(value);
        } catch (e) {
          link.dispose();
          controller.error(this.failure(e, link, `reading the answer to ${what}`));
        }
      },
      cancel: async (reason) => {
        link.abort(reason ?? new SandboxError("download cancelled"));
        try {
          await reader.cancel(reason);
        } catch {
          // already closed
        }
      },
    });
  }
}

/** An upload stream that restarts the watchdog of `link` on every chunk it hands on. */
function progressStream(src: ReadableStream<Uint8Array>, link: Link): ReadableStream<Uint8Array> {
  const reader = src.getReader();
  return new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      const { value, done } = await reader.read();
      if (done) {
        controller.close();
        return;
      }
      link.touch();
      controller.enqueue(value);
    },
    cancel: async (reason) => {
      await reader.cancel(reason);
    },
  });
}
