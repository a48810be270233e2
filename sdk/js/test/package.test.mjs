// The package as a user gets it: `npm pack` makes a tarball with the ESM and CommonJS builds
// and their .d.ts; a consumer project installs it and `tsc --noEmit` type-checks a program
// written with the seed's calls (ESM and CommonJS), and mistakes in it are type errors (the
// `@ts-expect-error` lines: tsc fails if one of them compiles).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";

import { SDK_DIR } from "./helpers/engine.mjs";

const run = promisify(execFile);
const TSC = path.join(SDK_DIR, "node_modules", "typescript", "bin", "tsc");

let dir;
let tarball;
let files;

function npm(args, cwd) {
  return run("npm", args, { cwd, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ai2in-js-consumer-"));
  // dist/ is built already: the tests run against it.
  const { stdout } = await npm(["pack", "--json", "--ignore-scripts", "--pack-destination", dir], SDK_DIR);
  const info = JSON.parse(stdout)[0];
  tarball = path.join(dir, info.filename);
  files = info.files.map((f) => f.path);
});
after(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("npm pack: the builds, their types, the README and nothing else", () => {
  assert.ok(fs.existsSync(tarball), tarball);
  for (const f of ["package.json", "README.md", "dist/esm/index.js", "dist/esm/index.d.ts", "dist/cjs/index.js",
    "dist/cjs/index.d.ts", "dist/cjs/package.json"]) {
    assert.ok(files.includes(f), `${f} is missing from the tarball: ${files.join(", ")}`);
  }
  assert.deepEqual(files.filter((f) => !/^(dist\/(esm|cjs)\/|package\.json$|README\.md$)/.test(f)), [], "only dist, package.json, README");
  const pkg = JSON.parse(fs.readFileSync(path.join(SDK_DIR, "package.json"), "utf8"));
  assert.equal(pkg.name, "@ai2in/sdk");
  assert.deepEqual(pkg.dependencies ?? {}, {}, "no runtime dependencies");
});

const CONSUMER_MTS = `import {
  Sandbox,
  AuthenticationError, NotFoundError, RateLimitError, TimeoutError, CommandExitError, SandboxError,
  type CommandHandle, type CommandResult, type Execution, type EntryInfo, type SandboxInfo, type WatchHandle,
} from "@ai2in/sdk";

// The issue's snippet, word for word.
const sbx = await Sandbox.create({ apiKey: "ai2in_live_…" });
console.log(sbx.id);                                   // "sbx_…"
const s2 = await Sandbox.create({ apiKey: "…", timeoutMs: 300_000 });
await s2.setTimeout(3_600_000);                        // capped at 24h
(await s2.getInfo()).end_at;
const again = await Sandbox.connect("sbx_…", { apiKey: "…" });
await again.resume();
await again.runCode("print('still here')");
await sbx.pause(); await sbx.resume(); await sbx.kill();
await Sandbox.list();

// The rest of the surface, with the types a user relies on.
const endAt: string | null = (await s2.getInfo()).end_at;
const endReason: "timeout" | "idle" | null = (await s2.getInfo()).end_reason;
const all: SandboxInfo[] = await Sandbox.list({ state: ["running", "paused"], metadata: { a: "b" } });
const ac = new AbortController();
const ex: Execution = await sbx.runCode("1 + 1", {
  language: "python", context: await sbx.createCodeContext({ cwd: "/tmp" }), envs: { A: "1" }, timeoutMs: 1000,
  onStdout: (m) => console.log(m.line, m.timestamp), onStderr: async (m) => { m.error; },
  onResult: (r) => r.png, onError: (e) => e.traceback, signal: ac.signal,
});
const text: string | undefined = ex.text;
const count: number | undefined = ex.executionCount;
ex.results[0]?.formats(); ex.logs.stdout.join(""); ex.error?.name;
const r: CommandResult = await sbx.commands.run("ls", { cwd: "/", user: "sandbox", onStdout: (l: string) => l });
const h: CommandHandle = await sbx.commands.run("sleep 9", { background: true, stdin: true });
await h.sendStdin(new Uint8Array([1])); await h.closeStdin(); await h.kill();
const done: CommandResult = await h.wait({ timeoutMs: 10 });
await sbx.commands.sendStdin(h.pid, "x"); await sbx.commands.list(); await sbx.commands.kill(h.pid);
await (await sbx.commands.connect(h.pid, { onStdout: () => {} })).disconnect();
const t = await sbx.pty.create({ cols: 80, rows: 24, onData: (b: Uint8Array) => b.byteLength });
await t.sendInput("ls\\n"); await t.resize({ cols: 100, rows: 30 }); await sbx.pty.kill(t.pid);
const e: EntryInfo = await sbx.files.write("/a", new Blob(["x"]));
const s: string = await sbx.files.read("/a");
const b: Uint8Array = await sbx.files.read("/a", { format: "bytes", user: "sandbox" });
const bl: Blob = await sbx.files.read("/a", { format: "blob" });
const st: ReadableStream<Uint8Array> = await sbx.files.read("/a", { format: "stream", signal: ac.signal });
await sbx.files.write("/b", st); await sbx.files.write([{ path: "/c", data: "x" }]);
const w: WatchHandle = await sbx.files.watchDir("/tmp", (ev) => ev.newPath, { recursive: true });
w.getNewEvents(); await w.stop();
const host: string = sbx.getHost(8080);
const token: string | undefined = sbx.trafficAccessToken;
await Sandbox.create({ secure: true, metadata: { k: "v" }, envs: { E: "1" }, cpuCount: 1, memoryMb: 512, template: "base" });
try { await sbx.kill(); } catch (err) {
  if (err instanceof CommandExitError) err.result.exitCode;
  if (err instanceof SandboxError) console.log(err.status, err.code, err.message);
  void [AuthenticationError, NotFoundError, RateLimitError, TimeoutError];
}
void [endAt, endReason, all, text, count, r, done, e, s, b, bl, host, token];

// Mistakes a user could make are type errors.
// @ts-expect-error getInfo() is the API's JSON: snake_case
(await sbx.getInfo()).endAt;
// @ts-expect-error code is a string
await sbx.runCode(42);
// @ts-expect-error a foreground run resolves to a result, not a handle
const notAHandle: CommandHandle = await sbx.commands.run("ls");
// @ts-expect-error format "bytes" is not a string
const notText: string = await sbx.files.read("/a", { format: "bytes" });
// @ts-expect-error timeoutMs is milliseconds, a number
await Sandbox.create({ timeoutMs: "300" });
void [notAHandle, notText];
`;

const CONSUMER_CTS = `import { Sandbox, NotFoundError } from "@ai2in/sdk";
async function main(): Promise<void> {
  const sbx = await Sandbox.create({ apiKey: "ai2in_live_…" });
  console.log(sbx.id);
  try { await sbx.getInfo(); } catch (e) { if (e instanceof NotFoundError) console.log(e.message); }
  // @ts-expect-error setTimeout takes milliseconds
  await sbx.setTimeout("1h");
}
void main();
`;

test("a consumer project installs the tarball and its TypeScript type-checks (tsc --noEmit)", async () => {
  const consumer = path.join(dir, "consumer");
  fs.mkdirSync(consumer);
  fs.writeFileSync(path.join(consumer, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  await npm(["install", "--no-audit", "--no-fund", "--ignore-scripts", tarball], consumer);
  assert.ok(fs.existsSync(path.join(consumer, "node_modules", "@ai2in", "sdk", "dist", "esm", "index.d.ts")));
  fs.writeFileSync(path.join(consumer, "main.mts"), CONSUMER_MTS);
  fs.writeFileSync(path.join(consumer, "main.cts"), CONSUMER_CTS);
  fs.writeFileSync(path.join(consumer, "tsconfig.json"), JSON.stringify({
    compilerOptions: {
      target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true,
      lib: ["ES2022"], types: ["node"], typeRoots: [path.join(SDK_DIR, "node_modules", "@types")],
    },
    files: ["main.mts", "main.cts"],
  }));
  try {
    await run(process.execPath, [TSC, "-p", consumer], { cwd: consumer, timeout: 120_000 });
  } catch (e) {
    assert.fail(`tsc --noEmit failed in the consumer project:\n${e.stdout}${e.stderr}`);
  }
  // And both builds load from the installed package.
  const esm = await run(process.execPath, ["--input-type=module", "-e",
    'import { Sandbox, SandboxError } from "@ai2in/sdk"; console.log(typeof Sandbox.create, typeof SandboxError)'], { cwd: consumer });
  assert.equal(esm.stdout.trim(), "function function");
  const cjs = await run(process.execPath, ["-e",
    'const { Sandbox, VERSION } = require("@ai2in/sdk"); console.log(typeof Sandbox.connect, VERSION)'], { cwd: consumer });
  assert.equal(cjs.stdout.trim(), `function ${JSON.parse(fs.readFileSync(path.join(SDK_DIR, "package.json"), "utf8")).version}`);
});
