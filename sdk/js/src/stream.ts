/**
 * Live event streams and output decoding, shared by commands, PTYs, file watches and code
 * execution.
 *
 * `EventStream` reads an `application/x-ndjson` answer (one JSON object per line, sent as it
 * happens over chunked HTTP) incrementally: each `next()` waits for no more than the next
 * complete line. Keepalive events are consumed here. `OutputBuffer` turns the base64 output
 * chunks of one stream (stdout, stderr or a terminal) into the raw bytes, the text (decoded
 * incrementally, so a character split across two events is not broken) and whole lines for
 * per-line callbacks.
 */

import { SandboxError, TimeoutError, isObject } from "./errors.js";
import type { Link } from "./transport.js";

/** One event of a stream: `type` and the fields of that type. */
export interface StreamEvent {
  type: string;
  [field: string]: unknown;
}

/** Longest event line accepted (an output event carries at most a few hundred KiB). */
const MAX_EVENT_LINE = 64 * 1024 * 1024;
/** A stream silent for this long is dead (the engine sends a keepalive every 10 s). */
const STREAM_IDLE_TIMEOUT_MS = 60_000;

/** The line put in place of `n` bytes of output the engine discarded. */
export function droppedMarker(n: number): string {
  return `[ai2in: ${n} bytes of output dropped]`;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The bytes of an output event's base64 `data` field. */
export function decodeData(ev: StreamEvent): Uint8Array {
  const data = ev["data"];
  if (typeof data !== "string") {
    throw new SandboxError(`output event without base64 data: ${JSON.stringify(ev).slice(0, 200)}`);
  }
  if (data.length % 4 !== 0 || !BASE64.test(data)) {
    throw new SandboxError(`output event with invalid base64 data: ${data.slice(0, 100)}`);
  }
  const B = (globalThis as { Buffer?: { from(s: string, enc: string): Uint8Array } }).Buffer;
  if (B) {
    const b = B.from(data, "base64");
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }
  const bin = atob(data);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** `parts` joined into one array. */
export function concatBytes(parts: Uint8Array[], size?: number): Uint8Array {
  if (parts.length === 1 && parts[0]) return parts[0];
  const total = size ?? parts.reduce((n, p) => n + p.byteLength, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

/**
 * An open NDJSON event stream. `next()` returns the next event, or null at the end; it is
 * also an async iterable. `close()` ends it at any time (a pending `next()` then returns
 * null). A broken connection throws a SandboxError, 60 s without a byte a TimeoutError, and
 * an abort of the caller's signal throws the signal's reason.
 */
export class EventStream implements AsyncIterable<StreamEvent> {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder("utf-8", { fatal: true });
  private pending: Uint8Array[] = [];
  private pendingLen = 0;
  private queue: StreamEvent[] = [];
  private ended = false;
  private closedOnPurpose = false;

  constructor(
    body: ReadableStream<Uint8Array>,
    private readonly link: Link,
    /** What the stream is, for messages: `POST /v1/sandboxes/…/processes`. */
    readonly what: string,
    private readonly apiUrl: string,
  ) {
    this.reader = body.getReader();
    link.arm(STREAM_IDLE_TIMEOUT_MS, () => new TimeoutError(
      `no data from the AI2IN engine at ${apiUrl} on ${what} for 60 s (it sends a keepalive ` +
        "every 10 s): the engine or the connection is gone"));
  }

  /** True once `close()` was called (or the stream was read to its end and released). */
  get closed(): boolean {
    return this.closedOnPurpose;
  }

  /** The next event (never a keepalive), or null once the stream has ended or was closed. */
  async next(): Promise<StreamEvent | null> {
    for (;;) {
      const ev = this.queue.shift();
      if (ev !== undefined) return ev;
      if (this.ended || this.closedOnPurpose) return null;
      await this.fill();
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamEvent> {
    for (;;) {
      const ev = await this.next();
      if (ev === null) return;
      yield ev;
    }
  }

  private async fill(): Promise<void> {
    let chunk: Awaited<ReturnType<ReadableStreamDefaultReader<Uint8Array>["read"]>>;
    try {
      chunk = await this.reader.read();
    } catch (e) {
      if (this.closedOnPurpose) {
        this.ended = true;
        return;
      }
      this.ended = true;
      if (this.link.aborted) {
        this.link.dispose();
        throw this.link.reason;
      }
      this.link.dispose();
      const detail = (e as { cause?: { message?: string } })?.cause?.message ?? (e instanceof Error ? e.message : String(e));
      throw new SandboxError(`the stream ${this.what} from the AI2IN engine at ${this.apiUrl} broke: ${detail}`, { cause: e });
    }
    if (chunk.done) {
      this.ended = true;
      this.link.dispose();
      if (this.pendingLen > 0) {
        const line = concatBytes(this.pending, this.pendingLen);
        this.pending = [];
        this.pendingLen = 0;
        this.parse(line);
      }
      return;
    }
    this.link.touch();
    const data = chunk.value;
    let start = 0;
    for (;;) {
      const nl = data.indexOf(10, start);
      if (nl < 0) break;
      const piece = data.subarray(start, nl);
      let line = piece;
      if (this.pendingLen > 0) {
        this.pending.push(piece);
        line = concatBytes(this.pending, this.pendingLen + piece.byteLength);
        this.pending = [];
        this.pendingLen = 0;
      }
      this.parse(line);
      start = nl + 1;
    }
    if (start < data.byteLength) {
      const rest = data.subarray(start);
      this.pending.push(rest);
      this.pendingLen += rest.byteLength;
      if (this.pendingLen > MAX_EVENT_LINE) {
        this.close();
        throw new SandboxError(`an event on ${this.what} is longer than ${MAX_EVENT_LINE} bytes`);
      }
    }
  }

  private parse(line: Uint8Array): void {
    let text: string;
    let ev: unknown;
    try {
      text = this.decoder.decode(line);
      if (!text.trim()) return;
      ev = JSON.parse(text);
    } catch {
      const shown = new TextDecoder().decode(line.subarray(0, 200));
      this.close();
      throw new SandboxError(`the AI2IN engine at ${this.apiUrl} sent an unreadable event on ${this.what}: ${shown}`);
    }
    if (!isObject(ev) || typeof ev["type"] !== "string") {
      this.close();
      throw new SandboxError(`the AI2IN engine at ${this.apiUrl} sent an event without a type on ${this.what}: ${text.slice(0, 200)}`);
    }
    if (ev["type"] === "keepalive") return;
    this.queue.push(ev as StreamEvent);
  }

  /**
   * Called after the stream's last event: reads what remains of the answer (its end,
   * normally there already) for at most a second, so that the connection can carry the next
   * request, then closes the stream. Never throws.
   */
  async finish(): Promise<void> {
    if (this.closedOnPurpose) return;
    const timer = setTimeout(() => this.close(), 1000);
    (timer as { unref?: () => void }).unref?.();
    try {
      while (!this.ended && !this.closedOnPurpose) await this.fill();
    } catch {
      // the stream's end is of no interest any more
    } finally {
      clearTimeout(timer);
      this.close();
    }
  }

  /** Ends the stream, closing its connection unless it was read to the end. Idempotent. */
  close(): void {
    if (this.closedOnPurpose) return;
    this.closedOnPurpose = true;
    this.queue = [];
    if (this.ended) {
      this.link.dispose();
      return;
    }
    this.link.abort(new SandboxError(`the stream ${this.what} was closed`));
    this.reader.cancel().catch(() => undefined);
  }
}

/**
 * Accumulates one output stream (stdout, stderr or a terminal) of a process.
 *
 * `feed(bytes)` keeps the raw bytes and decodes them incrementally as UTF-8 (invalid bytes
 * become U+FFFD); with `lines` it returns the lines completed by this chunk, without their
 * trailing newline. `finish()` decodes what is pending and returns a last partial line.
 * `gap(marker)` records lost output: the pending partial line is flushed, the decoder
 * restarted, and `marker` is added to the text on a line of its own (and returned as a line).
 */
export class OutputBuffer {
  private chunks: Uint8Array[] = [];
  private size = 0;
  private texts: string[] = [];
  private decoder = new TextDecoder("utf-8");
  private partial: string[] = [];
  private endsWithNewline = true;

  constructor(private readonly lines: boolean) {}

  /** Every byte received so far. */
  get bytes(): Uint8Array {
    if (this.chunks.length > 1) this.chunks = [concatBytes(this.chunks, this.size)];
    return this.chunks[0] ?? new Uint8Array(0);
  }

  /** Everything received so far, decoded (a split character at the end is pending). */
  get text(): string {
    if (this.texts.length > 1) this.texts = [this.texts.join("")];
    return this.texts[0] ?? "";
  }

  /** Adds a chunk of output; returns the lines it completed. */
  feed(data: Uint8Array): string[] {
    if (data.byteLength) {
      this.chunks.push(data);
      this.size += data.byteLength;
    }
    return this.addText(this.decoder.decode(data, { stream: true }));
  }

  /** The stream ended: decodes what is pending; returns the last partial line. */
  finish(): string[] {
    const out = this.addText(this.decoder.decode());
    if (this.partial.length) {
      out.push(this.partial.join(""));
      this.partial = [];
    }
    return out;
  }

  /** Records that output was lost here; returns the lines completed (see above). */
  gap(marker: string): string[] {
    const out = this.finish();
    if (!this.endsWithNewline) {
      this.texts.push("\n");
      this.endsWithNewline = true;
    }
    return out.concat(this.addText(marker + "\n"));
  }

  private addText(s: string): string[] {
    if (!s) return [];
    this.texts.push(s);
    this.endsWithNewline = s.endsWith("\n");
    if (!this.lines) return [];
    if (!s.includes("\n")) {
      this.partial.push(s);
      return [];
    }
    const pieces = s.split("\n");
    pieces[0] = this.partial.join("") + pieces[0];
    const last = pieces.pop() as string;
    this.partial = last ? [last] : [];
    return pieces;
  }
}
