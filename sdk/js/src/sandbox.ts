/**
 * The `Sandbox` client: create, connect, list, timeouts, pause and resume, kill, preview
 * hosts, the `commands`, `pty` and `files` namespaces, and running code (`runCode` and the
 * code contexts).
 */

import {
  CodeApi,
  Context,
  ContextRef,
  CreateContextOpts,
  Execution,
  RunCodeOpts,
} from "./code.js";
import { Commands } from "./commands.js";
import { InvalidArgumentError, NotFoundError, SandboxError, isObject } from "./errors.js";
import { Files } from "./files.js";
import { Pty } from "./pty.js";
import {
  CallOpts,
  ConnectionOpts,
  Query,
  Transport,
  resolveDomain,
  sandboxPath,
} from "./transport.js";

/** A sandbox's state. */
export type SandboxState =
  | "creating"
  | "running"
  | "paused"
  | "pausing"
  | "resuming"
  | "killed"
  | "error";

/**
 * The engine's sandbox object, as it sends it (snake_case fields): what `getInfo()` and
 * `Sandbox.list()` resolve to. Fields a newer engine adds are there too, untyped.
 */
export interface SandboxInfo {
  /** `sbx_` + 20 characters of `[a-z0-9]`. */
  id: string;
  template: string;
  /**
   * The version of the template it was created on (`ai2ind template list`), on which it
   * always starts again, resumes included; null for a template built before versions.
   */
  template_version: string | null;
  state: SandboxState;
  created_at: string;
  /** When it last started: created, or resumed. */
  started_at: string | null;
  /**
   * Hard lifetime in seconds set at create, by `setTimeout` or at resume (the engine caps
   * more than 86400, 24 h, to 86400), or null.
   */
  timeout: number | null;
  /** The hard deadline, or null (always null while paused). */
  deadline: string | null;
  /** Seconds of inactivity before the engine reaps a sandbox without a deadline. */
  idle_timeout: number;
  last_activity_at: string | null;
  /**
   * When it will die if nothing else happens: its `deadline` if it has one, else
   * `last_activity_at` + `idle_timeout` (moved by activity). Null unless creating or running.
   */
  end_at: string | null;
  /**
   * Which rule ends it at `end_at`: `"timeout"`, its hard deadline (it lives until then,
   * active or not, and is never reaped as idle), or `"idle"`, the idle timeout (no
   * deadline). Null, like `end_at`, unless creating or running (a paused sandbox ends by
   * neither).
   */
  end_reason: "timeout" | "idle" | null;
  metadata: Record<string, string>;
  cpu_count: number;
  memory_mb: number;
  /**
   * The limit in MiB of everything it writes (kept across pause and resume); null for a
   * sandbox made by an engine from before disk limits.
   */
  disk_mb: number | null;
  /** Only from `getInfo()`: MiB its files take now (null without a disk limit). */
  disk_used_mb?: number | null;
  /** Only from `getInfo()`: MiB of its memory on disk while paused with `keepMemory` on gVisor, else null. */
  memory_image_mb?: number | null;
  /** The reason, when `state` is `"error"`. */
  error: string | null;
  /** `"filesystem"` or `"memory"` while paused, else null. */
  pause_kind: "filesystem" | "memory" | null;
  /** The runtime its containers run on: `"runc"` or `"gvisor"`. */
  runtime: "runc" | "gvisor";
  /** Created with `secure: true`: preview requests must carry `traffic_access_token`. */
  secure: boolean;
  /** A secure sandbox's token for the `X-Ai2in-Traffic-Token` header; null otherwise. */
  traffic_access_token: string | null;
  /**
   * Where the engine serves preview URLs (its `preview-scheme` and `preview-domain`), or
   * null when it runs no preview proxy.
   */
  preview: { scheme: "http" | "https"; domain: string } | null;
  /**
   * What the sandbox may reach: `allow_internet_access` as created (or the engine's
   * default), and its own `allowOut` / `denyOut` rules (normalized CIDRs, and lower-case
   * domains in `allow_out`; empty when none).
   */
  network: { allow_internet_access: boolean; allow_out: string[]; deny_out: string[] };
}

