// Files against the real engine: every kind of write body, every read format, info, list,
// makeDir, rename, remove, user permissions, and watchDir.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";

import { ConflictError, InvalidArgumentError, NotFoundError, Sandbox, SandboxError } from "../dist/esm/index.js";
import { useEngine } from "./helpers/engine.mjs";
import { sleep, waitFor } from "./helpers/util.mjs";

let sbx;
useEngine(before, after, {
  setup: async (e) => {
    sbx = await Sandbox.create(e.opts);
  },
});

const sha = (bytes) => createHash("sha256").update(bytes).digest("hex");
const remoteSha = async (path) => (await sbx.commands.run(`sha256sum ${path} | cut -d' ' -f1`)).stdout.trim();

test("write: a string, bytes, an ArrayBuffer, a Blob; read: text, bytes, blob", async () => {
  const e = await sbx.files.write("/home/sandbox/a.txt", "héllo");
  assert.deepEqual({ ...e, modifiedTime: e.modifiedTime instanceof Date }, {
    name: "a.txt", path: "/home/sandbox/a.txt", type: "file", size: 6, mode: 0o644,
    permissions: "-rw-r--r--", owner: "root", group: "root", modifiedTime: true, symlinkTarget: undefined,
  });
  assert.equal(await sbx.files.read("/home/sandbox/a.txt"), "héllo");
  assert.equal(await sbx.files.read("a.txt", { format: "text" }), "héllo", "relative to /home/sandbox");
  const bytes = new Uint8Array([0, 1, 2, 255, 254, 10]);
  await sbx.files.write("bin.dat", bytes);
  assert.deepEqual([...(await sbx.files.read("bin.dat", { format: "bytes" }))], [...bytes]);
  await sbx.files.write("ab.dat", bytes.buffer);
  const blob = await sbx.files.read("ab.dat", { format: "blob" });
  assert.ok(blob instanceof Blob);
  assert.deepEqual([...new Uint8Array(await blob.arrayBuffer())], [...bytes]);
  await sbx.files.write("/tmp/from-blob/deep/x.bin", new Blob(["blob ", new Uint8Array([65, 66])]));
  assert.equal(await sbx.files.read("/tmp/from-blob/deep/x.bin"), "blob AB", "parents are created");
});

test("a large file streams both ways: ReadableStream and async iterable uploads, stream download", async () => {
  const size = 16 * 1024 * 1024;
  const block = new Uint8Array(256 * 1024);
  for (let i = 0; i < block.length; i++) block[i] = (i * 7) & 0xff;
  let produced = 0;
  const upload = new ReadableStream({
    pull(c) {
      if (produced >= size) return c.close();
      produced += block.length;
      c.enqueue(block);
    },
  });
  const expected = sha(Buffer.concat(Array(size / block.length).fill(block)));
  const entry = await sbx.files.write("/tmp/big.bin", upload);
  assert.equal(entry.size, size);
  assert.equal(await remoteSha("/tmp/big.bin"), expected);

  const stream = await sbx.files.read("/tmp/big.bin", { format: "stream" });
  assert.ok(stream instanceof ReadableStream);
  const h = createHash("sha256");
  let chunks = 0;
  let total = 0;
  for await (const chunk of stream) {
    h.update(chunk);
    chunks++;
    total += chunk.byteLength;
  }
  assert.equal(total, size);
  assert.equal(h.digest("hex"), expected);
  assert.ok(chunks > 1, "the download arrives in chunks");

  async function* parts() {
    yield "text, ";
    yield new Uint8Array([98, 121, 116, 101, 115]);
  }
  await sbx.files.write("/tmp/iter.txt", parts());
  assert.equal(await sbx.files.read("/tmp/iter.txt"), "text, bytes");
  await sbx.files.write("/tmp/node-readable.txt", Readable.from(["node ", "stream"]));
  assert.equal(await sbx.files.read("/tmp/node-readable.txt"), "node stream");
});

test("a cancelled download stream stops early", async () => {
  const stream = await sbx.files.read("/tmp/big.bin", { format: "stream" });
  const reader = stream.getReader();
  const { value } = await reader.read();
  assert.ok(value.byteLength > 0);
  await reader.cancel();
  assert.equal(await sbx.files.read("/home/sandbox/a.txt"), "héllo", "the sandbox still answers");
});

