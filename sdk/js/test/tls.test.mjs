// The SDK against an engine serving HTTPS (--tls-cert, --tls-key), with a private CA made here
// by the openssl CLI and trusted the way docs/deploy.md says: NODE_EXTRA_CA_CERTS, which Node
// reads when it starts, so the SDK runs in a child process started with it. That child uses
// every kind of request over https:// (streamed output, runCode, files both ways, a PTY) and
// kills its sandbox; this process checks what it saw, and that without the CA the SDK refuses
// the engine's certificate.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import https from "node:https";
import path from "node:path";
import { after, before, test } from "node:test";

import { Engine, SDK_DIR } from "./helpers/engine.mjs";

let dir, engine, key;

function openssl(...args) {
  const p = spawnSync("openssl", args, { encoding: "utf8", timeout: 60_000 });
  if (p.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${p.stderr}`);
}

/** An engine reached at https://localhost:PORT, its own requests trusting ca. */
class TlsEngine extends Engine {
  constructor(extraArgs, ca) {
    super(extraArgs);
    this.ca = fs.readFileSync(ca);
  }

  get url() {
    return `https://localhost:${this.port}`;
  }

  async healthy() {
    try {
      return (await this.raw("GET", "/v1/health")).status === 200;
    } catch {
      return false;
    }
  }

  raw(method, p, { key: k, body } = {}) {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const headers = { ...(k ? { "X-API-Key": k } : {}), ...(data ? { "Content-Type": "application/json" } : {}) };
    return new Promise((resolve, reject) => {
      const req = https.request(this.url + p, { method, headers, ca: this.ca, timeout: 30_000 }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => { text += c; });
        res.on("end", () => {
          let doc = null;
          try { doc = text ? JSON.parse(text) : null; } catch { doc = null; }
          resolve({ status: res.statusCode, doc, text });
        });
      });
      req.on("error", reject);
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.end(data);
    });
  }
}

// What the child runs: the SDK over https, every kind of request, then the sandbox killed.
const SCRIPT = `
import { Sandbox } from ${JSON.stringify(path.join(SDK_DIR, "dist", "esm", "index.js"))};
import { createHash } from "node:crypto";
const opts = { apiKey: process.env.KEY, apiUrl: process.env.URL };
const out = {};
const sbx = await Sandbox.create(opts);
try {
  const lines = [];
  const r = await sbx.commands.run("for i in 1 2 3; do echo line$i; sleep 0.1; done", { onStdout: (l) => lines.push(l) });
  out.lines = lines;
  out.exit = r.exitCode;
  out.code = (await sbx.runCode("6 * 7")).text;
  const data = new Uint8Array(4 * 1024 * 1024).map((_, i) => (i * 7) & 255);
  await sbx.files.write("/home/sandbox/up.bin", data);
  const back = await sbx.files.read("/home/sandbox/up.bin", { format: "bytes" });
  out.same = createHash("sha256").update(data).digest("hex") === createHash("sha256").update(back).digest("hex");
  let seen = "";
  const t = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => { seen += Buffer.from(d).toString(); } });
  await t.sendInput("echo $((6*7))zz\\n");
  for (let i = 0; i < 100 && !seen.includes("42zz"); i++) await new Promise((r) => setTimeout(r, 100));
  out.pty = seen.includes("42zz");
  await t.kill();
} finally {
  out.killed = await sbx.kill();
}
console.log(JSON.stringify(out));
`;

function child(env) {
  return spawnSync(process.execPath, ["--input-type=module", "-e", SCRIPT], {
    encoding: "utf8",
    timeout: 180_000,
    env: { ...process.env, KEY: key, URL: engine.url, ...env },
  });
}

before(async () => {
  dir = fs.mkdtempSync("/tmp/ai2in-js-tls-");
  const p = (n) => path.join(dir, n);
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("ca.key"),
    "-out", p("ca.pem"), "-days", "2", "-subj", "/CN=ai2in js test CA");
  openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("node.key"),
    "-out", p("node.csr"), "-subj", "/CN=node");
  fs.writeFileSync(p("ext"), "subjectAltName = DNS:localhost, IP:127.0.0.1\n");
  openssl("x509", "-req", "-in", p("node.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial",
    "-days", "2", "-extfile", p("ext"), "-out", p("node.pem"));
  engine = new TlsEngine(["--tls-cert", p("node.pem"), "--tls-key", p("node.key")], p("ca.pem"));
  await engine.start();
  key = engine.makeKey();
});

after(async () => {
  if (engine) await engine.teardown();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("the SDK over https:// with NODE_EXTRA_CA_CERTS: streams, runCode, files, a PTY", () => {
  const r = child({ NODE_EXTRA_CA_CERTS: path.join(dir, "ca.pem") });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split("\n").pop());
  assert.deepEqual(out, { lines: ["line1", "line2", "line3"], exit: 0, code: "42", same: true, pty: true, killed: true });
});

test("without the CA the SDK refuses the engine's certificate", () => {
  const r = child({ NODE_EXTRA_CA_CERTS: "" });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /certificate|self.signed|UNABLE_TO_GET_ISSUER|unable to get local issuer/i);
});
