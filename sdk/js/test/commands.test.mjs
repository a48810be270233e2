// Commands (foreground and background handles, stdin, signals, re-attach) and PTYs against
// the real engine.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { CommandHandle, CommandResult, NotFoundError, PtyHandle, Sandbox } from "../dist/esm/index.js";
import { useEngine } from "./helpers/engine.mjs";
import { sleep, waitFor } from "./helpers/util.mjs";

let sbx;
useEngine(before, after, {
  setup: async (e) => {
    sbx = await Sandbox.create(e.opts);
  },
});

test("run waits for the command: output, exit code, exact bytes", async () => {
  const r = await sbx.commands.run("echo hi; echo err >&2; exit 3");
  assert.ok(r instanceof CommandResult);
  assert.equal(r.stdout, "hi\n");
  assert.equal(r.stderr, "err\n");
  assert.equal(r.exitCode, 3);
  assert.equal(r.ok, false);
  assert.equal(r.timedOut, false);
  const bin = await sbx.commands.run("printf '\\x00\\xff\\xfe\\n'");
  assert.deepEqual([...bin.stdoutBytes], [0, 0xff, 0xfe, 10], "binary output arrives intact");
  assert.equal(bin.stdout, "\u0000\ufffd\ufffd\n");
  assert.equal((await sbx.commands.run("true")).ok, true);
});

test("envs, cwd and user apply; the login environment is there", async () => {
  const r = await sbx.commands.run('echo "$FOO|$PWD|$(whoami)|$HOME"', { envs: { FOO: "bar" }, cwd: "/tmp", user: "sandbox" });
  assert.equal(r.stdout, "bar|/tmp|sandbox|/home/sandbox\n");
  assert.equal((await sbx.commands.run("pwd")).stdout, "/home/sandbox\n");
});

test("onStdout and onStderr get whole lines, in order, as printed, all before run resolves", async () => {
  const events = [];
  const started = Date.now();
  const r = await sbx.commands.run("for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.3; done; printf tail", {
    onStdout: (line) => events.push(["out", line, Date.now() - started]),
    onStderr: async (line) => {
      await sleep(1); // a callback's promise is awaited before the next event
      events.push(["err", line, Date.now() - started]);
    },
  });
  const resolvedAt = Date.now() - started;
  assert.deepEqual(events.filter((e) => e[0] === "out").map((e) => e[1]), ["out1", "out2", "out3", "tail"]);
  assert.deepEqual(events.filter((e) => e[0] === "err").map((e) => e[1]), ["err1", "err2", "err3"]);
  assert.equal(r.stdout, "out1\nout2\nout3\ntail");
  assert.ok(events[0][2] < resolvedAt - 500, `the first line arrived at ${events[0][2]} ms, the call resolved at ${resolvedAt} ms: ` +
    "output must be streamed, not buffered until the end");
  assert.ok(events.every((e) => e[2] <= resolvedAt), "every callback ran before run resolved");
});

test("timeoutMs: the engine kills the command (exit 124, timedOut)", async () => {
  const t0 = Date.now();
  const r = await sbx.commands.run("sleep 30", { timeoutMs: 500 });
  assert.equal(r.exitCode, 124);
  assert.equal(r.timedOut, true);
  assert.ok(Date.now() - t0 < 10_000);
});

test("background: a handle at once; stdin; list shows it; wait gives the result", async () => {
  const h = await sbx.commands.run("cat", { background: true, stdin: true, tag: "the-cat" });
  assert.ok(h instanceof CommandHandle);
  assert.ok(Number.isInteger(h.pid) && h.pid > 0);
  const listed = (await sbx.commands.list()).find((p) => p.pid === h.pid);
  assert.deepEqual({ ...listed, startedAt: typeof listed.startedAt }, {
    pid: h.pid, cmd: "cat", tag: "the-cat", cwd: "/home/sandbox", user: "root",
    pty: false, stdin: true, background: true, startedAt: "string",
  });
  await h.sendStdin("line one\n");
  await sbx.commands.sendStdin(h.pid, new TextEncoder().encode("line two\n"));
  await waitFor(() => h.stdout === "line one\nline two\n", 5000, "the echoed input");
  assert.equal(h.exitCode, undefined, "still running");
  await h.closeStdin();
  const r = await h.wait();
  assert.equal(r.stdout, "line one\nline two\n");
  assert.equal(r.exitCode, 0);
  assert.equal(h.exitCode, 0);
});

test("background callbacks stream; kill, sendSignal, commands.kill", async () => {
  const lines = [];
  const h = await sbx.commands.run("for i in $(seq 1 100); do echo $i; sleep 0.1; done", {
    background: true,
    onStdout: (l) => lines.push(l),
  });
  await waitFor(() => lines.length >= 2, 5000, "two lines");
  assert.deepEqual(lines.slice(0, 2), ["1", "2"]);
  assert.equal(await h.kill(), true);
  const r = await h.wait();
  assert.equal(r.exitCode, 137);
  assert.equal(r.signal, "SIGKILL");
  assert.equal(await h.kill(), false, "not running any more");

  const t = await sbx.commands.run("trap 'echo got-int; exit 7' INT; while true; do sleep 0.1; done", { background: true });
  await sleep(300);
  await t.sendSignal("SIGINT");
  const tr = await t.wait();
  assert.equal(tr.stdout, "got-int\n");
  assert.equal(tr.exitCode, 7);

  const k = await sbx.commands.run("sleep 60", { background: true });
  assert.equal(await sbx.commands.kill(k.pid), true);
  assert.equal((await k.wait()).exitCode, 137);
  assert.equal(await sbx.commands.kill(k.pid), false);
  await assert.rejects(sbx.commands.sendSignal(999999, "SIGTERM"), NotFoundError);
});

