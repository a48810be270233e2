// Typed errors carrying the server's message, client-side timeouts, and AbortSignal on every
// call (an aborted stream stops, and the engine sees it go).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  AuthenticationError,
  CommandExitError,
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  RateLimitError,
  Sandbox,
  SandboxError,
  TimeoutError,
} from "../dist/esm/index.js";
import { Engine, freePort, useEngine } from "./helpers/engine.mjs";
import { abortedSignal, isAbort, sleep, waitFor } from "./helpers/util.mjs";

let sbx;
const env = useEngine(before, after, {
  setup: async (e) => {
    sbx = await Sandbox.create(e.opts);
  },
});

test("a wrong key is an AuthenticationError with the server's message", async () => {
  const raw = await env.engine.raw("GET", "/v1/sandboxes", { key: "ai2in_live_wrong" });
  assert.equal(raw.status, 401);
  const serverMessage = raw.doc.error.message;
  await assert.rejects(Sandbox.create({ apiKey: "ai2in_live_wrong", apiUrl: env.url }), (e) => {
    assert.ok(e instanceof AuthenticationError && e instanceof SandboxError);
    assert.equal(e.name, "AuthenticationError");
    assert.equal(e.status, 401);
    assert.equal(e.code, "unauthorized");
    assert.equal(e.message, serverMessage);
    return true;
  });
  await assert.rejects(Sandbox.list({ apiKey: "ai2in_live_wrong", apiUrl: env.url }), AuthenticationError);
});

test("errors of the engine keep its message: 404, 400, 409", async () => {
  await assert.rejects(sbx.files.read("/no/such/file"), (e) => {
    assert.ok(e instanceof NotFoundError);
    assert.equal(e.code, "not_found");
    assert.match(e.message, /\/no\/such\/file/);
    return true;
  });
  await assert.rejects(sbx.commands.run("true", { user: "nobody-here" }), (e) => {
    assert.ok(e instanceof InvalidArgumentError);
    assert.match(e.message, /nobody-here/);
    return true;
  });
  await assert.rejects(Sandbox.create({ ...env.opts, template: "no-such-template" }), (e) => {
    assert.ok(e instanceof NotFoundError);
    assert.match(e.message, /no-such-template/);
    return true;
  });
  const h = await sbx.commands.run("sleep 30", { background: true });
  await assert.rejects(h.sendStdin("x"), (e) => e instanceof ConflictError && e.status === 409);
  await h.kill();
  await h.wait();
});

test("the running cap is a RateLimitError whose message names the cap", async () => {
  const capped = new Engine(["--max-running", "1"]);
  try {
    await capped.start();
    const o = { apiKey: capped.makeKey(), apiUrl: capped.url };
    const first = await Sandbox.create(o);
    await assert.rejects(Sandbox.create(o), (e) => {
      assert.ok(e instanceof RateLimitError, String(e));
      assert.equal(e.status, 429);
      assert.equal(e.code, "limit_exceeded");
      assert.match(e.message, /\b1\b/, "the message names the cap");
      return true;
    });
    await first.pause();
    const second = await Sandbox.create(o); // a paused sandbox counts against no cap
    await assert.rejects(first.resume(), RateLimitError);
    await second.kill();
    await first.kill();
  } finally {
    await capped.teardown();
  }
});

test("an engine that is not there is a SandboxError saying so", async () => {
  const port = await freePort();
  await assert.rejects(Sandbox.create({ apiKey: "k", apiUrl: `http://127.0.0.1:${port}` }), (e) => {
    assert.ok(e instanceof SandboxError);
    assert.equal(e.status, undefined);
    assert.match(e.message, /not reachable/);
    return true;
  });
});

