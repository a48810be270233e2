// Offline tests (no engine): NDJSON parsing across arbitrary chunk boundaries, incremental
// delivery, output decoding, error mapping, option resolution.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  AuthenticationError,
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  RateLimitError,
  Sandbox,
  SandboxError,
  TimeoutError,
  UnavailableError,
} from "../dist/esm/index.js";
import { errorFromResponse } from "../dist/esm/errors.js";
import { EventStream, OutputBuffer, decodeData } from "../dist/esm/stream.js";
import { Link, Transport } from "../dist/esm/transport.js";

const enc = new TextEncoder();

/** A body whose chunks the test pushes by hand. */
function manualBody() {
  let ctl;
  const body = new ReadableStream({ start: (c) => { ctl = c; } });
  return { body, push: (s) => ctl.enqueue(typeof s === "string" ? enc.encode(s) : s), end: () => ctl.close(), fail: (e) => ctl.error(e) };
}

test("events split at every byte boundary parse the same, keepalives are consumed", async () => {
  // "héllo ✓ 😀" has 2-, 3- and 4-byte UTF-8 characters: every one of them gets cut somewhere.
  const text = '{"type":"start","pid":7}\n{"type":"keepalive"}\n\n{"type":"stdout","data":"aMOp"}\n' +
    '{"type":"stdout","text":"héllo ✓ 😀"}\n{"type":"end","exit_code":0}';
  const bytes = enc.encode(text);
  for (let cut = 1; cut < bytes.length; cut++) {
    for (const cuts of [[cut], [cut, Math.min(cut + 1, bytes.length)]]) {
      const m = manualBody();
      const s = new EventStream(m.body, new Link(undefined), "test", "http://x");
      let from = 0;
      for (const c of cuts) {
        m.push(bytes.subarray(from, c));
        from = c;
      }
      m.push(bytes.subarray(from));
      m.end();
      const got = [];
      for await (const ev of s) got.push(ev.type === "stdout" && ev.text ? ev.text : ev.type);
      assert.deepEqual(got, ["start", "stdout", "héllo ✓ 😀", "end"], `cut at ${cuts}`);
    }
  }
});

test("an event is delivered as soon as its line is complete, before the rest arrives", async () => {
  const m = manualBody();
  const s = new EventStream(m.body, new Link(undefined), "test", "http://x");
  m.push('{"type":"start","pid":1}\n{"type":"std');
  const first = await s.next();
  assert.equal(first.type, "start");
  let second = null;
  const p = s.next().then((ev) => { second = ev; });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(second, null, "a half line must not be delivered");
  m.push('out","data":""}\n');
  await p;
  assert.equal(second.type, "stdout");
  s.close();
  assert.equal(await s.next(), null, "a closed stream ends");
});

test("an unreadable event or one without a type is a SandboxError naming the stream", async () => {
  for (const line of ["not json\n", '{"no":"type"}\n', "[1,2]\n"]) {
    const m = manualBody();
    const s = new EventStream(m.body, new Link(undefined), "POST /v1/x", "http://x");
    m.push(line);
    await assert.rejects(s.next(), (e) => e instanceof SandboxError && e.message.includes("POST /v1/x"));
  }
});

test("a broken body is a SandboxError; an aborted one rejects with the abort reason", async () => {
  const m = manualBody();
  const s = new EventStream(m.body, new Link(undefined), "GET /s", "http://x");
  m.fail(new Error("socket hang up"));
  await assert.rejects(s.next(), (e) => e instanceof SandboxError && /GET \/s .*broke: socket hang up/.test(e.message));

  const ac = new AbortController();
  const link = new Link(ac.signal);
  const m2 = manualBody();
  link.signal.addEventListener("abort", () => m2.fail(link.signal.reason));
  const s2 = new EventStream(m2.body, link, "GET /s", "http://x");
  const pending = s2.next();
  ac.abort();
  await assert.rejects(pending, (e) => e.name === "AbortError");
});

test("OutputBuffer keeps bytes, decodes characters split across chunks, yields whole lines", () => {
  const b = new OutputBuffer(true);
  const all = enc.encode("héllo\nwörld\nlast");
  const lines = [];
  for (const byte of all) lines.push(...b.feed(new Uint8Array([byte])));
  lines.push(...b.finish());
  assert.deepEqual(lines, ["héllo", "wörld", "last"]);
  assert.equal(b.text, "héllo\nwörld\nlast");
  assert.deepEqual([...b.bytes], [...all]);
  const g = new OutputBuffer(true);
  g.feed(enc.encode("partial"));
  assert.deepEqual(g.gap("[ai2in: 5 bytes of output dropped]"), ["partial", "[ai2in: 5 bytes of output dropped]"]);
  assert.equal(g.text, "partial\n[ai2in: 5 bytes of output dropped]\n");
  const bad = new OutputBuffer(false);
  bad.feed(new Uint8Array([0xff, 0x41]));
  bad.finish();
  assert.equal(bad.text, "\ufffdA");
});