test("a download stream read slowly is not cut by the request timeout", async () => {
  const data = new Uint8Array(3 << 20).map((_, i) => (i * 7) & 255);
  await sbx.files.write("/tmp/slow.bin", data);
  const stream = await sbx.files.read("/tmp/slow.bin", { format: "stream", requestTimeoutMs: 1000 });
  const parts = [];
  let n = 0;
  for await (const chunk of stream) {
    parts.push(chunk);
    if (n++ < 2) await sleep(1500); // longer than the request timeout, twice
  }
  assert.equal(sha(Buffer.concat(parts)), sha(data));
});

test("write([...]) and writeFiles write several files", async () => {
  const entries = await sbx.files.write([{ path: "/tmp/m/1.txt", data: "one" }, { path: "/tmp/m/2.txt", data: new Uint8Array([50]) }]);
  assert.deepEqual(entries.map((e) => e.name), ["1.txt", "2.txt"]);
  await sbx.files.writeFiles([{ path: "/tmp/m/3.txt", data: "three" }]);
  assert.deepEqual(await Promise.all(["1", "2", "3"].map((n) => sbx.files.read(`/tmp/m/${n}.txt`))), ["one", "2", "three"]);
});

test("getInfo, exists, list with depth, makeDir, rename, remove", async () => {
  assert.equal(await sbx.files.makeDir("/tmp/tree/a/b"), true);
  assert.equal(await sbx.files.makeDir("/tmp/tree/a/b"), false, "already a directory");
  await sbx.files.write("/tmp/tree/a/f.txt", "f");
  await sbx.commands.run("ln -s /tmp/tree/a/f.txt /tmp/tree/link");
  const link = await sbx.files.getInfo("/tmp/tree/link");
  assert.equal(link.type, "symlink");
  assert.equal(link.symlinkTarget, "/tmp/tree/a/f.txt");
  assert.equal((await sbx.files.getInfo("/tmp/tree/a")).type, "dir");
  assert.equal(await sbx.files.exists("/tmp/tree/a/f.txt"), true);
  assert.equal(await sbx.files.exists("/tmp/tree/nothing"), false);
  assert.deepEqual((await sbx.files.list("/tmp/tree")).map((e) => e.path), ["/tmp/tree/a", "/tmp/tree/link"]);
  assert.deepEqual((await sbx.files.list("/tmp/tree", { depth: 3 })).map((e) => e.path),
    ["/tmp/tree/a", "/tmp/tree/a/b", "/tmp/tree/a/f.txt", "/tmp/tree/link"]);
  const moved = await sbx.files.rename("/tmp/tree/a/f.txt", "/tmp/tree/g.txt");
  assert.equal(moved.path, "/tmp/tree/g.txt");
  assert.equal(await sbx.files.read("/tmp/tree/g.txt"), "f");
  await assert.rejects(sbx.files.rename("/tmp/tree/a/f.txt", "/tmp/x"), NotFoundError);
  await assert.rejects(sbx.files.makeDir("/tmp/tree/g.txt"), ConflictError);
  await sbx.files.remove("/tmp/tree");
  assert.equal(await sbx.files.exists("/tmp/tree"), false);
  await assert.rejects(sbx.files.remove("/tmp/tree"), NotFoundError);
  await assert.rejects(sbx.files.read("/tmp"), (e) => e instanceof InvalidArgumentError && e.status === 400, "reading a directory");
  await assert.rejects(sbx.files.list("/etc/hostname"), InvalidArgumentError);
  await assert.rejects(sbx.files.getInfo("/nope"), (e) => e instanceof NotFoundError && /\/nope/.test(e.message));
});

