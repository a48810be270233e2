// The test harness: starts the REAL engine (ai2ind) the way tests/integration/conftest.py
// does, one daemon per test file, and tears it down afterwards.
//
// Every daemon gets private directories under /var/tmp (mode 755: the sandboxes' shifted
// root must traverse them), a free API port and a free preview port, an empty config file,
// its own bridge, address pool and cgroup parent, and an environment without AI2IN_*
// variables, so it never touches a real engine on the machine. Teardown kills, through the
// API, every sandbox its keys can see, SIGTERMs the daemon and removes what is left of its
// private resources.
//
// Environment:
//   AI2IND                   engine binary (default <repo>/build/bin/ai2ind)
//   AI2IN_TEST_TEMPLATE_DIR  template directory holding base/ (default /var/lib/ai2in/templates)
//   AI2IN_TEST_KEEP=1        keep the daemon's directory (log, state) after the run

import { spawn, spawnSync } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const SDK_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const REPO = path.resolve(SDK_DIR, "../..");

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 20_000;

export function engineBinary() {
  return process.env.AI2IND || path.join(REPO, "build", "bin", "ai2ind");
}

export function templateDir() {
  return process.env.AI2IN_TEST_TEMPLATE_DIR || "/var/lib/ai2in/templates";
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function suffix(n = 4) {
  const abc = "abcdefghijklmnopqrstuvwxyz0123456789";
  let s = "";
  for (const b of randomBytes(n)) s += abc[b % abc.length];
  return s;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function mountsUnder(prefix) {
  const out = [];
  for (const line of fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const target = (line.split(" ")[4] || "").replace(/\\040/g, " ");
    if (target === prefix || target.startsWith(prefix + "/")) out.push(target);
  }
  return out;
}

function cgroupDirs(parent) {
  const out = [];
  const tops = [];
  if (fs.existsSync(`/sys/fs/cgroup/${parent}`)) tops.push(`/sys/fs/cgroup/${parent}`);
  for (const h of fs.readdirSync("/sys/fs/cgroup", { withFileTypes: true })) {
    if (h.isDirectory() && fs.existsSync(`/sys/fs/cgroup/${h.name}/${parent}`)) {
      tops.push(`/sys/fs/cgroup/${h.name}/${parent}`);
    }
  }
  const walk = (d) => {
    out.push(d);
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name));
    }
  };
  for (const t of tops) walk(t);
  return out;
}

/** One ai2ind daemon with its own directories, ports, bridge, address pool and cgroups. */
export class Engine {
  constructor(extraArgs = []) {
    this.binary = engineBinary();
    try {
      fs.accessSync(this.binary, fs.constants.X_OK);
    } catch {
      throw new Error(`engine binary ${this.binary} is missing: run \`make\` in ${REPO} ` +
        "(or set AI2IND to the binary to test)");
    }
    this.templateDir = templateDir();
    if (!fs.existsSync(path.join(this.templateDir, "base"))) {
      throw new Error(`template ${this.templateDir}/base is missing: build it with ` +
        `\`ai2ind --template-dir ${this.templateDir} template build base\``);
    }
    this.extraArgs = extraArgs;
    this.root = fs.mkdtempSync("/var/tmp/ai2in-js-");
    fs.chmodSync(this.root, 0o755);
    this.stateDir = path.join(this.root, "state");
    this.runDir = path.join(this.root, "run");
    fs.mkdirSync(this.stateDir);
    fs.mkdirSync(this.runDir);
    this.configPath = path.join(this.root, "ai2ind.conf");
    fs.writeFileSync(this.configPath, "");
    this.logPath = path.join(this.root, "ai2ind.log");
    const sfx = suffix();
    this.bridge = "ai2j" + sfx; // at most 15 characters
    // 10.79.X: neither the default pool (10.77.0.0/16, on ai2in0) nor the pytest suite's.
    this.netPool = `10.79.${randomInt(1, 255)}.0/24`;
    this.cgroupParent = "ai2j-" + sfx;
    this.keys = new Map(); // key -> team
    this.proc = null;
    // Without leak detection: a sanitizer build that reports a leak at exit dies before its
    // buffered help text reaches stdout.
    const asan = [process.env.ASAN_OPTIONS, "detect_leaks=0"].filter(Boolean).join(":");
    const help = spawnSync(this.binary, ["--help"], {
      encoding: "utf8",
      timeout: 10_000,
      env: { ...this.env(), ASAN_OPTIONS: asan },
    });
    this.helpText = `${help.stdout || ""}${help.stderr || ""}`;
  }

