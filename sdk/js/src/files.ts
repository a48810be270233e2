/**
 * The sandbox's file system: `sbx.files.write(path, data)`, `read`, `list`, `watchDir`...
 *
 * Paths are absolute or relative to `/home/sandbox` and are resolved by the sandbox's agent
 * inside the sandbox (so `..` and symlinks never leave it). Every call takes `user` and then
 * acts with that user's permissions. Transfers stream in both directions: `write` sends a
 * `ReadableStream`, a `Blob` or an async iterable without loading it whole, and
 * `read(path, { format: "stream" })` resolves to a `ReadableStream` of the file's bytes as they
 * arrive.
 */

import { NotFoundError, SandboxError, isObject } from "./errors.js";
import { EventStream, concatBytes } from "./stream.js";
import { CallOpts, Query, RawBody, Transport, sandboxPath } from "./transport.js";

/** What `write` accepts as a file's content. */
export type WriteData =
  | string
  | ArrayBuffer
  | ArrayBufferView
  | Blob
  | ReadableStream<Uint8Array | string>
  | AsyncIterable<Uint8Array | string>;

/** One file for `write([...])` / `writeFiles`. */
export interface WriteEntry {
  path: string;
  data: WriteData;
}

/** The type of a file system entry. */
export type FileType = "file" | "dir" | "symlink" | "other";

/**
 * A file system entry as the sandbox sees it (`lstat`: a symlink is described, not followed).
 */
export interface EntryInfo {
  /** The last path component. */
  name: string;
  /** The absolute, normalized path. */
  path: string;
  type: FileType;
  /** Size in bytes. */
  size: number;
  /** The permission bits as an integer (e.g. `0o644`). */
  mode: number;
  /** Like `"-rw-r--r--"`. */
  permissions: string;
  owner: string;
  group: string;
  /** The modification time, if the engine sent one. */
  modifiedTime: Date | undefined;
  /** Where a symlink points; undefined for anything else. */
  symlinkTarget: string | undefined;
}

/** The kinds of change `watchDir` reports. */
export type FilesystemEventType = "create" | "write" | "remove" | "chmod" | "rename";

/** A change seen by `watchDir`. */
export interface FilesystemEvent {
  type: FilesystemEventType;
  /** The absolute path of the entry (for a rename, its old path). */
  path: string;
  /** For a rename, the new path. */
  newPath: string | undefined;
  /** The last component of `path`. */
  name: string;
}

/** Options of every files call. */
export interface FilesOpts extends CallOpts {
  /** Act with this user's permissions (default `root`); what it creates is its own. */
  user?: string;
}

/** Options of `read`. */
export interface ReadOpts extends FilesOpts {
  /**
   * `"text"` (the default; decoded as UTF-8, invalid bytes replaced), `"bytes"` (a
   * `Uint8Array`), `"blob"` (a `Blob`), or `"stream"`: a `ReadableStream<Uint8Array>` that
   * downloads as it is read (cancel it to stop early).
   */
  format?: "text" | "bytes" | "blob" | "stream";
}

/** Options of `watchDir`. */
export interface WatchOpts extends FilesOpts {
  /** Watch subdirectories too, including ones created later. */
  recursive?: boolean;
  /**
   * Called once when the watch ends: with no argument after `stop()`, with the error when it
   * failed (e.g. the directory was removed). Aborting `signal` stops the watch too.
   */
  onExit?: (err?: unknown) => unknown;
}

/**
 * A live watch of a directory (from `files.watchDir`). Events are collected in the
 * background: `getNewEvents()` returns those not returned before, `onEvent` (if given) is
 * called with each as it arrives, and `stop()` ends the watch. While it runs, its open
 * connection keeps a Node.js process alive.
 */
export class WatchHandle {
  private events: FilesystemEvent[] = [];
  private error: { error: unknown } | undefined;
  private stopped = false;
  private live = true;
  private readonly reading: Promise<void>;

  /** @internal */
  constructor(
    private readonly stream: EventStream,
    private readonly path: string,
    private readonly onEvent: ((ev: FilesystemEvent) => unknown) | undefined,
    private readonly onExit: ((err?: unknown) => unknown) | undefined,
  ) {
    this.reading = this.read();
  }