test("user: every call acts with that user's permissions", async () => {
  const mine = await sbx.files.write("/home/sandbox/mine.txt", "x", { user: "sandbox" });
  assert.equal(mine.owner, "sandbox");
  assert.equal(await sbx.files.makeDir("/home/sandbox/mydir", { user: "sandbox" }), true);
  assert.equal((await sbx.files.getInfo("/home/sandbox/mydir", { user: "sandbox" })).owner, "sandbox");
  await sbx.files.rename("/home/sandbox/mine.txt", "/home/sandbox/mydir/mine.txt", { user: "sandbox" });
  assert.deepEqual((await sbx.files.list("/home/sandbox/mydir", { user: "sandbox" })).map((e) => e.name), ["mine.txt"]);
  assert.equal(await sbx.files.read("/home/sandbox/mydir/mine.txt", { user: "sandbox" }), "x");
  await sbx.files.write("/root/secret.txt", "s");
  await assert.rejects(sbx.files.read("/root/secret.txt", { user: "sandbox" }), (e) => {
    assert.ok(e instanceof SandboxError);
    assert.equal(e.status, 403);
    assert.equal(e.code, "permission_denied");
    assert.match(e.message, /sandbox/);
    return true;
  });
  await assert.rejects(sbx.files.write("/root/other.txt", "s", { user: "sandbox" }), (e) => e.status === 403);
  await assert.rejects(sbx.files.remove("/root/secret.txt", { user: "sandbox" }), (e) => e.status === 403);
  await assert.rejects(sbx.files.exists("/root/secret.txt", { user: "sandbox" }), (e) => e.status === 403,
    "exists() is false only for what is missing, not for what the user may not see");
  await assert.rejects(sbx.files.read("/etc/hostname", { user: "nobody-here" }), InvalidArgumentError);
  await sbx.files.remove("/home/sandbox/mydir", { user: "sandbox" });
});

test("watchDir: events as they happen, recursive, onEvent and getNewEvents, stop", async () => {
  await sbx.files.makeDir("/tmp/w");
  const seen = [];
  const w = await sbx.files.watchDir("/tmp/w", (ev) => seen.push(ev), { recursive: true });
  assert.equal(w.running, true);
  await sbx.files.write("/tmp/w/new.txt", "1");
  await sbx.files.makeDir("/tmp/w/sub");
  await sleep(200); // the new directory gets its own watch
  await sbx.files.write("/tmp/w/sub/inner.txt", "2");
  await sbx.files.rename("/tmp/w/new.txt", "/tmp/w/renamed.txt");
  await sbx.files.remove("/tmp/w/renamed.txt");
  await waitFor(() => seen.some((e) => e.type === "remove" && e.path === "/tmp/w/renamed.txt"), 5000, "the remove event");
  const has = (type, path) => seen.some((e) => e.type === type && e.path === path);
  assert.ok(has("create", "/tmp/w/new.txt"), JSON.stringify(seen));
  assert.ok(has("create", "/tmp/w/sub/inner.txt"), "recursive: a directory made later is watched too");
  const rename = seen.find((e) => e.type === "rename");
  assert.deepEqual(rename, { type: "rename", path: "/tmp/w/new.txt", newPath: "/tmp/w/renamed.txt", name: "new.txt" });
  const polled = w.getNewEvents();
  assert.deepEqual(polled, seen, "getNewEvents returns the same events, in order");
  assert.deepEqual(w.getNewEvents(), [], "each event once");
  await w.stop();
  assert.equal(w.running, false);
  await sbx.files.write("/tmp/w/after-stop.txt", "x");
  await sleep(200);
  assert.ok(!seen.some((e) => e.path === "/tmp/w/after-stop.txt"), "no event after stop");

  await assert.rejects(sbx.files.watchDir("/tmp/no-such-dir"), NotFoundError);
  await assert.rejects(sbx.files.watchDir("/etc/hostname"), InvalidArgumentError);
});

test("a watch whose directory is removed ends with an error", async () => {
  await sbx.files.makeDir("/tmp/gone");
  let exitErr;
  const w = await sbx.files.watchDir("/tmp/gone", { onExit: (err) => { exitErr = err ?? null; } });
  await sbx.files.remove("/tmp/gone");
  await waitFor(() => !w.running, 5000, "the watch to end");
  // The events before the failure come first, then the failure.
  let threw = null;
  for (let i = 0; i < 3 && !threw; i++) {
    try {
      w.getNewEvents();
    } catch (e) {
      threw = e;
    }
  }
  assert.ok(threw instanceof SandboxError, String(threw));
  assert.match(threw.message, /\/tmp\/gone/);
  assert.equal(exitErr, threw, "onExit gets the same error");
});
