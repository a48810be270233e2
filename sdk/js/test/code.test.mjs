// runCode and code contexts against the real engine: results, logs, errors, streaming
// callbacks in order, languages, envs, timeouts, contexts.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  Execution,
  ExecutionError,
  InvalidArgumentError,
  NotFoundError,
  OutputMessage,
  Result,
  Sandbox,
} from "../dist/esm/index.js";
import { useEngine } from "./helpers/engine.mjs";
import { stripAnsi } from "./helpers/util.mjs";

let sbx;
const env = useEngine(before, after, {
  setup: async (e) => {
    sbx = await Sandbox.create(e.opts);
  },
});

test("runCode: the main result, its text, the execution count, logs; state persists", async () => {
  const first = await sbx.runCode("x = 41\nprint('hello')");
  assert.ok(first instanceof Execution);
  assert.deepEqual(first.logs, { stdout: ["hello\n"], stderr: [] });
  assert.equal(first.text, undefined);
  assert.equal(first.error, undefined);
  const ex = await sbx.runCode("x + 1");
  assert.equal(ex.text, "42");
  assert.equal(ex.executionCount, first.executionCount + 1);
  assert.equal(ex.results.length, 1);
  assert.ok(ex.results[0] instanceof Result);
  assert.equal(ex.results[0].isMainResult, true);
  assert.deepEqual(ex.results[0].formats(), ["text"]);
  assert.equal(ex.status, "ok");
  assert.match(ex.contextId, /^ctx_/);
  const again = await Sandbox.connect(sbx.id, env.opts);
  assert.equal((await again.runCode("x")).text, "41", "state is the sandbox's, whichever object runs the code");
  assert.deepEqual(JSON.parse(JSON.stringify(ex)), {
    results: [{ text: "42", isMainResult: true }], logs: { stdout: [], stderr: [] }, error: null, executionCount: ex.executionCount,
  });
});

test("callbacks fire as events arrive, in order, all before runCode resolves", async () => {
  const order = [];
  const started = Date.now();
  const code = [
    "import sys, time",
    "from IPython.display import display, HTML",
    "print('one', flush=True)",
    "time.sleep(0.5)",
    "print('oops', file=sys.stderr, flush=True)",
    "display(HTML('<b>shown</b>'))",
    "time.sleep(0.5)",
    "print('two', flush=True)",
    "1/0",
  ].join("\n");
  const ex = await sbx.runCode(code, {
    onStdout: (m) => {
      assert.ok(m instanceof OutputMessage && m.error === false);
      order.push(["stdout", m.line, Date.now() - started]);
    },
    onStderr: async (m) => {
      await new Promise((r) => setTimeout(r, 5));
      assert.equal(m.error, true);
      order.push(["stderr", m.line, Date.now() - started]);
    },
    onResult: (r) => order.push(["result", r.html, Date.now() - started]),
    onError: (e) => order.push(["error", e.name, Date.now() - started]),
  });
  const resolvedAt = Date.now() - started;
  assert.deepEqual(order.map((o) => o.slice(0, 2)), [
    ["stdout", "one\n"],
    ["stderr", "oops\n"],
    ["result", "<b>shown</b>"],
    ["stdout", "two\n"],
    ["error", "ZeroDivisionError"],
  ]);
  assert.ok(order[0][2] < resolvedAt - 700, `the first output came at ${order[0][2]} ms and the call resolved at ` +
    `${resolvedAt} ms: events must be read as they arrive`);
  assert.ok(order.every((o) => o[2] <= resolvedAt));
  assert.ok(ex.error instanceof ExecutionError);
  assert.equal(ex.results[0].isMainResult, false, "a display is not the main result");
  assert.ok(ex.results[0].text.includes("HTML"), "the display's text/plain form");
  assert.ok(order[0][1] && ex.logs.stdout.join("") === "one\ntwo\n");
});

test("an error the code raises is a result: name, value, traceback", async () => {
  let called = null;
  const ex = await sbx.runCode("def f():\n    raise ValueError('bad value')\nf()", { onError: (e) => { called = e; } });
  assert.equal(ex.error.name, "ValueError");
  assert.equal(ex.error.value, "bad value");
  assert.match(stripAnsi(ex.error.traceback), /in f\b/);
  assert.equal(called, ex.error);
  assert.equal(ex.status, "error");
  assert.equal(String(ex.error), "ValueError: bad value");
});