  private async read(): Promise<void> {
    let failure: { error: unknown } | undefined;
    try {
      for (;;) {
        const ev = await this.stream.next();
        if (ev === null) break;
        if (ev.type === "error") {
          throw new SandboxError(`watching ${this.path} failed: ${String(ev["message"] || "unknown error")}`);
        }
        const p = ev["path"];
        if (ev.type === "start" || typeof p !== "string") continue;
        const np = ev["new_path"];
        const fe: FilesystemEvent = {
          type: ev.type as FilesystemEventType,
          path: p,
          newPath: typeof np === "string" ? np : undefined,
          name: basename(p),
        };
        this.events.push(fe);
        if (this.onEvent) await this.onEvent(fe);
      }
      if (!this.stream.closed) {
        throw new SandboxError(`the watch of ${this.path} ended (was the directory removed?)`);
      }
    } catch (e) {
      failure = { error: e };
      if (!this.stopped) this.error = failure;
    } finally {
      this.live = false;
      this.stream.close();
    }
    if (this.onExit) {
      try {
        await (this.stopped || !failure ? this.onExit() : this.onExit(failure.error));
      } catch {
        // a failing onExit has no one to tell
      }
    }
  }

  /** True while the watch is live (not stopped, no error). */
  get running(): boolean {
    return this.live;
  }

  /**
   * The events that arrived since the last call, oldest first.
   *
   * @throws SandboxError the watch failed (once the events before the failure are returned).
   */
  getNewEvents(): FilesystemEvent[] {
    const out = this.events;
    this.events = [];
    if (!out.length && this.error !== undefined && !this.stopped) {
      const err = this.error.error;
      this.error = undefined;
      throw err;
    }
    return out;
  }

  /** Ends the watch; resolves once it has stopped. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stream.close();
    await this.reading;
  }
}

function basename(p: string): string {
  const trimmed = p.replace(/\/+$/, "");
  return trimmed.slice(trimmed.lastIndexOf("/") + 1) || trimmed;
}

/** The engine's JSON entry as an EntryInfo. */
export function entryInfo(doc: unknown): EntryInfo {
  if (!isObject(doc) || typeof doc["path"] !== "string") {
    throw new SandboxError(`unexpected file entry from the engine: ${JSON.stringify(doc).slice(0, 200)}`);
  }
  const s = (k: string): string => (typeof doc[k] === "string" ? (doc[k] as string) : "");
  const n = (k: string): number => (typeof doc[k] === "number" ? (doc[k] as number) : 0);
  const path = doc["path"];
  const mtime = doc["modified_time"];
  const target = doc["symlink_target"];
  const t = s("type");
  return {
    name: s("name") || basename(path),
    path,
    type: (["file", "dir", "symlink"].includes(t) ? t : "other") as FileType,
    size: n("size"),
    mode: n("mode"),
    permissions: s("permissions"),
    owner: s("owner"),
    group: s("group"),
    modifiedTime: typeof mtime === "string" ? new Date(mtime) : undefined,
    symlinkTarget: typeof target === "string" ? target : undefined,
  };
}

function query(path: string, user: string | undefined, ...extra: Array<[string, string]>): Query {
  const q: Query = [["path", path]];
  if (user !== undefined) q.push(["user", user]);
  return q.concat(extra);
}

/** The `files` namespace of a sandbox. */
export class Files {
  /** @internal */
  constructor(private readonly sandboxId: string, private readonly transport: Transport) {}

  private p(suffix = ""): string {
    return sandboxPath(this.sandboxId, "/files" + suffix);
  }

  /**
   * Reads a file: as text (the default), bytes, a Blob, or a stream.
   *
   * @throws NotFoundError no such file.
   * @throws InvalidArgumentError the path is a directory, empty or has a NUL.
   */
  read(path: string, opts?: ReadOpts & { format?: "text" }): Promise<string>;
  read(path: string, opts: ReadOpts & { format: "bytes" }): Promise<Uint8Array>;
  read(path: string, opts: ReadOpts & { format: "blob" }): Promise<Blob>;
  read(path: string, opts: ReadOpts & { format: "stream" }): Promise<ReadableStream<Uint8Array>>;
  read(path: string, opts?: ReadOpts): Promise<string | Uint8Array | Blob | ReadableStream<Uint8Array>>;
  async read(path: string, opts: ReadOpts = {}): Promise<string | Uint8Array | Blob | ReadableStream<Uint8Array>> {
    const format = opts.format ?? "text";
    if (!["text", "bytes", "blob", "stream"].includes(format)) {
      throw new TypeError(`format must be "text", "bytes", "blob" or "stream", not ${JSON.stringify(format)}`);
    }
    const body = await this.transport.openDownload("GET", this.p(), {
      query: query(path, opts.user),
      signal: opts.signal,
      timeoutMs: opts.requestTimeoutMs,
    });
    if (format === "stream") return body;
    const parts: Uint8Array[] = [];
    let size = 0;
    const reader = body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parts.push(value);
      size += value.byteLength;
    }
    const bytes = concatBytes(parts, size);
    if (format === "bytes") return bytes;
    if (format === "blob") return new Blob([bytes]);
    return new TextDecoder().decode(bytes);
  }

