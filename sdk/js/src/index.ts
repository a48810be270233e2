/**
 * AI2IN JavaScript/TypeScript SDK: isolated Linux sandboxes for AI agents, on your own
 * machine.
 *
 * ```ts
 * import { Sandbox } from "@ai2in/sdk";
 * const sbx = await Sandbox.create({ apiKey: "ai2in_live_…" });
 * console.log((await sbx.commands.run("echo hi")).stdout);
 * await sbx.files.write("/home/sandbox/a.txt", "hello");
 * console.log((await sbx.runCode("x = 41; x + 1")).text);
 * await sbx.kill();
 * ```
 */

export { Sandbox } from "./sandbox.js";
export type {
  PauseOpts,
  ResumeOpts,
  SandboxConnectOpts,
  SandboxInfo,
  SandboxListOpts,
  SandboxOpts,
  SandboxState,
} from "./sandbox.js";
export { CommandHandle, Commands } from "./commands.js";
export type { CommandConnectOpts, CommandStartOpts, ProcessInfo, ProcessStartOpts } from "./commands.js";
export { CommandResult, ProcessHandle } from "./process.js";
export type { OnData, OnLine, Signal, StdinData, WaitOpts } from "./process.js";
export { Pty, PtyHandle } from "./pty.js";
export type { PtyConnectOpts, PtyCreateOpts, PtySize } from "./pty.js";
export { Files, WatchHandle } from "./files.js";
export type {
  EntryInfo,
  FileType,
  FilesOpts,
  FilesystemEvent,
  FilesystemEventType,
  ReadOpts,
  WatchOpts,
  WriteData,
  WriteEntry,
} from "./files.js";
export { Execution, ExecutionError, MIME_FIELDS, OutputMessage, Result } from "./code.js";
export type { Context, ContextRef, CreateContextOpts, Logs, RunCodeOpts } from "./code.js";
export {
  AuthenticationError,
  CommandExitError,
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  RateLimitError,
  SandboxError,
  TimeoutError,
  UnavailableError,
} from "./errors.js";
export { DEFAULT_API_URL, DEFAULT_DOMAIN } from "./transport.js";
export type { CallOpts, ConnectionOpts } from "./transport.js";
export { VERSION } from "./version.js";