test("rich results: a matplotlib PNG, a pandas table, JSON", async () => {
  const plot = await sbx.runCode("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()");
  const png = plot.results.find((r) => r.png);
  assert.ok(png, JSON.stringify(plot.results.map((r) => r.formats())));
  assert.deepEqual([...Buffer.from(png.png, "base64").subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const df = await sbx.runCode("import pandas as pd\npd.DataFrame({'a': [1, 2]})");
  assert.match(df.results[0].html, /<table/);
  assert.match(df.text, /a\n0\s+1\n1\s+2/);
  const js = await sbx.runCode("from IPython.display import JSON, display\ndisplay(JSON({'k': [1, 2]}))");
  assert.deepEqual(js.results[0].json, { k: [1, 2] });
  assert.ok(js.results[0].formats().includes("json"));
});

test("bash and javascript run in their own default contexts", async () => {
  const sh = await sbx.runCode("A=5; echo $((A * 2))", { language: "bash" });
  assert.deepEqual(sh.logs.stdout, ["10\n"]);
  const again = await sbx.runCode("echo $A", { language: "sh" });
  assert.deepEqual(again.logs.stdout, ["5\n"], "the shell persists");
  assert.equal(again.executionCount, sh.executionCount + 1, "the context counts its executions");
  const failed = await sbx.runCode("false", { language: "bash" });
  assert.equal(failed.error.name, "ExitCode");
  const js = await sbx.runCode("const a = 40; await Promise.resolve(a + 2)", { language: "javascript" });
  assert.equal(js.text, "42");
  assert.equal((await sbx.runCode("a", { language: "JS" })).text, "40");
  await assert.rejects(sbx.runCode("1", { language: "cobol" }), (e) => e instanceof InvalidArgumentError && /python/.test(e.message));
  await assert.rejects(sbx.runCode(""), InvalidArgumentError);
});

test("envs apply to one execution; timeoutMs interrupts and keeps the context", async () => {
  const ex = await sbx.runCode("import os\nos.environ.get('ONLY_HERE')", { envs: { ONLY_HERE: "yes" } });
  assert.equal(ex.text, "'yes'");
  assert.equal((await sbx.runCode("'ONLY_HERE' in os.environ")).text, "False");
  await sbx.runCode("survivor = 'alive'");
  const t0 = Date.now();
  const slow = await sbx.runCode("import time\ntime.sleep(30)", { timeoutMs: 500 });
  assert.ok(Date.now() - t0 < 10_000);
  assert.equal(slow.timedOut, true);
  assert.equal(slow.error.name, "KeyboardInterrupt");
  assert.equal((await sbx.runCode("survivor")).text, "'alive'");
});

test("code contexts: create, list, independent state, restart, remove", async () => {
  const ctx = await sbx.createCodeContext({ cwd: "/tmp" });
  assert.match(ctx.id, /^ctx_/);
  assert.deepEqual({ ...ctx, id: "" }, { id: "", language: "python", cwd: "/tmp", user: "root", default: false });
  await sbx.runCode("v = 'default'");
  await sbx.runCode("v = 'mine'", { context: ctx });
  assert.equal((await sbx.runCode("v")).text, "'default'");
  assert.equal((await sbx.runCode("v", { context: ctx.id })).text, "'mine'", "a context by its id");
  assert.equal((await sbx.runCode("import os; os.getcwd()", { context: ctx })).text, "'/tmp'");
  const listed = await sbx.listCodeContexts();
  assert.ok(listed.some((c) => c.id === ctx.id && !c.default));
  assert.ok(listed.some((c) => c.default && c.language === "python"));
  await assert.rejects(sbx.runCode("1", { context: ctx, language: "bash" }), InvalidArgumentError);
  await assert.rejects(sbx.runCode("1", { context: ctx.id, language: "bash" }), InvalidArgumentError);

  const restarted = await sbx.restartCodeContext(ctx);
  assert.equal(restarted.id, ctx.id);
  assert.equal((await sbx.runCode("v", { context: ctx })).error?.name, "NameError", "a restart forgets the state");
  await sbx.removeCodeContext(ctx.id);
  await assert.rejects(sbx.runCode("1", { context: ctx }), (e) => e instanceof NotFoundError && e.message.includes(ctx.id));
  await assert.rejects(sbx.removeCodeContext(ctx), NotFoundError);

  const sh = await sbx.createCodeContext({ language: "bash", user: "sandbox" });
  assert.equal(sh.language, "bash");
  assert.deepEqual((await sbx.runCode("whoami", { context: sh })).logs.stdout, ["sandbox\n"]);
  await sbx.removeCodeContext(sh);
});

test("a callback that throws interrupts the execution and runCode rejects with it", async () => {
  const boom = new Error("stop here");
  await assert.rejects(sbx.runCode("import time\nprint('x', flush=True)\ntime.sleep(30)", { onStdout: () => { throw boom; } }),
    (e) => e === boom);
  const t0 = Date.now();
  assert.equal((await sbx.runCode("2 + 2")).text, "4");
  assert.ok(Date.now() - t0 < 10_000, "the interrupted execution does not hold the context");
});
