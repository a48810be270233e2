// The product page's JavaScript snippets, and the issue's, run verbatim as programs that
// import "@ai2in/sdk" (ESM, and the CommonJS build once), against the real engine.
//
// Only the placeholders are filled in: the key "ai2in_live_…" / "…" becomes a real key and
// "sbx_…" in Sandbox.connect a real sandbox id. Snippets that use a `sbx` they do not define
// get a line that connects one before them; a few lines after them print what the test
// checks. The engine's URL and key also reach the programs as AI2IN_API_URL and
// AI2IN_API_KEY (the snippets name no URL, and `Sandbox.list()` no key).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";

import { NotFoundError, Sandbox } from "../dist/esm/index.js";
import { REPO, SDK_DIR, useEngine } from "./helpers/engine.mjs";
import { secondsUntil } from "./helpers/util.mjs";

const run = promisify(execFile);

// Word for word from shared/seed (the "Sandbox lifecycle" page).
const SEED = {
  create: `import { Sandbox } from "@ai2in/sdk";
const sbx = await Sandbox.create({ apiKey: "ai2in_live_…" });
console.log(sbx.id); // "sbx_…"`,
  lifetime: `const sbx = await Sandbox.create({ apiKey: "…", timeoutMs: 300_000 });
await sbx.setTimeout(3_600_000); // extend; capped at 24h
(await sbx.getInfo()).end_at;`,
  reconnect: `const sbx = await Sandbox.connect("sbx_…", { apiKey: "…" });
await sbx.resume();`,
  pause: `await sbx.pause();
await sbx.resume();
await sbx.runCode("print('still here')");`,
  kill: "await sbx.kill();",
};

// Word for word from the issue that asked for this SDK.
const ISSUE = `import { Sandbox } from "@ai2in/sdk";
const sbx = await Sandbox.create({ apiKey: "ai2in_live_…" });
console.log(sbx.id);                                   // "sbx_…"
const s2 = await Sandbox.create({ apiKey: "…", timeoutMs: 300_000 });
await s2.setTimeout(3_600_000);                        // capped at 24h
(await s2.getInfo()).end_at;
const again = await Sandbox.connect("sbx_…", { apiKey: "…" });
await again.resume();
await again.runCode("print('still here')");
await sbx.pause(); await sbx.resume(); await sbx.kill();
await Sandbox.list();`;

const IMPORT = 'import { Sandbox } from "@ai2in/sdk";\n';
const CONNECT = "const sbx = await Sandbox.connect(process.env.SEED_SANDBOX_ID);\n";

