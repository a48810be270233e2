// Sandbox lifecycle against the real engine: create, getInfo, timeouts, list, connect, pause
// and resume, kill, preview hosts.
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, test } from "node:test";

import { ConflictError, InvalidArgumentError, NotFoundError, Sandbox } from "../dist/esm/index.js";
import { useEngine } from "./helpers/engine.mjs";
import { secondsUntil, waitFor } from "./helpers/util.mjs";

const env = useEngine(before, after);

const ID = /^sbx_[a-z0-9]{20}$/;

test("create returns a running sandbox; getInfo is the API's plain JSON object", async () => {
  const sbx = await Sandbox.create(env.opts);
  assert.match(sbx.id, ID);
  assert.equal(sbx.sandboxId, sbx.id);
  assert.equal(sbx.apiUrl, env.url);
  assert.equal(sbx.trafficAccessToken, undefined);
  const info = await sbx.getInfo();
  assert.equal(Object.getPrototypeOf(info), Object.prototype, "a plain object");
  assert.equal(info.id, sbx.id);
  assert.equal(info.state, "running");
  assert.equal(info.template, "base");
  assert.equal(info.timeout, null);
  assert.equal(typeof info.end_at, "string", "end_at: when it dies of idleness");
  assert.ok(Math.abs(secondsUntil(info.end_at) - info.idle_timeout) < 10, JSON.stringify(info));
  assert.equal(info.end_reason, "idle");
  assert.equal(await sbx.isRunning(), true);
  assert.equal(await sbx.kill(), true);
});

test("timeoutMs sets a hard lifetime; setTimeout moves it to now + t; end_at is the deadline", async () => {
  const sbx = await Sandbox.create({ ...env.opts, timeoutMs: 300_000 });
  let info = await sbx.getInfo();
  assert.equal(info.timeout, 300);
  assert.ok(Math.abs(secondsUntil(info.end_at) - 300) < 5, info.end_at);
  assert.equal(info.deadline, info.end_at);
  assert.equal(info.end_reason, "timeout");
  await sbx.setTimeout(3_600_000);
  info = await sbx.getInfo();
  assert.equal(info.timeout, 3600);
  // The deadline replaces the idle reaping (30 min by default): end_at is an hour away.
  assert.ok(Math.abs(secondsUntil(info.deadline) - 3600) < 5, info.deadline);
  assert.equal(info.end_at, info.deadline);
  assert.equal(info.end_reason, "timeout");
  await sbx.setTimeout(120_000);
  assert.ok(Math.abs(secondsUntil((await sbx.getInfo()).end_at) - 120) < 5, "a shorter timeout shortens the life");
  await sbx.setTimeout(86_400_000);
  assert.equal((await sbx.getInfo()).timeout, 86400, "24 h is the most");
  await sbx.kill();
});

test("over 24 h is capped to 24 h, at create, setTimeout and resume; 0 or less is an InvalidArgumentError", async () => {
  const capped = (info) => {
    assert.equal(info.timeout, 86400, JSON.stringify(info));
    assert.ok(Math.abs(secondsUntil(info.end_at) - 86400) < 5, info.end_at);
    assert.equal(info.end_at, info.deadline);
    assert.equal(info.end_reason, "timeout");
  };
  const sbx = await Sandbox.create({ ...env.opts, timeoutMs: 100_000_000 });
  capped(await sbx.getInfo());
  await sbx.setTimeout(60_000);
  await sbx.setTimeout(86_401_000);
  capped(await sbx.getInfo());
  await sbx.setTimeout(100_000_000_000);
  capped(await sbx.getInfo());
  await sbx.pause();
  let info = await sbx.getInfo();
  assert.equal(info.end_at, null);
  assert.equal(info.end_reason, null, "a paused sandbox ends by neither rule");
  await sbx.resume({ timeoutMs: 100_000_000 });
  capped(await sbx.getInfo());

  for (const bad of [0, -1000]) {
    await assert.rejects(sbx.setTimeout(bad), (e) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.equal(e.status, 400);
      assert.equal(e.code, "bad_request");
      assert.match(e.message, /timeout must be at least 1/, "the server's message says why");
      return true;
    });
    await assert.rejects(Sandbox.create({ ...env.opts, timeoutMs: bad }), InvalidArgumentError);
  }
  info = await sbx.getInfo();
  assert.equal(info.timeout, 86400, "a refused setTimeout changes nothing");
  await sbx.kill();
});