/** Options of `Sandbox.create`. */
export interface SandboxOpts extends ConnectionOpts {
  /** Template name (the engine's default is `"base"`). */
  template?: string;
  /**
   * Hard lifetime in milliseconds (sent as whole seconds, rounded up; the engine caps more
   * than 24 h to 24 h): the sandbox lives until then, active or not. Left out, it lives until
   * killed or idle-reaped.
   */
  timeoutMs?: number;
  /** String → string labels, echoed by `getInfo()` and filterable in `Sandbox.list()`. */
  metadata?: Record<string, string>;
  /** Environment variables set in every command (never echoed back). */
  envs?: Record<string, string>;
  /** CPUs (0.1..64; engine default 1). */
  cpuCount?: number;
  /** Memory limit in MiB (64..65536; engine default 512). */
  memoryMb?: number;
  /**
   * Disk limit in MiB of everything the sandbox writes, kept across pause and resume (16 up
   * to the engine's `max-disk-mb`; engine default 2048). Past it, writes inside fail with
   * "Disk quota exceeded".
   */
  diskMb?: number;
  /**
   * Require a token on preview requests: the sandbox then has a `trafficAccessToken`, which
   * a preview request must carry in the `X-Ai2in-Traffic-Token` header.
   */
  secure?: boolean;
  /**
   * `false`: the sandbox reaches nothing beyond itself (a connection out fails at once);
   * `true`: the internet through the engine's NAT, never the host, other sandboxes,
   * 169.254.0.0/16 or the engine's `deny-out` ranges. Left out: the engine's
   * `internet-access` setting (on unless its operator turned it off). Kept across pause and
   * resume; shown in `getInfo().network`.
   */
  allowInternetAccess?: boolean;
  /**
   * Rules of the sandbox's own: `allowOut`, IPv4 CIDRs and domains (`"pypi.org"`,
   * `"*.githubusercontent.com"`: every name below it) it reaches even without internet
   * access, a domain meaning the addresses the engine's DNS forwarder answers for it, kept
   * current as they change; `denyOut`, IPv4 CIDRs it never reaches (no domains: an address
   * can be reached without its name). `allowOut` wins over `denyOut`; the engine's own deny
   * list wins over both.
   */
  network?: { allowOut?: string[]; denyOut?: string[] };
  /**
   * `"runc"` (a Linux container) or `"gvisor"` (gVisor's user-space kernel between the
   * sandbox and the host's). Left out: the engine's default (its `--runtime`). Shown in
   * `getInfo().runtime`.
   */
  runtime?: "runc" | "gvisor";
  /** Aborts the call. */
  signal?: AbortSignal;
}

/** Options of `Sandbox.connect`. */
export interface SandboxConnectOpts extends ConnectionOpts {
  signal?: AbortSignal;
}

/** Options of `Sandbox.list`. */
export interface SandboxListOpts extends ConnectionOpts {
  /** A state or states to include (default running and paused, and the states between). */
  state?: SandboxState | SandboxState[];
  /** Only sandboxes whose metadata has all these key/value pairs. */
  metadata?: Record<string, string>;
  /** Sandboxes fetched per request (1..1000; engine default 100). */
  pageSize?: number;
  signal?: AbortSignal;
}

/** Options of `pause`. */
export interface PauseOpts extends CallOpts {
  /**
   * Keep every process's memory too: `resume()` continues them where they were, at the same
   * address. On runc they are frozen (cgroup freezer: no CPU, resumed in milliseconds, still
   * counted against the running cap); on gVisor (`runtime: "gvisor"`) the memory is
   * checkpointed to disk (no CPU, no RAM, not in the cap; resume takes about a second).
   * `getInfo().pause_kind` says `"memory"` (else `"filesystem"`).
   */
  keepMemory?: boolean;
}

/** Options of `resume`. */
export interface ResumeOpts extends CallOpts {
  /**
   * A new hard lifetime in milliseconds counted from now (the engine caps more than 24 h to
   * 24 h); left out, the sandbox's own.
   */
  timeoutMs?: number;
}

const LIST_PAGE_SIZE = 100;

/** Milliseconds as the engine's whole seconds, rounded up. */
function seconds(ms: number): number {
  if (typeof ms !== "number" || Number.isNaN(ms)) throw new TypeError(`timeoutMs must be a number, not ${String(ms)}`);
  return Math.ceil(ms / 1000);
}

function callOpts(opts: CallOpts): { signal?: AbortSignal | undefined; timeoutMs?: number | undefined } {
  return { signal: opts.signal, timeoutMs: opts.requestTimeoutMs };
}

/**
 * An isolated Linux sandbox on an AI2IN engine.
 *
 * `await Sandbox.create(opts)` creates a new one; `await Sandbox.connect(id, opts)` attaches
 * to an existing one. Every method takes an options object whose `signal` aborts the call.
 *
 * ```ts
 * const sbx = await Sandbox.create({ apiKey: "ai2in_live_…", timeoutMs: 300_000 });
 * console.log((await sbx.commands.run("uname -a")).stdout);
 * await sbx.kill();
 * ```
 */