test("client-side timeouts are TimeoutErrors: a stalled upload, a wait", async () => {
  const stalled = new ReadableStream({ pull: () => new Promise(() => {}) }); // never sends
  const t0 = Date.now();
  await assert.rejects(sbx.files.write("/tmp/stalled", stalled, { requestTimeoutMs: 500 }), (e) => {
    assert.ok(e instanceof TimeoutError, String(e));
    assert.match(e.message, /timed out/);
    return true;
  });
  assert.ok(Date.now() - t0 < 5000);
  const h = await sbx.commands.run("sleep 30", { background: true });
  await assert.rejects(h.wait({ timeoutMs: 200 }), (e) => e instanceof TimeoutError && /still running/.test(e.message));
  assert.equal(await h.kill(), true);
  assert.equal((await h.wait()).exitCode, 137);
});

test("check: true turns a non-zero exit into a CommandExitError carrying the result", async () => {
  await assert.rejects(sbx.commands.run("echo out; echo oops >&2; exit 3", { check: true }), (e) => {
    assert.ok(e instanceof CommandExitError && e instanceof SandboxError);
    assert.equal(e.exitCode, 3);
    assert.equal(e.stdout, "out\n");
    assert.equal(e.stderr, "oops\n");
    assert.equal(e.result.exitCode, 3);
    assert.equal(e.message, "command exited with code 3: oops");
    return true;
  });
  const h = await sbx.commands.run("exit 5", { background: true, check: true });
  await assert.rejects(h.wait(), (e) => e instanceof CommandExitError && e.exitCode === 5);
  assert.equal((await sbx.commands.run("exit 4")).exitCode, 4, "without check, an exit code is a result");
});

test("every call takes a signal: an aborted one rejects with its reason and does nothing", async () => {
  const signal = abortedSignal();
  const before = (await Sandbox.list(env.opts)).length;
  const calls = {
    "Sandbox.create": () => Sandbox.create({ ...env.opts, signal }),
    "Sandbox.connect": () => Sandbox.connect(sbx.id, { ...env.opts, signal }),
    "Sandbox.list": () => Sandbox.list({ ...env.opts, signal }),
    getInfo: () => sbx.getInfo({ signal }),
    isRunning: () => sbx.isRunning({ signal }),
    setTimeout: () => sbx.setTimeout(60_000, { signal }),
    pause: () => sbx.pause({ signal }),
    resume: () => sbx.resume({ signal }),
    kill: () => sbx.kill({ signal }),
    runCode: () => sbx.runCode("1", { signal }),
    createCodeContext: () => sbx.createCodeContext({ signal }),
    listCodeContexts: () => sbx.listCodeContexts({ signal }),
    restartCodeContext: () => sbx.restartCodeContext("ctx_x", { signal }),
    removeCodeContext: () => sbx.removeCodeContext("ctx_x", { signal }),
    "commands.run": () => sbx.commands.run("true", { signal }),
    "commands.run background": () => sbx.commands.run("true", { background: true, signal }),
    "commands.connect": () => sbx.commands.connect(1, { signal }),
    "commands.list": () => sbx.commands.list({ signal }),
    "commands.kill": () => sbx.commands.kill(1, { signal }),
    "commands.sendStdin": () => sbx.commands.sendStdin(1, "x", { signal }),
    "commands.closeStdin": () => sbx.commands.closeStdin(1, { signal }),
    "commands.sendSignal": () => sbx.commands.sendSignal(1, "SIGINT", { signal }),
    "pty.create": () => sbx.pty.create({ signal }),
    "pty.connect": () => sbx.pty.connect(1, { signal }),
    "pty.sendInput": () => sbx.pty.sendInput(1, "x", { signal }),
    "pty.resize": () => sbx.pty.resize(1, { cols: 10, rows: 10 }, { signal }),
    "pty.kill": () => sbx.pty.kill(1, { signal }),
    "files.read": () => sbx.files.read("/etc/hostname", { signal }),
    "files.write": () => sbx.files.write("/tmp/aborted", "x", { signal }),
    "files.writeFiles": () => sbx.files.writeFiles([{ path: "/tmp/aborted", data: "x" }], { signal }),
    "files.getInfo": () => sbx.files.getInfo("/etc", { signal }),
    "files.exists": () => sbx.files.exists("/etc", { signal }),
    "files.list": () => sbx.files.list("/etc", { signal }),
    "files.makeDir": () => sbx.files.makeDir("/tmp/aborted-dir", { signal }),
    "files.rename": () => sbx.files.rename("/etc/hostname", "/tmp/h", { signal }),
    "files.remove": () => sbx.files.remove("/etc/hostname", { signal }),
    "files.watchDir": () => sbx.files.watchDir("/tmp", { signal }),
  };
  for (const [name, call] of Object.entries(calls)) {
    await assert.rejects(call(), (e) => isAbort(e), name);
  }
  assert.equal((await Sandbox.list(env.opts)).length, before, "no sandbox was created");
  assert.equal(await sbx.isRunning(), true, "nor was this one paused or killed");
  assert.equal(await sbx.files.exists("/tmp/aborted"), false);
  assert.equal(await sbx.files.exists("/etc/hostname"), true);
  const reason = new Error("my own reason");
  const ac = new AbortController();
  ac.abort(reason);
  await assert.rejects(sbx.getInfo({ signal: ac.signal }), (e) => e === reason);
});