test("create options: template, metadata, envs, cpuCount, memoryMb, diskMb reach the engine", async () => {
  const sbx = await Sandbox.create("base", {
    ...env.opts,
    metadata: { user: "alice", run: "lifecycle" },
    envs: { GREETING: "hello from envs" },
    cpuCount: 0.5,
    memoryMb: 256,
    diskMb: 64,
  });
  const info = await sbx.getInfo();
  assert.deepEqual(info.metadata, { user: "alice", run: "lifecycle" });
  assert.equal(info.cpu_count, 0.5);
  assert.equal(info.memory_mb, 256);
  assert.equal(info.disk_mb, 64);
  assert.equal(typeof info.disk_used_mb, "number", "getInfo shows what its files take");
  assert.equal(info.envs, undefined, "envs are never echoed back");
  assert.equal((await sbx.commands.run("echo $GREETING")).stdout, "hello from envs\n");
  await sbx.kill();
});

test("allowInternetAccess and network reach the engine and show in getInfo().network", async () => {
  const on = await Sandbox.create({ ...env.opts });
  const off = await Sandbox.create({ ...env.opts, allowInternetAccess: false });
  const ruled = await Sandbox.create({ ...env.opts, network: { allowOut: ["10.9.8.7", "PyPI.org", "*.githubusercontent.com"], denyOut: ["192.0.2.0/24"] } });
  assert.deepEqual((await on.getInfo()).network, { allow_internet_access: true, allow_out: [], deny_out: [] },
    "the engine's default: on");
  assert.deepEqual((await off.getInfo()).network, { allow_internet_access: false, allow_out: [], deny_out: [] });
  assert.deepEqual((await ruled.getInfo()).network,
    { allow_internet_access: true, allow_out: ["10.9.8.7/32", "pypi.org", "*.githubusercontent.com"], deny_out: ["192.0.2.0/24"] });
  await ruled.kill();
  await assert.rejects(Sandbox.create({ ...env.opts, network: { denyOut: ["pypi.org"] } }), /deny_out takes IPv4 CIDRs only/);
  // What each may reach is tests/security/test_egress.py's (test_egress_domains.py's for domains).
  await on.kill();
  await off.kill();
});

test("list: the team's sandboxes, filters by state and metadata, follows pages", async () => {
  const key = env.engine.makeKey();
  const o = { apiKey: key, apiUrl: env.url };
  const a = await Sandbox.create({ ...o, metadata: { role: "a" } });
  const b = await Sandbox.create({ ...o, metadata: { role: "b" } });
  const c = await Sandbox.create({ ...o, metadata: { role: "b" } });
  await c.pause();
  let all = await Sandbox.list(o);
  assert.deepEqual(all.map((s) => s.id), [a.id, b.id, c.id], "oldest first, running and paused");
  assert.equal(all[2].state, "paused");
  all = await Sandbox.list({ ...o, pageSize: 1 });
  assert.deepEqual(all.map((s) => s.id), [a.id, b.id, c.id], "pages are followed to the end");
  assert.deepEqual((await Sandbox.list({ ...o, state: "running" })).map((s) => s.id), [a.id, b.id]);
  assert.deepEqual((await Sandbox.list({ ...o, state: ["paused"] })).map((s) => s.id), [c.id]);
  assert.deepEqual((await Sandbox.list({ ...o, metadata: { role: "b" } })).map((s) => s.id), [b.id, c.id]);
  await assert.rejects(Sandbox.list({ ...o, state: "sleeping" }), InvalidArgumentError);
  // Another team sees none of them.
  assert.deepEqual(await Sandbox.list(env.opts).then((l) => l.filter((s) => [a.id, b.id, c.id].includes(s.id))), []);
  for (const s of [a, b, c]) await s.kill();
  assert.deepEqual(await Sandbox.list(o), []);
});

test("connect attaches by id; unknown and malformed ids are errors with the server's message", async () => {
  const sbx = await Sandbox.create(env.opts);
  const again = await Sandbox.connect(sbx.id, env.opts);
  assert.equal(again.id, sbx.id);
  await sbx.files.write("/tmp/shared.txt", "written through one object");
  assert.equal(await again.files.read("/tmp/shared.txt"), "written through one object");
  await assert.rejects(Sandbox.connect("sbx_00000000000000000000", env.opts), (e) => {
    assert.ok(e instanceof NotFoundError);
    assert.equal(e.status, 404);
    assert.match(e.message, /sbx_00000000000000000000/);
    return true;
  });
  await assert.rejects(Sandbox.connect("nope", env.opts), (e) => e instanceof InvalidArgumentError && e.status === 400);
  // Another team's sandbox answers exactly like a missing one.
  const other = { apiKey: env.engine.makeKey(), apiUrl: env.url };
  await assert.rejects(Sandbox.connect(sbx.id, other), NotFoundError);
  await sbx.kill();
});