export class Sandbox {
  /** Run shell commands: `run`, `connect`, `list`, `kill`, `sendStdin`... */
  readonly commands: Commands;
  /** Interactive terminals: `create`, `connect`, `sendInput`, `resize`, `kill`. */
  readonly pty: Pty;
  /** The sandbox's file system. */
  readonly files: Files;
  /**
   * With `secure: true` at create: the token a preview request must carry in the
   * `X-Ai2in-Traffic-Token` header; undefined otherwise.
   */
  readonly trafficAccessToken: string | undefined;
  private readonly _id: string;
  private readonly transport: Transport;
  private readonly domain: string;
  private readonly scheme: "http" | "https";
  private readonly code: CodeApi;

  /** @internal Use `Sandbox.create` or `Sandbox.connect`. */
  constructor(info: SandboxInfo, transport: Transport, domain: string | undefined) {
    this._id = info.id;
    this.transport = transport;
    const preview = info.preview && typeof info.preview === "object" ? info.preview : null;
    this.domain = resolveDomain(domain, typeof preview?.domain === "string" ? preview.domain : undefined);
    this.scheme = preview?.scheme === "https" ? "https" : "http";
    const token = info.traffic_access_token;
    this.trafficAccessToken = typeof token === "string" ? token : undefined;
    this.commands = new Commands(this._id, transport);
    this.pty = new Pty(this._id, transport);
    this.files = new Files(this._id, transport);
    this.code = new CodeApi(this._id, transport);
  }

  /**
   * Creates a sandbox (`POST /v1/sandboxes`) and resolves once it is running.
   *
   * @throws AuthenticationError no key, or a wrong one.
   * @throws InvalidArgumentError bad options (the engine's message).
   * @throws NotFoundError unknown template.
   * @throws RateLimitError the team's running cap is reached.
   */
  static create<S extends typeof Sandbox>(this: S, opts?: SandboxOpts): Promise<InstanceType<S>>;
  static create<S extends typeof Sandbox>(this: S, template: string, opts?: SandboxOpts): Promise<InstanceType<S>>;
  static async create<S extends typeof Sandbox>(
    this: S,
    templateOrOpts?: string | SandboxOpts,
    maybeOpts?: SandboxOpts,
  ): Promise<InstanceType<S>> {
    const opts: SandboxOpts = typeof templateOrOpts === "string"
      ? { ...maybeOpts, template: templateOrOpts }
      : { ...templateOrOpts };
    const transport = new Transport(opts);
    const body: Record<string, unknown> = {};
    if (opts.template !== undefined) body["template"] = opts.template;
    if (opts.timeoutMs !== undefined) body["timeout"] = seconds(opts.timeoutMs);
    if (opts.metadata !== undefined) body["metadata"] = { ...opts.metadata };
    if (opts.envs !== undefined) body["envs"] = { ...opts.envs };
    if (opts.cpuCount !== undefined) body["cpu_count"] = opts.cpuCount;
    if (opts.memoryMb !== undefined) body["memory_mb"] = opts.memoryMb;
    if (opts.diskMb !== undefined) body["disk_mb"] = opts.diskMb;
    if (opts.secure) body["secure"] = true;
    if (opts.allowInternetAccess !== undefined) body["allow_internet_access"] = opts.allowInternetAccess;
    if (opts.runtime !== undefined) body["runtime"] = opts.runtime;
    if (opts.network !== undefined) {
      const network: Record<string, string[]> = {};
      if (opts.network.allowOut !== undefined) network["allow_out"] = [...opts.network.allowOut];
      if (opts.network.denyOut !== undefined) network["deny_out"] = [...opts.network.denyOut];
      body["network"] = network;
    }
    const info = expectSandbox(await transport.request("POST", "/v1/sandboxes", { body, signal: opts.signal }));
    return new this(info, transport, opts.domain) as InstanceType<S>;
  }

  /**
   * Attaches to an existing sandbox by id (running or paused); never creates one.
   *
   * @throws NotFoundError no such sandbox for this team (or it was killed).
   * @throws InvalidArgumentError `sandboxId` is not a well-formed id.
   */
  static async connect<S extends typeof Sandbox>(this: S, sandboxId: string, opts: SandboxConnectOpts = {}): Promise<InstanceType<S>> {
    const transport = new Transport(opts);
    const info = expectSandbox(await transport.request("GET", sandboxPath(sandboxId), { signal: opts.signal }));
    return new this(info, transport, opts.domain) as InstanceType<S>;
  }