test("disconnect leaves the command running; connect re-attaches and replays held output", async () => {
  const h = await sbx.commands.run("echo before; sleep 1; echo after", { background: true });
  await waitFor(() => h.stdout === "before\n", 5000, "the first line");
  await h.disconnect();
  await assert.rejects(h.wait(), /disconnected/);
  const lines = [];
  const again = await sbx.commands.connect(h.pid, { onStdout: (l) => lines.push(l) });
  const r = await again.wait();
  assert.equal(r.stdout, "before\nafter\n");
  assert.deepEqual(lines, ["before", "after"]);
  assert.equal(r.exitCode, 0);
  await assert.rejects(sbx.commands.connect(999999), NotFoundError);
});

test("a callback that throws stops the command and run rejects with it", async () => {
  const boom = new Error("callback failed");
  await assert.rejects(sbx.commands.run("echo a; sleep 30", { tag: "thrower", onStdout: () => { throw boom; } }), (e) => e === boom);
  await waitFor(async () => !(await sbx.commands.list()).some((p) => p.tag === "thrower"), 10_000, "the command to be killed");
});

test("pty: a login shell in a terminal; input, resize, output as bytes", async () => {
  const chunks = [];
  const t = await sbx.pty.create({ cols: 80, rows: 24, onData: (b) => chunks.push(b) });
  assert.ok(t instanceof PtyHandle);
  const text = () => new TextDecoder().decode(Buffer.concat(chunks));
  await t.sendInput("echo $((6*7)) $TERM\n");
  await waitFor(() => text().includes("42 xterm-256color"), 10_000, "the shell's answer");
  await t.resize({ cols: 100, rows: 30 });
  await sbx.pty.sendInput(t.pid, new TextEncoder().encode("stty size\n"));
  await waitFor(() => text().includes("30 100"), 10_000, "the new size");
  await sbx.pty.resize(t.pid, { cols: 120, rows: 40 });
  await t.sendInput("stty size; exit 3\n");
  const r = await t.wait();
  assert.equal(r.exitCode, 3);
  assert.match(r.stdout, /40 120/);
  assert.ok(chunks.every((c) => c instanceof Uint8Array));
});

test("pty: a command in a terminal; connect; kill", async () => {
  const t = await sbx.pty.create({ cmd: "tty; sleep 60", cols: 40, rows: 10, background: true });
  await waitFor(() => t.stdout.includes("/dev/pts/"), 10_000, "tty output");
  assert.ok((await sbx.commands.list()).find((p) => p.pid === t.pid)?.pty);
  await t.disconnect();
  const seen = [];
  const again = await sbx.pty.connect(t.pid, { onData: (b) => seen.push(b) });
  await waitFor(() => seen.length > 0, 5000, "replayed output");
  assert.equal(await sbx.pty.kill(t.pid), true);
  assert.equal((await again.wait()).exitCode, 137);
  await assert.rejects(sbx.pty.resize((await sbx.commands.run("sleep 5", { background: true })).pid, { cols: 1, rows: 1 }),
    (e) => e.status === 409, "resizing what is not a terminal");
});

test("a kill ends what left the session; killAll ends every process and the kernel starts fresh", async () => {
  const ps = async () => (await sbx.commands.run("ps -eo args")).stdout;
  const h = await sbx.commands.run("setsid sleep 700 & setsid -f sleep 701; sleep 702", { background: true });
  await waitFor(async () => (await ps()).includes("sleep 701"), 10_000, "the sleeps");
  assert.equal(await sbx.commands.kill(h.pid), true);
  assert.equal((await h.wait()).exitCode, 137);
  await waitFor(async () => !/sleep 70[012]/.test(await ps()), 5000, "the setsid children to be gone");

  assert.equal((await sbx.runCode("marker = 5; marker")).text, "5");
  const bg = await sbx.commands.run("sleep 703 & setsid -f sleep 704; sleep 705", { background: true });
  const t = await sbx.pty.create({ cmd: "sleep 706", cols: 40, rows: 10, background: true });
  await waitFor(async () => /sleep 704/.test(await ps()), 10_000, "the sleeps");
  const killed = await sbx.commands.killAll();
  assert.ok(Number.isInteger(killed) && killed >= 7, `killed ${killed}`);
  assert.equal((await bg.wait()).exitCode, 137);
  assert.equal((await t.wait()).exitCode, 137);
  assert.doesNotMatch(await ps(), /sleep 70[3-6]/);
  assert.deepEqual(await sbx.commands.list(), []);
  const ex = await sbx.runCode("marker");
  assert.equal(ex.error?.name, "NameError", "a fresh kernel: the state is gone");
  assert.equal((await sbx.runCode("1 + 1")).text, "2");
});