  /**
   * Writes a file, creating missing parent directories; replaces it atomically (a reader
   * never sees half a file; a failed upload leaves the old content). `data` is a string
   * (written as UTF-8), bytes, a `Blob`, a `ReadableStream` or an async iterable of chunks
   * (both streamed with chunked transfer encoding, never loaded whole). Given an array of
   * `{ path, data }`, writes each file in turn and resolves to their entries.
   *
   * @throws InvalidArgumentError the path is a directory, a parent is a file, the path is
   *   empty or has a NUL.
   * @throws SandboxError status 403 when `user` may not write there.
   */
  write(path: string, data: WriteData, opts?: FilesOpts): Promise<EntryInfo>;
  write(files: WriteEntry[], opts?: FilesOpts): Promise<EntryInfo[]>;
  async write(
    pathOrFiles: string | WriteEntry[],
    dataOrOpts?: WriteData | FilesOpts,
    maybeOpts: FilesOpts = {},
  ): Promise<EntryInfo | EntryInfo[]> {
    if (Array.isArray(pathOrFiles)) return this.writeFiles(pathOrFiles, (dataOrOpts as FilesOpts | undefined) ?? {});
    const opts = maybeOpts;
    const doc = await this.transport.request("PUT", this.p(), {
      query: query(pathOrFiles, opts.user),
      raw: rawBody(dataOrOpts as WriteData),
      signal: opts.signal,
      timeoutMs: opts.requestTimeoutMs,
    });
    return entryInfo(doc);
  }

  /** Writes several files, one after the other, each as `write` would. */
  async writeFiles(files: WriteEntry[], opts: FilesOpts = {}): Promise<EntryInfo[]> {
    const out: EntryInfo[] = [];
    for (const f of files) out.push(await this.write(f.path, f.data, opts));
    return out;
  }

  /**
   * Describes a file, directory or symlink (not followed).
   *
   * @throws NotFoundError nothing there.
   */
  async getInfo(path: string, opts: FilesOpts = {}): Promise<EntryInfo> {
    return entryInfo(await this.transport.request("GET", this.p("/info"), {
      query: query(path, opts.user),
      signal: opts.signal,
      timeoutMs: opts.requestTimeoutMs,
    }));
  }