  /**
   * This team's sandboxes (running and paused by default), oldest first, as the engine's
   * plain objects; follows `next_token` pages to the end.
   */
  static async list(opts: SandboxListOpts = {}): Promise<SandboxInfo[]> {
    const transport = new Transport(opts);
    const base: Query = [];
    if (opts.state !== undefined) {
      base.push(["state", (Array.isArray(opts.state) ? opts.state : [opts.state]).join(",")]);
    }
    for (const [k, v] of Object.entries(opts.metadata ?? {})) base.push([`metadata.${k}`, v]);
    base.push(["limit", String(opts.pageSize ?? LIST_PAGE_SIZE)]);
    const out: SandboxInfo[] = [];
    let token: string | undefined;
    for (;;) {
      const query: Query = token ? [...base, ["next_token", token]] : base;
      const doc = await transport.request("GET", "/v1/sandboxes", { query, signal: opts.signal });
      const page = isObject(doc) ? doc["sandboxes"] : undefined;
      if (!Array.isArray(page)) throw new SandboxError(`unexpected answer to list: ${JSON.stringify(doc).slice(0, 200)}`);
      out.push(...(page as SandboxInfo[]));
      const next = isObject(doc) ? doc["next_token"] : undefined;
      if (typeof next !== "string" || !next) return out;
      token = next;
    }
  }

  /** The sandbox id, `sbx_` + 20 characters. */
  get id(): string {
    return this._id;
  }

  /** The sandbox id (alias of `id`). */
  get sandboxId(): string {
    return this._id;
  }

  /** The URL of the engine this sandbox lives on. */
  get apiUrl(): string {
    return this.transport.apiUrl;
  }