test("pause keeps the filesystem, stops the processes; resume starts it again", async () => {
  const sbx = await Sandbox.create(env.opts);
  await sbx.files.write("/home/sandbox/notes.txt", "still here");
  await sbx.runCode("kept_in_memory = 1");
  assert.deepEqual(await sbx.pause(), { status: "paused" });
  let info = await sbx.getInfo();
  assert.equal(info.state, "paused");
  assert.equal(info.pause_kind, "filesystem");
  assert.equal(info.end_at, null, "the reaper never touches a paused sandbox");
  assert.equal(info.end_reason, null);
  assert.equal(await sbx.isRunning(), false);
  assert.deepEqual(await sbx.pause(), { status: "paused" }, "pausing a paused sandbox changes nothing");
  await assert.rejects(sbx.commands.run("true"), (e) => {
    assert.ok(e instanceof ConflictError, String(e));
    assert.equal(e.status, 409);
    assert.match(e.message, /paused/);
    return true;
  });

  const connected = await Sandbox.connect(sbx.id, env.opts);
  assert.deepEqual(await connected.resume(), { status: "running" });
  info = await sbx.getInfo();
  assert.equal(info.state, "running");
  assert.equal(info.pause_kind, null);
  const ex = await connected.runCode("print(open('/home/sandbox/notes.txt').read())");
  assert.equal(ex.logs.stdout.join(""), "still here\n");
  const lost = await connected.runCode("kept_in_memory");
  assert.equal(lost.error?.name, "NameError", "in-memory state is lost by a pause");
  assert.deepEqual(await sbx.resume(), { status: "running" }, "resuming a running sandbox changes nothing");

  await sbx.pause({ keepMemory: true });
  assert.equal((await sbx.getInfo()).pause_kind, "memory");
  await sbx.resume({ timeoutMs: 600_000 });
  info = await sbx.getInfo();
  assert.equal(info.timeout, 600, "resume's timeout becomes the hard lifetime");
  assert.ok(Math.abs(secondsUntil(info.deadline) - 600) < 5);
  assert.equal(info.end_at, info.deadline);
  assert.equal(info.end_reason, "timeout");
  await sbx.kill();
});

test("kill is idempotent: true, then false; the sandbox is gone", async () => {
  const sbx = await Sandbox.create(env.opts);
  assert.equal(await sbx.kill(), true);
  assert.equal(await sbx.kill(), false);
  await assert.rejects(sbx.getInfo(), (e) => e instanceof NotFoundError && e.message.includes(sbx.id));
  assert.equal(await sbx.isRunning(), false);
  await assert.rejects(Sandbox.connect(sbx.id, env.opts), NotFoundError);
  // A paused sandbox can be killed too.
  const p = await Sandbox.create(env.opts);
  await p.pause();
  assert.equal(await p.kill(), true);
  await assert.rejects(p.getInfo(), NotFoundError);
});

test("getHost names the port and the sandbox under the preview domain", async () => {
  const saved = process.env.AI2IN_DOMAIN;
  delete process.env.AI2IN_DOMAIN;
  const sbx = await Sandbox.create(env.opts);
  try {
    // The id's "_" as "-": a valid host name, which a wildcard certificate matches.
    const dnsId = sbx.id.replace("_", "-");
    assert.ok(sbx.id.startsWith("sbx_") && !dnsId.includes("_"));
    // Neither the option nor AI2IN_DOMAIN: the engine's own preview domain.
    assert.deepEqual((await sbx.getInfo()).preview, { scheme: "http", domain: `localhost:${env.engine.previewPort}` });
    assert.equal(sbx.getHost(8000), `8000-${dnsId}.localhost:${env.engine.previewPort}`);
    assert.equal(sbx.getUrl(8000), `http://8000-${dnsId}.localhost:${env.engine.previewPort}/`);
    const custom = await Sandbox.connect(sbx.id, { ...env.opts, domain: "preview.example.test" });
    assert.equal(custom.getHost(3000), `3000-${dnsId}.preview.example.test`);
    process.env.AI2IN_DOMAIN = "from-env.test:8443";
    const fromEnv = await Sandbox.connect(sbx.id, env.opts);
    assert.equal(fromEnv.getHost(80), `80-${dnsId}.from-env.test:8443`);
    assert.equal(fromEnv.getUrl(80), `http://80-${dnsId}.from-env.test:8443/`);
    for (const bad of [0, 65536, 80.5, "80", NaN]) {
      assert.throws(() => sbx.getHost(bad), InvalidArgumentError);
      assert.throws(() => sbx.getUrl(bad), InvalidArgumentError);
    }
  } finally {
    if (saved === undefined) delete process.env.AI2IN_DOMAIN;
    else process.env.AI2IN_DOMAIN = saved;
  }
  await sbx.kill();
});