  baseArgs() {
    const args = [
      "--config", this.configPath,
      "--state-dir", this.stateDir,
      "--template-dir", this.templateDir,
      "--run-dir", this.runDir,
      "--listen", `127.0.0.1:${this.port}`,
      "--bridge", this.bridge,
      "--net-pool", this.netPool,
      "--cgroup-parent", this.cgroupParent,
    ];
    // The engine's preview proxy listens on 7301 by default: parallel engines must not share it.
    if (this.helpText.includes("--preview-listen")) {
      args.push("--preview-listen", `127.0.0.1:${this.previewPort}`);
    }
    return args;
  }

  env() {
    const env = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (!k.startsWith("AI2IN_")) env[k] = v;
    }
    return env;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts `ai2ind serve` and waits until GET /v1/health answers 200. */
  async start() {
    this.port = await freePort();
    this.previewPort = await freePort();
    const log = fs.openSync(this.logPath, "a");
    const cmd = [...this.baseArgs(), ...this.extraArgs, "serve"];
    this.proc = spawn(this.binary, cmd, { stdio: ["ignore", log, log], env: this.env() });
    fs.closeSync(log);
    this.exited = new Promise((resolve) => this.proc.once("exit", (code, sig) => resolve(code ?? sig)));
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        throw new Error(`ai2ind exited with ${this.proc.exitCode ?? this.proc.signalCode} while ` +
          `starting:\n${this.logTail()}`);
      }
      if (await this.healthy()) return this;
      await sleep(50);
    }
    throw new Error(`ai2ind did not answer GET /v1/health within 30 s:\n${this.logTail()}`);
  }

  async healthy() {
    try {
      const r = await fetch(`${this.url}/v1/health`, { signal: AbortSignal.timeout(2000) });
      const doc = await r.json();
      return r.status === 200 && doc.status === "ok";
    } catch {
      return false;
    }
  }

  get running() {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  logTail(n = 60) {
    try {
      return fs.readFileSync(this.logPath, "utf8").split("\n").slice(-n).join("\n");
    } catch {
      return "(no log)";
    }
  }

  /** Creates an API key for team with `ai2ind <args> keys create --team NAME`. */
  makeKey(team = "js-" + suffix(8)) {
    const p = spawnSync(this.binary, [...this.baseArgs(), "keys", "create", "--team", team],
      { encoding: "utf8", timeout: 30_000, env: this.env() });
    if (p.status !== 0) throw new Error(`ai2ind keys create failed (${p.status}): ${p.stderr}`);
    const m = /ai2in_live_[A-Za-z0-9_-]+/.exec(p.stdout);
    if (!m) throw new Error(`unexpected key output: ${JSON.stringify(p.stdout)}`);
    this.keys.set(m[0], team);
    return m[0];
  }

  /** One raw request; returns { status, doc, text }. */
  async raw(method, p, { key, body, headers = {} } = {}) {
    const h = { ...headers };
    if (key) h["X-API-Key"] = key;
    let data;
    if (body !== undefined) {
      data = typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body);
      h["Content-Type"] ??= "application/json";
    }
    const r = await fetch(this.url + p, { method, headers: h, body: data, signal: AbortSignal.timeout(30_000) });
    const text = await r.text();
    let doc = null;
    try {
      doc = text ? JSON.parse(text) : null;
    } catch {
      doc = null;
    }
    return { status: r.status, doc, text };
  }

  /** Kills, through the API, every sandbox any of this engine's keys can see. */
  async killAll() {
    const problems = [];
    for (const key of this.keys.keys()) {
      try {
        const r = await this.raw("GET", "/v1/sandboxes?state=creating,running,paused,pausing,resuming,error&limit=1000", { key });
        for (const s of r.doc?.sandboxes ?? []) {
          const d = await this.raw("DELETE", `/v1/sandboxes/${s.id}`, { key });
          if (d.status !== 200 && d.status !== 404) problems.push(`DELETE ${s.id}: ${d.status} ${d.text}`);
        }
      } catch (e) {
        problems.push(`kill for team ${this.keys.get(key)}: ${e}`);
      }
    }
    return problems;
  }

  async stop() {
    if (!this.running) return;
    this.proc.kill("SIGTERM");
    const t = setTimeout(() => this.proc.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(t);
  }

  /**
   * Kills every sandbox, stops the daemon, removes what is left of its resources; throws if
   * the daemon's log has sanitizer reports (the build-san binary prints them).
   */
  async teardown() {
    const problems = [];
    if (this.running) problems.push(...(await this.killAll()));
    await this.stop();
    const findings = this.sanitizerFindings();
    problems.push(...this.scrub());
    if (problems.length) process.stderr.write(`[ai2in js tests] teardown of ${this.root}: ${problems.join("; ")}\n`);
    if (findings.length) throw new Error(`ai2ind reported sanitizer errors:\n${findings.join("\n")}`);
    return problems;
  }

  sanitizerFindings() {
    let lines;
    try {
      lines = fs.readFileSync(this.logPath, "utf8").split("\n");
    } catch {
      return [];
    }
    const out = [];
    lines.forEach((line, i) => {
      if (/ERROR: (Address|Leak)Sanitizer|runtime error:/.test(line)) out.push(...lines.slice(i, i + 15));
    });
    return out;
  }

  scrub() {
    const notes = [];
    const states = [];
    const walk = (d) => {
      let entries = [];
      try {
        entries = fs.readdirSync(d, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name === "state.json") states.push(p);
      }
    };
    walk(this.runDir);
    for (const st of states) {
      const cdir = path.dirname(st);
      notes.push(`container ${path.basename(cdir)} left`);
      spawnSync("runc", ["--root", path.dirname(cdir), "delete", "--force", path.basename(cdir)], { timeout: 30_000 });
    }
    // The bridge and the engine's host firewall rules for it (left behind, every run would
    // add rules, and each packet into the host, loopback included, walks them all), and its
    // disk volume's mount, whose loop device goes with it.
    const net = spawnSync(this.binary, [...this.baseArgs(), "net", "remove", "--force"], {
      encoding: "utf8", timeout: 60_000, env: this.env(),
    });
    if (net.status !== 0) notes.push(`ai2ind net remove failed: ${(net.stderr ?? "").trim()}`);
    for (const m of mountsUnder(this.root).sort((a, b) => b.length - a.length)) {
      notes.push(`mount ${m} left`);
      spawnSync("umount", ["-l", m], { timeout: 30_000 });
    }
    for (const d of cgroupDirs(this.cgroupParent).sort((a, b) => b.length - a.length)) {
      try {
        fs.rmdirSync(d);
      } catch (e) {
        notes.push(`cgroup ${d} left: ${e.code}`);
      }
    }
    if (process.env.AI2IN_TEST_KEEP === "1") return notes;
    if (mountsUnder(this.root).length) notes.push(`${this.root} kept: still has mounts`);
    else fs.rmSync(this.root, { recursive: true, force: true });
    return notes;
  }
}

/**
 * Starts an engine for the current test file (node:test `before`) and tears it down after
 * the file's tests (`after`); call at the top level of a test file. Returns an object
 * filled in by `before`: { engine, key, url, opts } where opts are the SDK options for key.
 * `setup(env)` runs in the same hook once the engine is up (node 20 does not wait for one
 * root-level `before` hook before it starts the next, so a file has only this one).
 */
export function useEngine(before, after, { extraArgs = [], setup } = {}) {
  const env = {};
  let engine;
  before(async () => {
    engine = new Engine(extraArgs);
    await engine.start();
    env.engine = engine;
    env.key = engine.makeKey();
    env.url = engine.url;
    env.opts = { apiKey: env.key, apiUrl: engine.url };
    if (setup) await setup(env);
  });
  after(async () => {
    if (engine) await engine.teardown();
  });
  return env;
}