  /** True if something (a file, directory, symlink...) is at `path`. */
  async exists(path: string, opts: FilesOpts = {}): Promise<boolean> {
    try {
      await this.getInfo(path, opts);
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
    return true;
  }

  /**
   * Lists a directory, sorted by path. `depth` 1 (the default) lists its own entries, up to
   * 16 descends into subdirectories (symlinked directories are not descended).
   *
   * @throws NotFoundError no such directory.
   * @throws InvalidArgumentError not a directory, or `depth` out of range.
   */
  async list(path: string, opts: FilesOpts & { depth?: number } = {}): Promise<EntryInfo[]> {
    const doc = await this.transport.request("GET", this.p("/list"), {
      query: query(path, opts.user, ["depth", String(opts.depth ?? 1)]),
      signal: opts.signal,
      timeoutMs: opts.requestTimeoutMs,
    });
    const entries = isObject(doc) ? doc["entries"] : undefined;
    if (!Array.isArray(entries)) {
      throw new SandboxError(`unexpected answer to a file list in ${this.sandboxId}: ${JSON.stringify(doc).slice(0, 200)}`);
    }
    return entries.map(entryInfo);
  }

  /**
   * Creates a directory and its missing parents; resolves to true if it was created, false
   * if it already was a directory.
   *
   * @throws ConflictError a file is there.
   */
  async makeDir(path: string, opts: FilesOpts = {}): Promise<boolean> {
    const body: Record<string, unknown> = { path };
    if (opts.user !== undefined) body["user"] = opts.user;
    const doc = await this.transport.request("POST", this.p("/mkdir"), {
      body,
      signal: opts.signal,
      timeoutMs: opts.requestTimeoutMs,
    });
    return isObject(doc) && doc["created"] === true;
  }

  /**
   * Moves `oldPath` to `newPath` (replacing a file there); resolves to the entry at its new
   * path.
   *
   * @throws NotFoundError nothing at `oldPath`.
   */
  async rename(oldPath: string, newPath: string, opts: FilesOpts = {}): Promise<EntryInfo> {
    const body: Record<string, unknown> = { from: oldPath, to: newPath };
    if (opts.user !== undefined) body["user"] = opts.user;
    return entryInfo(await this.transport.request("POST", this.p("/rename"), {
      body,
      signal: opts.signal,
      timeoutMs: opts.requestTimeoutMs,
    }));
  }

  /**
   * Removes a file, a symlink (not what it points to) or a directory with everything in it.
   *
   * @throws NotFoundError nothing there.
   * @throws InvalidArgumentError `path` is `/`.
   */
  async remove(path: string, opts: FilesOpts = {}): Promise<void> {
    await this.transport.request("DELETE", this.p(), {
      query: query(path, opts.user),
      signal: opts.signal,
      timeoutMs: opts.requestTimeoutMs,
    });
  }

  /**
   * Watches a directory for changes; resolves once the watch is in place, so nothing that
   * happens after this call is missed.
   *
   * @throws NotFoundError no such directory.
   * @throws InvalidArgumentError not a directory.
   * @throws RateLimitError 16 watches are open in this sandbox already.
   */
  watchDir(path: string, onEvent?: (ev: FilesystemEvent) => unknown, opts?: WatchOpts): Promise<WatchHandle>;
  watchDir(path: string, opts?: WatchOpts): Promise<WatchHandle>;
  async watchDir(
    path: string,
    onEventOrOpts?: ((ev: FilesystemEvent) => unknown) | WatchOpts,
    maybeOpts: WatchOpts = {},
  ): Promise<WatchHandle> {
    const onEvent = typeof onEventOrOpts === "function" ? onEventOrOpts : undefined;
    const opts = typeof onEventOrOpts === "function" || onEventOrOpts === undefined ? maybeOpts : onEventOrOpts;
    const extra: Array<[string, string]> = opts.recursive ? [["recursive", "true"]] : [];
    const stream = await this.transport.openStream("GET", this.p("/watch"), {
      query: query(path, opts.user, ...extra),
      signal: opts.signal,
    });
    try {
      for (;;) {
        const ev = await stream.next();
        if (ev === null) {
          throw new SandboxError(`watching ${path} in ${this.sandboxId}: the stream ended before the watch started`);
        }
        if (ev.type === "start") break;
        if (ev.type === "error") {
          throw new SandboxError(`watching ${path} in ${this.sandboxId} failed: ${String(ev["message"] || "unknown error")}`);
        }
      }
    } catch (e) {
      stream.close();
      throw e;
    }
    return new WatchHandle(stream, path, onEvent, opts.onExit);
  }
}

/** The upload body for `data` (see `Files.write`). */
function rawBody(data: WriteData): RawBody {
  if (typeof data === "string") return { data: new TextEncoder().encode(data) };
  if (data instanceof Uint8Array) return { data };
  if (data instanceof ArrayBuffer) return { data: new Uint8Array(data) };
  if (ArrayBuffer.isView(data)) return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  if (typeof Blob !== "undefined" && data instanceof Blob) return { data: bytesStream(blobChunks(data)) };
  if (isReadableStream(data)) return { data: bytesStream(streamChunks(data)) };
  if (data !== null && typeof data === "object" && Symbol.asyncIterator in data) {
    return { data: bytesStream(data[Symbol.asyncIterator]()) };
  }
  throw new TypeError("data must be a string, an ArrayBuffer or view, a Blob, a ReadableStream or an async iterable of chunks");
}

function isReadableStream(v: unknown): v is ReadableStream<Uint8Array | string> {
  return typeof v === "object" && v !== null && typeof (v as { getReader?: unknown }).getReader === "function";
}

const BLOB_CHUNK = 256 * 1024;

async function* blobChunks(blob: Blob): AsyncIterator<Uint8Array> {
  for (let off = 0; off < blob.size; off += BLOB_CHUNK) {
    yield new Uint8Array(await blob.slice(off, off + BLOB_CHUNK).arrayBuffer());
  }
}

async function* streamChunks(stream: ReadableStream<Uint8Array | string>): AsyncIterator<Uint8Array | string> {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

/** A byte stream pulled from an iterator of chunks (strings become UTF-8). */
function bytesStream(it: AsyncIterator<Uint8Array | string | ArrayBufferView>): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      const { value, done } = await it.next();
      if (done) {
        controller.close();
        return;
      }
      if (typeof value === "string") controller.enqueue(enc.encode(value));
      else if (value instanceof Uint8Array) controller.enqueue(value);
      else if (ArrayBuffer.isView(value)) controller.enqueue(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
      else throw new TypeError(`the data stream yielded ${typeof value}, not bytes or a string`);
    },
    cancel: async () => {
      await it.return?.();
    },
  });
}