  /**
   * The host at which `port` inside the sandbox is reachable through the engine's preview
   * proxy: `${port}-${id}.${domain}` with the id's `_` as `-` (a host name has no `_`, and
   * a wildcard certificate `*.${domain}` matches only a valid one), e.g.
   * `8000-sbx-….localhost:7301`; the domain from the `domain` option, else `AI2IN_DOMAIN`,
   * else the engine's (`preview-domain`, by default `localhost:7301`). The proxy takes the
   * id's own form (`8000-sbx_…`) too.
   */
  getHost(port: number): string {
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new InvalidArgumentError(`port must be an integer in 1..65535, got ${String(port)}`);
    }
    return `${port}-${this._id.replace(/_/g, "-")}.${this.domain}`;
  }

  /**
   * The preview URL of `port`: `${scheme}://${getHost(port)}/`, e.g.
   * `http://8000-sbx-….localhost:7301/`, with the scheme the engine serves preview URLs on
   * (`preview-scheme`). Opens with `fetch`, curl or a browser on the engine's machine.
   */
  getUrl(port: number): string {
    return `${this.scheme}://${this.getHost(port)}/`;
  }

  /**
   * The engine's sandbox object, as a plain object with its snake_case fields
   * (`(await sbx.getInfo()).end_at`; `end_reason` says whether the hard deadline or the idle
   * timeout ends it).
   *
   * @throws NotFoundError the sandbox is gone.
   */
  async getInfo(opts: CallOpts = {}): Promise<SandboxInfo> {
    return expectSandbox(await this.transport.request("GET", sandboxPath(this._id), callOpts(opts)));
  }

  /** True if the sandbox exists and its state is `running`. */
  async isRunning(opts: CallOpts = {}): Promise<boolean> {
    try {
      return (await this.getInfo(opts)).state === "running";
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }

  /**
   * Sets the hard deadline to now + `timeoutMs` (sent as whole seconds, rounded up),
   * extending or shortening the sandbox's life; it then lives until the deadline, active or
   * not. More than 24 h is capped to 24 h by the engine, not refused: `getInfo()` shows the
   * deadline that applies. On a paused sandbox it sets the lifetime `resume()` arms.
   *
   * @throws InvalidArgumentError `timeoutMs` is 0 or negative (the engine's message says so).
   * @throws NotFoundError the sandbox is gone.
   */
  async setTimeout(timeoutMs: number, opts: CallOpts = {}): Promise<void> {
    await this.transport.request("POST", sandboxPath(this._id, "/timeout"), {
      body: { timeout: seconds(timeoutMs) },
      ...callOpts(opts),
    });
  }

  /**
   * Pauses the sandbox: by default the container and every process in it stop (no CPU, no
   * RAM) while the whole filesystem is kept; what was only in memory is lost. A paused
   * sandbox counts against no running cap and is never reaped. Pausing a paused sandbox
   * changes nothing. Resolves to the engine's answer, `{ status: "paused" }`.
   *
   * @throws NotFoundError the sandbox is gone.
   * @throws ConflictError the sandbox is neither running nor paused (e.g. in error); or, on
   *   gVisor with `keepMemory`, it holds what a checkpoint cannot save (a TCP connection from
   *   outside, a unix socket on its disk: the message lists them), and it keeps running.
   */
  async pause(opts: PauseOpts = {}): Promise<{ status: string }> {
    return expectStatus(await this.transport.request("POST", sandboxPath(this._id, "/pause"), {
      body: { keep_memory: opts.keepMemory === true },
      ...callOpts(opts),
    }));
  }

  /**
   * Resumes a paused sandbox on the filesystem it had, with fresh processes (the code
   * kernel starts anew); works from any Sandbox object, e.g. one from `Sandbox.connect(id)`.
   * If it has a timeout, the hard deadline is set again from now. Resuming a running sandbox
   * changes nothing. Resolves to the engine's answer, `{ status: "running" }`.
   *
   * @throws RateLimitError the team's running cap is reached (the sandbox stays paused).
   * @throws NotFoundError the sandbox is gone (killed).
   * @throws ConflictError the sandbox is in error (kill it) or still being created.
   */
  async resume(opts: ResumeOpts = {}): Promise<{ status: string }> {
    const body: Record<string, unknown> = {};
    if (opts.timeoutMs !== undefined) body["timeout"] = seconds(opts.timeoutMs);
    return expectStatus(await this.transport.request("POST", sandboxPath(this._id, "/resume"), {
      body,
      ...callOpts(opts),
    }));
  }

  /**
   * Kills the sandbox and deletes its filesystem. Resolves to true if it was killed now,
   * false if it was already gone.
   */
  async kill(opts: CallOpts = {}): Promise<boolean> {
    try {
      await this.transport.request("DELETE", sandboxPath(this._id), callOpts(opts));
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
    return true;
  }

  // -- running code --------------------------------------------------------------------------

  /**
   * Runs code in a context and resolves once it has finished, after every callback has run
   * (in the order of the events; a callback's promise is awaited before the next event).
   *
   * State (variables, imports, the working directory) persists from one call to the next in
   * the same context, also for other Sandbox objects connected to the same sandbox. An error
   * the code raises is a result (`execution.error`), not a rejection. If a callback throws,
   * or `signal` aborts, the execution is interrupted and the call rejects with that error.
   *
   * @throws InvalidArgumentError empty code, unknown language, bad envs (engine's message),
   *   or `language` conflicting with `context`.
   * @throws NotFoundError unknown or removed context, or the sandbox is gone.
   * @throws ConflictError the sandbox is not running.
   */
  runCode(code: string, opts: RunCodeOpts = {}): Promise<Execution> {
    return this.code.run(code, opts);
  }

  /**
   * Starts a new context (a fresh interpreter) and resolves once it can run code.
   *
   * @throws InvalidArgumentError unknown language or user, missing `cwd`.
   */
  createCodeContext(opts: CreateContextOpts = {}): Promise<Context> {
    return this.code.createContext(opts);
  }

  /** The sandbox's contexts, the default ones that have started included (`default` true). */
  listCodeContexts(opts: CallOpts = {}): Promise<Context[]> {
    return this.code.listContexts(opts);
  }

  /**
   * Replaces the context's interpreter with a fresh one: its state is gone.
   *
   * @throws NotFoundError no such context.
   */
  restartCodeContext(context: ContextRef, opts: CallOpts = {}): Promise<Context> {
    return this.code.restartContext(context, opts);
  }

  /**
   * Stops the context's interpreter and forgets the context. A default context comes back,
   * fresh, on next use.
   *
   * @throws NotFoundError no such context.
   */
  removeCodeContext(context: ContextRef, opts: CallOpts = {}): Promise<void> {
    return this.code.removeContext(context, opts);
  }
}

function expectStatus(doc: unknown): { status: string } {
  if (!isObject(doc) || typeof doc["status"] !== "string") {
    throw new SandboxError(`unexpected answer from the engine (no status): ${JSON.stringify(doc).slice(0, 200)}`);
  }
  return doc as { status: string };
}

function expectSandbox(doc: unknown): SandboxInfo {
  if (!isObject(doc) || typeof doc["id"] !== "string") {
    throw new SandboxError(`unexpected answer from the engine (no sandbox object): ${JSON.stringify(doc).slice(0, 200)}`);
  }
  return doc as unknown as SandboxInfo;
}