test("base64 data is decoded exactly; invalid base64 is an error", () => {
  assert.deepEqual([...decodeData({ type: "stdout", data: "AP8=" })], [0, 255]);
  assert.throws(() => decodeData({ type: "stdout", data: "@@@" }), SandboxError);
  assert.throws(() => decodeData({ type: "stdout" }), SandboxError);
});

test("error answers map to classes and keep the server's message and code", () => {
  const body = (code, message) => JSON.stringify({ error: { code, message } });
  const cases = [
    [400, "bad_request", InvalidArgumentError],
    [401, "unauthorized", AuthenticationError],
    [404, "not_found", NotFoundError],
    [409, "conflict", ConflictError],
    [413, "payload_too_large", InvalidArgumentError],
    [429, "limit_exceeded", RateLimitError],
    [500, "internal", SandboxError],
    [502, "sandbox_error", SandboxError],
    [503, "unavailable", UnavailableError],
    [504, "timeout", TimeoutError],
  ];
  for (const [status, code, cls] of cases) {
    const e = errorFromResponse(status, body(code, `the message of ${status}`));
    assert.ok(e instanceof cls && e instanceof SandboxError && e instanceof Error, `${status} -> ${cls.name}`);
    assert.equal(e.name, cls.name);
    assert.equal(e.message, `the message of ${status}`);
    assert.equal(e.status, status);
    assert.equal(e.code, code);
  }
  const raw = errorFromResponse(502, "<html>bad gateway</html>", "Bad Gateway");
  assert.equal(raw.message, "HTTP 502 Bad Gateway: <html>bad gateway</html>");
});

test("the API key and URL come from options, else AI2IN_API_KEY / AI2IN_API_URL, else the default URL", () => {
  const saved = { key: process.env.AI2IN_API_KEY, url: process.env.AI2IN_API_URL };
  try {
    delete process.env.AI2IN_API_KEY;
    delete process.env.AI2IN_API_URL;
    assert.throws(() => new Transport({}), (e) => e instanceof AuthenticationError && /AI2IN_API_KEY/.test(e.message));
    assert.equal(new Transport({ apiKey: "k" }).apiUrl, "http://127.0.0.1:7300");
    process.env.AI2IN_API_KEY = "from-env";
    process.env.AI2IN_API_URL = "http://10.0.0.1:1234/";
    const t = new Transport({});
    assert.equal(t.apiKey, "from-env");
    assert.equal(t.apiUrl, "http://10.0.0.1:1234");
    assert.equal(new Transport({ apiKey: "a", apiUrl: "http://h:1" }).apiKey, "a");
    assert.throws(() => new Transport({ apiKey: "a", apiUrl: "ftp://h" }), SandboxError);
  } finally {
    for (const [k, v] of [["AI2IN_API_KEY", saved.key], ["AI2IN_API_URL", saved.url]]) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
});

test("no API key at all is an AuthenticationError before any request", async () => {
  const saved = process.env.AI2IN_API_KEY;
  delete process.env.AI2IN_API_KEY;
  try {
    await assert.rejects(Sandbox.create({ apiUrl: "http://127.0.0.1:9" }), AuthenticationError);
    await assert.rejects(Sandbox.list({ apiUrl: "http://127.0.0.1:9" }), AuthenticationError);
  } finally {
    if (saved !== undefined) process.env.AI2IN_API_KEY = saved;
  }
});

test("diskMb is sent as disk_mb, and an engine's 400 naming max-disk-mb is an InvalidArgumentError", async () => {
  const { createServer } = await import("node:http");
  const bodies = [];
  const srv = createServer((req, res) => {
    let data = "";
    req.on("data", (c) => { data += c; });
    req.on("end", () => {
      const body = JSON.parse(data || "{}");
      bodies.push(body);
      res.setHeader("Content-Type", "application/json");
      if (body.disk_mb > 256) {
        res.statusCode = 400;
        res.end(JSON.stringify({ error: { code: "bad_request", message: `disk_mb must be at most 256 MiB on this engine (its setting max-disk-mb), got ${body.disk_mb}` } }));
        return;
      }
      res.statusCode = 201;
      res.end(JSON.stringify({ id: "sbx_aaaaaaaaaaaaaaaaaaaa", state: "running", disk_mb: body.disk_mb ?? 2048, preview: null }));
    });
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const apiUrl = `http://127.0.0.1:${srv.address().port}`;
  try {
    const sbx = await Sandbox.create({ apiKey: "k", apiUrl, diskMb: 64 });
    assert.deepEqual(bodies.at(-1), { disk_mb: 64 });
    assert.equal(sbx.id, "sbx_aaaaaaaaaaaaaaaaaaaa");
    await Sandbox.create({ apiKey: "k", apiUrl });
    assert.deepEqual(bodies.at(-1), {}, "no diskMb: the engine's default");
    await assert.rejects(Sandbox.create({ apiKey: "k", apiUrl, diskMb: 1024 }), (e) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.match(e.message, /max-disk-mb/);
      return true;
    });
  } finally {
    srv.close();
  }
});