test("aborting runCode mid-stream interrupts the execution; the context keeps its state", async () => {
  await sbx.runCode("state = 'kept'");
  const ac = new AbortController();
  const seen = [];
  const t0 = Date.now();
  const run = sbx.runCode("import time\nprint('started', flush=True)\ntime.sleep(30)\nprint('never')", {
    signal: ac.signal,
    onStdout: (m) => {
      seen.push(m.line);
      ac.abort();
    },
  });
  await assert.rejects(run, isAbort);
  assert.deepEqual(seen, ["started\n"]);
  assert.ok(Date.now() - t0 < 10_000);
  // The engine interrupted the sleep: the next execution runs at once, on the same state.
  const t1 = Date.now();
  const ex = await sbx.runCode("state");
  assert.equal(ex.text, "'kept'");
  assert.ok(Date.now() - t1 < 10_000, `the next execution waited ${Date.now() - t1} ms`);
});

test("aborting a foreground command closes its stream and the engine kills it", async () => {
  const ac = new AbortController();
  const run = sbx.commands.run("echo up; sleep 60", { tag: "abort-me", signal: ac.signal, onStdout: () => ac.abort() });
  await assert.rejects(run, isAbort);
  await waitFor(async () => !(await sbx.commands.list()).some((p) => p.tag === "abort-me"), 10_000,
    "the aborted command to be killed");
});

test("aborting a background handle disconnects it; the command runs on", async () => {
  const ac = new AbortController();
  const h = await sbx.commands.run("sleep 60", { background: true, signal: ac.signal, tag: "bg-abort" });
  ac.abort();
  await assert.rejects(h.wait(), isAbort);
  await sleep(200);
  assert.ok((await sbx.commands.list()).some((p) => p.pid === h.pid), "a background command outlives its reader");
  assert.equal(await sbx.commands.kill(h.pid), true);
});

test("aborting a download stream or a watch stops it", async () => {
  await sbx.commands.run("head -c 20000000 /dev/zero > /tmp/big");
  const ac = new AbortController();
  const stream = await sbx.files.read("/tmp/big", { format: "stream", signal: ac.signal });
  const reader = stream.getReader();
  const first = await reader.read();
  assert.ok(first.value.byteLength > 0);
  ac.abort();
  await assert.rejects(async () => {
    for (;;) if ((await reader.read()).done) break;
  }, isAbort);

  const wac = new AbortController();
  let exited = null;
  const w = await sbx.files.watchDir("/tmp", { signal: wac.signal, onExit: (err) => { exited = err ?? "clean"; } });
  assert.equal(w.running, true);
  wac.abort();
  await waitFor(() => !w.running, 5000, "the watch to stop");
  assert.ok(isAbort(exited), String(exited));
});