let dir;
const env = useEngine(before, after, {
  setup: () => {
    // A project beside the SDK whose node_modules/@ai2in/sdk is this package.
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "ai2in-js-seed-"));
    fs.mkdirSync(path.join(dir, "node_modules", "@ai2in"), { recursive: true });
    fs.symlinkSync(SDK_DIR, path.join(dir, "node_modules", "@ai2in", "sdk"), "dir");
    fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "seed-snippets", private: true }));
  },
});
after(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Fills in the placeholders; nothing else of the snippet changes. */
function fill(snippet, sandboxId) {
  let s = snippet
    .replaceAll('{ apiKey: "ai2in_live_…" }', `{ apiKey: ${JSON.stringify(env.key)} }`)
    .replaceAll('{ apiKey: "…"', `{ apiKey: ${JSON.stringify(env.key)}`);
  if (sandboxId !== undefined) s = s.replaceAll('Sandbox.connect("sbx_…"', `Sandbox.connect(${JSON.stringify(sandboxId)}`);
  assert.ok(!/"(ai2in_live_)?…"|connect\("sbx_…"/.test(s), `a placeholder is left in:\n${s}`);
  return s;
}

/** Runs a program in the snippets' project; returns its stdout lines. */
async function runProgram(source, { name = "snippet.mjs", sandboxId } = {}) {
  const file = path.join(dir, name);
  fs.writeFileSync(file, source);
  const childEnv = { ...process.env, AI2IN_API_URL: env.url, AI2IN_API_KEY: env.key };
  if (sandboxId) childEnv.SEED_SANDBOX_ID = sandboxId;
  try {
    const { stdout } = await run(process.execPath, [file], { cwd: dir, env: childEnv, timeout: 60_000 });
    return stdout.split("\n").filter(Boolean);
  } catch (e) {
    throw new Error(`${name} failed:\n${source}\n--- stderr:\n${e.stderr}`);
  }
}

test("the snippets here are the seed's, word for word", (t) => {
  const seedDir = path.join(REPO, "..", "shared", "seed");
  if (!fs.existsSync(seedDir)) {
    t.skip(`no ${seedDir} beside the repository`);
    return;
  }
  const page = fs.readdirSync(seedDir).map((f) => fs.readFileSync(path.join(seedDir, f), "utf8")).join("\n");
  for (const [name, snippet] of Object.entries(SEED)) {
    for (const line of snippet.split("\n")) assert.ok(page.includes(line), `${name}: ${JSON.stringify(line)} is not on the page`);
  }
});

test("seed, Create: Sandbox.create({ apiKey }) and sbx.id", async () => {
  const out = await runProgram(fill(SEED.create));
  assert.equal(out.length, 1);
  assert.match(out[0], /^sbx_[a-z0-9]{20}$/);
  const info = await (await Sandbox.connect(out[0], env.opts)).getInfo();
  assert.equal(info.state, "running");
});

test("seed, Lifetime & timeouts: timeoutMs, setTimeout, getInfo().end_at", async () => {
  const out = await runProgram(IMPORT + fill(SEED.lifetime) + "\nconsole.log(JSON.stringify(await sbx.getInfo()));\n");
  const info = JSON.parse(out[0]);
  assert.equal(info.timeout, 3600);
  assert.ok(Math.abs(secondsUntil(info.deadline) - 3600) < 10, info.deadline);
  assert.equal(info.end_at, info.deadline, "end_at: when it will die, an hour from now");
  assert.equal(info.end_reason, "timeout");
});

test("seed, Reconnect from anywhere: Sandbox.connect(id) and resume", async () => {
  const paused = await Sandbox.create(env.opts);
  await paused.pause();
  await runProgram(IMPORT + fill(SEED.reconnect, paused.id));
  assert.equal((await paused.getInfo()).state, "running");
});

test("seed, Pause & resume: the file is still there after pause, resume, runCode", async () => {
  const sbx = await Sandbox.create(env.opts);
  await sbx.files.write("/home/sandbox/notes.txt", "still here");
  const out = await runProgram(IMPORT + CONNECT + fill(SEED.pause) +
    "\nconsole.log((await sbx.runCode(\"print(open('/home/sandbox/notes.txt').read())\")).logs.stdout.join(''));\n",
  { sandboxId: sbx.id });
  assert.deepEqual(out, ["still here"]);
  assert.equal((await sbx.getInfo()).state, "running");
});

test("seed, Kill: the sandbox is gone", async () => {
  const sbx = await Sandbox.create(env.opts);
  await runProgram(IMPORT + CONNECT + fill(SEED.kill), { sandboxId: sbx.id });
  await assert.rejects(sbx.getInfo(), NotFoundError);
});

test("the issue's snippet, as one program", async () => {
  const parked = await Sandbox.create(env.opts);
  await parked.pause();
  const out = await runProgram(fill(ISSUE, parked.id) +
    "\nconsole.log(JSON.stringify({ s2: s2.id, listed: (await Sandbox.list()).map((s) => s.id) }));\n", { name: "issue.mjs" });
  const [sbxId, json] = out;
  assert.match(sbxId, /^sbx_[a-z0-9]{20}$/);
  const { s2, listed } = JSON.parse(json);
  await assert.rejects(Sandbox.connect(sbxId, env.opts), NotFoundError, "sbx was killed");
  assert.equal((await parked.getInfo()).state, "running", "again was resumed");
  assert.equal((await (await Sandbox.connect(s2, env.opts)).getInfo()).timeout, 3600);
  assert.ok(listed.includes(s2) && listed.includes(parked.id) && !listed.includes(sbxId));
});

test("the CommonJS build: require('@ai2in/sdk') works the same", async () => {
  const source = `const { Sandbox, NotFoundError } = require("@ai2in/sdk");
(async () => {
  const sbx = await Sandbox.create({ apiKey: process.env.AI2IN_API_KEY });
  const r = await sbx.commands.run("echo from-cjs");
  console.log(sbx.id, r.stdout.trim(), await sbx.kill());
  try { await sbx.getInfo(); } catch (e) { console.log(e instanceof NotFoundError); }
})();
`;
  const out = await runProgram(source, { name: "snippet.cjs" });
  assert.match(out[0], /^sbx_[a-z0-9]{20} from-cjs true$/);
  assert.equal(out[1], "true");
});