/** GET http://127.0.0.1:port/path with a Host header (fetch may not set one). */
function getVia(port, host, path, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, headers: { ...headers, Host: host }, timeout: 5000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => { body += d; });
      res.on("end", () => resolve({ status: res.statusCode, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

test("getHost(port) names a host the engine's preview proxy routes to that port", async (t) => {
  if (!env.engine.helpText.includes("--preview-listen")) {
    t.skip("this engine has no preview proxy");
    return;
  }
  const port = env.engine.previewPort;
  const sbx = await Sandbox.create({ ...env.opts, domain: `localhost:${port}` });
  await sbx.files.write("/tmp/www/hello.txt", "hi via preview");
  const server = await sbx.commands.run("python3 -m http.server 8000", { background: true, cwd: "/tmp/www" });
  const host = sbx.getHost(8000);
  assert.equal(host, `8000-${sbx.id.replace("_", "-")}.localhost:${port}`);
  await waitFor(async () => {
    const r = await getVia(port, host, "/hello.txt").catch(() => null);
    return r?.status === 200 && r.body === "hi via preview";
  }, 15_000, `GET http://${host}/hello.txt through the preview proxy`);
  await server.kill();
  await sbx.kill();
});

test("getUrl(port) opens with Node's fetch as written (*.localhost resolves to loopback)", async (t) => {
  if (!env.engine.helpText.includes("--preview-listen")) {
    t.skip("this engine has no preview proxy");
    return;
  }
  const saved = process.env.AI2IN_DOMAIN;
  delete process.env.AI2IN_DOMAIN;
  try {
    const sbx = await Sandbox.create(env.opts); // no domain: the engine says where its proxy is
    await sbx.files.write("/tmp/www/hello.txt", "hi via fetch");
    const server = await sbx.commands.run("python3 -m http.server 8000", { background: true, cwd: "/tmp/www" });
    const url = sbx.getUrl(8000) + "hello.txt";
    let body = null;
    await waitFor(async () => {
      const r = await fetch(url).catch(() => null);
      body = r && r.status === 200 ? await r.text() : null;
      return body === "hi via fetch";
    }, 15_000, `fetch(${url})`);
    assert.equal(body, "hi via fetch");
    await server.kill();
    await sbx.kill();
  } finally {
    if (saved !== undefined) process.env.AI2IN_DOMAIN = saved;
  }
});

test("secure: true gives a trafficAccessToken that preview requests must carry", async (t) => {
  const plain = await Sandbox.create(env.opts);
  const plainInfo = await plain.getInfo();
  assert.equal(plainInfo.secure, false);
  assert.equal(plainInfo.traffic_access_token, null);
  await plain.kill();
  const port = env.engine.previewPort;
  const sbx = await Sandbox.create({ ...env.opts, secure: true, domain: `localhost:${port}` });
  const token = sbx.trafficAccessToken;
  assert.equal(typeof token, "string");
  assert.ok(token.length >= 16, token);
  const info = await sbx.getInfo();
  assert.equal(info.secure, true);
  assert.equal(info.traffic_access_token, token);
  assert.equal((await Sandbox.connect(sbx.id, env.opts)).trafficAccessToken, token, "connect() has it too");
  if (!env.engine.helpText.includes("--preview-listen")) {
    await sbx.kill();
    t.skip("this engine has no preview proxy");
    return;
  }
  await sbx.files.write("/tmp/www/s.txt", "secret page");
  const server = await sbx.commands.run("python3 -m http.server 8000", { background: true, cwd: "/tmp/www" });
  const host = sbx.getHost(8000);
  await waitFor(async () => {
    const r = await getVia(port, host, "/s.txt", { "X-Ai2in-Traffic-Token": token }).catch(() => null);
    return r?.status === 200 && r.body === "secret page";
  }, 15_000, "the page with the token");
  assert.equal((await getVia(port, host, "/s.txt")).status, 403, "without the token");
  assert.equal((await getVia(port, host, "/s.txt", { "X-Ai2in-Traffic-Token": "wrong" })).status, 403, "with a wrong one");
  await server.kill();
  await sbx.kill();
});
