"""TLS (issue 14): the API port over HTTPS (--tls-cert, --tls-key), requests between nodes over
TLS with the peer's certificate verified against --cluster-ca, and libpq's
sslmode=verify-full. Every certificate is made here with the openssl CLI: a cluster CA, node
certificates for localhost and 127.0.0.1 signed by it, and a rogue CA's certificate for the
same names.

One engine over HTTPS, used through the Python SDK (which trusts the CA through SSL_CERT_FILE,
as docs/deploy.md says): streamed commands, run_code, files both ways with checksums, a watch,
a PTY; plain HTTP to that port gets no answer; a client that does not trust the CA is refused.
Two nodes on the test's PostgreSQL with TLS and a cluster CA: a sandbox made through A is used
through B (forwarded over verified TLS); a third node whose certificate the CA did not sign is
refused (502 naming the untrusted certificate, in the forwarding node's log too), and so is
one that advertises plain http:// (never sent in plaintext). Files that are missing or do not
match stop the engine at once with a message naming them. The engine reaches a PostgreSQL that
requires TLS with sslmode=verify-full, and refuses one whose certificate the CA did not sign.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from ai2in import SandboxError
from conftest import Engine, free_port, wait_until
from test_database import PASSWORD, PgEngine, Postgres, postgres  # noqa: F401 (postgres: the fixture)
from test_forwarding import SECRET, secret_file
from test_nodes import node_engine
from test_preview import PORT, start_server, ws_frame, ws_read

HOME = "/home/sandbox"


class Certs:
    """A cluster CA with a node certificate for localhost and 127.0.0.1, and a rogue CA's
    certificate for the same names, made with the openssl CLI in a temporary directory."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="ai2in-tls-")
        self.ca = self.make_ca("ca", "ai2in test cluster CA")
        self.cert, self.key = self.make_cert("node", "ca")
        self.make_ca("rogue-ca", "not the cluster's CA")
        self.rogue_cert, self.rogue_key = self.make_cert("rogue", "rogue-ca")
        # A second key of the right kind, for "the key is not the certificate's".
        self.other_key = self.path("other.key")
        self.openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", self.other_key)
        # What the tests' own clients trust: both CAs (the engines trust only --cluster-ca).
        self.bundle = self.path("bundle.pem")
        with open(self.bundle, "w") as f:
            for ca in (self.ca, self.path("rogue-ca.pem")):
                f.write(open(ca).read())

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def openssl(self, *args: str) -> None:
        p = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, f"openssl {' '.join(args)}: {p.stderr}"

    def make_ca(self, name: str, cn: str) -> str:
        self.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", self.path(f"{name}.key"), "-out", self.path(f"{name}.pem"), "-days", "2",
                     "-subj", f"/CN={cn}")
        return self.path(f"{name}.pem")

    def make_cert(self, name: str, ca: str) -> Tuple[str, str]:
        ext = self.path(f"{name}.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName = DNS:localhost, IP:127.0.0.1, DNS:*.preview.test\n"
                    "extendedKeyUsage = serverAuth\n")
        self.openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", self.path(f"{name}.key"), "-out", self.path(f"{name}.csr"), "-subj", f"/CN={name}")
        self.openssl("x509", "-req", "-in", self.path(f"{name}.csr"), "-CA", self.path(f"{ca}.pem"),
                     "-CAkey", self.path(f"{ca}.key"), "-CAcreateserial", "-days", "2", "-extfile", ext,
                     "-out", self.path(f"{name}.pem"))
        return self.path(f"{name}.pem"), self.path(f"{name}.key")

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def certs() -> Iterator[Certs]:
    """The certificates, and SSL_CERT_FILE naming the CAs for as long as the module runs: the
    SDK's default context (and the engines' teardown through it) trusts them that way."""
    c = Certs()
    old = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = c.bundle
    try:
        yield c
    finally:
        if old is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = old
        c.close()


# The certificate has *.preview.test: a preview host in the DNS-safe form the SDKs make
# ("8000-sbx-….preview.test") is verified against it by name, as a browser or curl would.
DOMAIN = "preview.test"


def tls_args(cert: str, key: str) -> List[str]:
    return ["--tls-cert", cert, "--tls-key", key, "--preview-domain", DOMAIN]


@contextlib.contextmanager
def preview_tls(e: Engine, ca: str, sid: str, port: int = PORT) -> Iterator[Tuple[ssl.SSLSocket, str]]:
    """A TLS connection to e's preview proxy for that port of sandbox sid, its certificate
    verified for the preview host (the wildcard *.preview.test), and the Host to send."""
    host = f"{port}-{sid.replace('_', '-')}.{DOMAIN}"
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", e.preview_port), timeout=20) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            yield s, host


def preview_get(e: Engine, ca: str, sid: str, path: str = "/hello") -> Tuple[int, bytes]:
    with preview_tls(e, ca, sid) as (s, host):
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        resp = http.client.HTTPResponse(s)
        resp.begin()
        return resp.status, resp.read()


def websocket_echo(e: Engine, ca: str, sid: str) -> None:
    """A WebSocket through e's proxy over TLS: a short and a 70 KB message echoed."""
    ws_key = base64.b64encode(os.urandom(16)).decode()
    with preview_tls(e, ca, sid) as (s, host):
        s.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {ws_key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        f = s.makefile("rb")
        assert b" 101 " in f.readline()
        while f.readline() not in (b"\r\n", b""):
            pass
        for msg in (b"hello", os.urandom(70000)):
            s.sendall(ws_frame(msg, 1 if len(msg) < 100 else 2))
            assert ws_read(f)[1] == msg
        s.sendall(ws_frame(b"", 8))
        assert ws_read(f)[0] == 8


def check_preview(through: Engine, owner_sbx: Any, ca: str) -> None:
    """The test server in owner_sbx, reached over TLS through `through`'s preview proxy."""
    start_server(owner_sbx)
    assert wait_until(lambda: preview_get(through, ca, owner_sbx.id)[0] == 200, 20), \
        preview_get(through, ca, owner_sbx.id)
    status, body = preview_get(through, ca, owner_sbx.id, "/hello")
    assert status == 200 and body, (status, body)
    websocket_echo(through, ca, owner_sbx.id)


class TlsMixin:
    """An engine whose API the tests reach over HTTPS, as https://HOST:PORT."""

    port: int
    ca: str = ""
    host: str = "127.0.0.1"

    def use_tls(self, ca: str, host: str = "127.0.0.1") -> None:
        self.ca, self.host = ca, host
        self.url = f"https://{host}:{self.port}"

    def raw(self, method: str, path: str, body: Any = None, key: Optional[str] = None,
            headers: Optional[Dict[str, str]] = None, timeout: float = 30) -> Tuple[int, Any, bytes]:
        if not self.ca:
            return super().raw(method, path, body, key, headers, timeout)  # type: ignore[misc]
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                           context=ssl.create_default_context(cafile=self.ca))
        h = dict(headers or {})
        if key is not None:
            h.setdefault("X-API-Key", key)
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = None
        return resp.status, doc, raw


class TlsEngine(TlsMixin, Engine):
    pass


class TlsPgEngine(TlsMixin, PgEngine):
    pass


def start_fails(e: Engine, *extra: str) -> Tuple[str, float]:
    """Runs `serve` with extra, which must fail: returns its message and how long it took."""
    t0 = time.monotonic()
    p = subprocess.run([str(e.binary)] + e.base_args() + list(extra) + ["serve"], capture_output=True, text=True,
                       timeout=30, env=e.env())
    took = time.monotonic() - t0
    assert p.returncode != 0, f"ai2ind started with {extra}: {p.stdout}{p.stderr}"
    return p.stdout + p.stderr, took


def test_bad_tls_files_stop_the_start_at_once(certs: Certs) -> None:
    e = Engine()
    try:
        out, took = start_fails(e, *tls_args(certs.path("missing.pem"), certs.key))
        assert "cannot open tls-cert" in out and "missing.pem" in out, out
        assert took < 5, took
        out, took = start_fails(e, *tls_args(certs.cert, certs.other_key))
        assert "is not the key of the certificate" in out and "other.key" in out, out
        assert took < 5, took
        out, _ = start_fails(e, *tls_args(certs.key, certs.key))  # a key where the certificate goes
        assert "holds no PEM certificate" in out, out
        out, _ = start_fails(e, "--tls-cert", certs.cert)
        assert "tls-cert and tls-key go together" in out, out
        out, _ = start_fails(e, "--cluster-ca", certs.path("missing-ca.pem"), "--advertise", "https://localhost:1")
        assert "cannot open cluster-ca" in out and "missing-ca.pem" in out, out
        out, _ = start_fails(e, "--cluster-ca", certs.ca)  # its advertise: http://LISTEN
        assert "advertise" in out and "must be https://" in out, out
        assert not e.running
    finally:
        e.teardown()


@pytest.fixture
def tls_engine(certs: Certs) -> Iterator[TlsEngine]:
    e = TlsEngine(tls_args(certs.cert, certs.key))
    e.use_tls(certs.ca, "localhost")
    try:
        e.start()
        yield e
    finally:
        e.teardown()


def use_everything(sbx: Any) -> None:
    """Streams, run_code, files both ways, a watch and a PTY: every kind of request."""
    out: List[str] = []
    r = sbx.commands.run("for i in 1 2 3; do echo line$i; sleep 0.1; done; echo err >&2", on_stdout=out.append)
    assert r.exit_code == 0 and out == ["line1", "line2", "line3"] and r.stderr == "err\n", (r, out)
    ex = sbx.run_code("x = 6 * 7\nprint('printed', x)\nx")
    assert "printed 42" in "".join(ex.logs.stdout) and ex.text == "42", ex.logs

    data = os.urandom(8 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    sbx.files.write(f"{HOME}/up.bin", data)
    assert sbx.commands.run(f"sha256sum {HOME}/up.bin").stdout.split()[0] == digest
    assert hashlib.sha256(sbx.files.read(f"{HOME}/up.bin", format="bytes")).hexdigest() == digest

    sbx.files.make_dir(f"{HOME}/wd")
    w = sbx.files.watch_dir(f"{HOME}/wd")
    try:
        sbx.commands.run(f"touch {HOME}/wd/a")
        seen: List[str] = []
        assert wait_until(lambda: seen.extend(ev.name for ev in w.get_new_events()) or "a" in seen, 10), seen
    finally:
        w.stop()

    chunks: List[bytes] = []
    lock = threading.Lock()

    def on_data(d: bytes) -> None:
        with lock:
            chunks.append(d)

    t = sbx.pty.create(cols=80, rows=24, on_data=on_data)
    t.send_input(b"echo $((6*7))zz\n")
    assert wait_until(lambda: b"42zz" in b"".join(chunks), 10), b"".join(chunks)
    assert t.kill() is True


def test_sdk_over_https(tls_engine: TlsEngine, certs: Certs) -> None:
    e = tls_engine
    assert e.url.startswith("https://localhost:")
    key = e.make_key("tls")
    sbx = e.sandbox(key)
    use_everything(sbx)
    assert sbx.id in [s["id"] for s in e.list(key)]

    # Plain HTTP to the TLS port gets no HTTP answer.
    conn = http.client.HTTPConnection("127.0.0.1", e.port, timeout=10)
    try:
        with pytest.raises((OSError, http.client.HTTPException)):
            conn.request("GET", "/v1/health")
            conn.getresponse().read()
    finally:
        conn.close()
    # The preview proxy speaks TLS with the same certificate: a request and a WebSocket.
    status, doc, _ = e.raw("GET", f"/v1/sandboxes/{sbx.id}", key=key)
    assert status == 200 and doc["preview"] == {"scheme": "https", "domain": DOMAIN}, doc
    check_preview(e, sbx, certs.ca)
    with pytest.raises((OSError, http.client.HTTPException)):  # and no plain HTTP
        conn = http.client.HTTPConnection("127.0.0.1", e.preview_port, timeout=10)
        conn.request("GET", "/", headers={"Host": f"{PORT}-{sbx.id}.{DOMAIN}"})
        status = conn.getresponse().status
        pytest.fail(f"plain HTTP to the TLS preview port answered {status}")

    # A client that trusts only the rogue CA refuses the engine's certificate.
    ctx = ssl.create_default_context(cafile=certs.path("rogue-ca.pem"))
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection(("127.0.0.1", e.port), timeout=10) as s:
            ctx.wrap_socket(s, server_hostname="localhost")
    assert sbx.kill() is True


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> int:
    return int(re.search(r"^Threads:\s+(\d+)", open(f"/proc/{pid}/status").read(), re.M).group(1))


def test_a_tls_preview_client_that_reads_nothing_costs_no_cpu(tls_engine: TlsEngine, certs: Certs) -> None:
    """A response the sandbox finished sending (its side of the TLS pipe hung up) to a client
    that reads none of it: the pipe's thread waits without spinning, and ends after a while."""
    e = tls_engine
    key = e.make_key("tls-stall")
    sbx = e.sandbox(key)
    sbx.commands.run("head -c 150000 /dev/zero > /tmp/blob && cd /tmp && "
                     "python3 -m http.server 8009 >/dev/null 2>&1", background=True).disconnect()
    assert wait_until(lambda: sbx.commands.run("curl -sf -o /dev/null localhost:8009/blob").exit_code == 0, 20)
    before = threads(e.pid())
    host = f"8009-{sbx.id.replace('_', '-')}.{DOMAIN}"
    ctx = ssl.create_default_context(cafile=certs.ca)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a window that fills at once
    raw.connect(("127.0.0.1", e.preview_port))
    s = ctx.wrap_socket(raw, server_hostname=host)
    try:
        s.sendall(f"GET /blob HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        time.sleep(3)  # the sandbox sends it all and closes; nothing is read here
        cpu = cpu_seconds(e.pid())
        time.sleep(3)
        spent = cpu_seconds(e.pid()) - cpu
        assert spent < 0.5, f"the engine spent {spent:.2f} s of CPU in 3 s on a stalled TLS preview client"
        # The pipe's thread does not outlive the connection for ever (FLUSH_MS without progress).
        assert wait_until(lambda: threads(e.pid()) <= before, 30), (threads(e.pid()), before)
    finally:
        s.close()
        sbx.kill()


@pytest.fixture
def tls_nodes(postgres: Postgres, certs: Certs) -> Iterator[Tuple[TlsPgEngine, TlsPgEngine, str]]:
    pools = random.sample(range(1, 255), 2)
    made: List[TlsPgEngine] = []
    with secret_file(SECRET) as secret:
        try:
            for name, pool, host in (("node-a", pools[0], "localhost"), ("node-b", pools[1], "127.0.0.1")):
                e = tls_node(postgres, name, pool, host, certs.cert, certs.key, certs, secret)
                made.append(e)
                e.start()
            a, b = made
            key = a.make_key("tls-cluster")
            b.keys[key] = "tls-cluster"
            yield a, b, key
        finally:
            for e in reversed(made):
                e.teardown()


def tls_node(postgres: Postgres, name: str, pool: int, host: str, cert: str, key: str, certs: Certs,
             secret: str) -> TlsPgEngine:
    """A node of the TLS cluster advertising https://HOST:PORT (a name or an address: both
    kinds of subjectAltName are checked)."""
    plain = node_engine(postgres.url, name, pool)
    e = TlsPgEngine(postgres.url)
    e.net_pool = plain.net_pool
    e.use_tls(certs.ca, host)
    e.extra_args = plain.extra_args + tls_args(cert, key) + [
        "--cluster-ca", certs.ca, "--cluster-secret-file", secret, "--advertise", f"https://{host}:{e.port}"]
    return e


def test_cluster_over_verified_tls(tls_nodes: Tuple[TlsPgEngine, TlsPgEngine, str]) -> None:
    a, b, key = tls_nodes
    made = a.sandbox(key)
    assert made.get_info()["node"] == "node-a"
    sbx = b.connect(made.id, key)  # forwarded B → A over TLS (A verified as "localhost")
    use_everything(sbx)
    assert made.id in [s["id"] for s in b.list(key)]
    sbx.pause()
    sbx.resume()
    assert sbx.commands.run("echo back").stdout == "back\n"

    # What TLS between the nodes costs a command round trip (printed; each relayed request
    # opens its own connection, so it pays a handshake).
    def p50(target: Any) -> float:
        times = []
        for _ in range(20):
            t0 = time.monotonic()
            target.commands.run("true")
            times.append((time.monotonic() - t0) * 1000)
        return statistics.median(times)

    direct, relayed = p50(made), p50(sbx)
    print(f"\ncommand round trip p50 over HTTPS: to the owner {direct:.1f} ms, through another node "
          f"over verified TLS {relayed:.1f} ms")

    # And A → B (B verified as 127.0.0.1).
    made_b = b.sandbox(key)
    assert made_b.get_info()["node"] == "node-b"
    assert a.connect(made_b.id, key).commands.run("echo via-a").stdout == "via-a\n"
    # A preview through B's proxy, relayed to A's over verified TLS.
    check_preview(b, made, a.ca)
    assert sbx.kill() is True and made_b.kill() is True


def test_untrusted_or_plaintext_node_refused(tls_nodes: Tuple[TlsPgEngine, TlsPgEngine, str], postgres: Postgres,
                                            certs: Certs) -> None:
    a, _, key = tls_nodes
    with secret_file(SECRET) as secret:
        # Node C serves a certificate of another CA for the same names (and has the secret).
        c = tls_node(postgres, "node-c", random.randint(1, 254), "localhost", certs.rogue_cert, certs.rogue_key,
                     certs, secret)
        c.use_tls(certs.path("rogue-ca.pem"), "localhost")
        try:
            c.start()
            c.keys[key] = "tls-cluster"
            theirs = c.sandbox(key)
            assert theirs.get_info()["node"] == "node-c"  # read from the store: no forwarding
            via_a = a.connect(theirs.id, key)
            with pytest.raises(SandboxError) as err:
                via_a.commands.run("echo never")
            assert err.value.status == 502 and "not trusted" in str(err.value), err.value
            assert "node-c" in str(err.value)
            log = open(a.log_path, encoding="utf-8", errors="replace").read()
            assert "certificate is not trusted" in log, log[-2000:]
            # A preview through A's proxy, relayed to C's: refused the same way.
            status, body = preview_get(a, certs.ca, theirs.id)
            assert status == 502 and b"not trusted" in body, (status, body)

            # C again without TLS, advertising http://: A sends it nothing in plaintext.
            c.stop()
            c.use_tls("", "127.0.0.1")
            c.url = f"http://127.0.0.1:{c.port}"
            c.extra_args = node_engine(postgres.url, "node-c", 1).extra_args + ["--cluster-secret-file", secret]
            c.start()
            with pytest.raises(SandboxError) as err:
                via_a.commands.run("echo never")
            assert err.value.status == 502 and "plain http://" in str(err.value), err.value
            status, body = preview_get(a, certs.ca, theirs.id)
            assert status == 502 and b"plaintext" in body, (status, body)
            assert c.connect(theirs.id, key).kill() is True
        finally:
            c.teardown()


class TlsPostgres(Postgres):
    """The test PostgreSQL, listening on 127.0.0.1 too, TLS required there (hostssl only)."""

    def __init__(self, certs: Certs) -> None:
        self.tcp_port = free_port()
        d = tempfile.mkdtemp(prefix="ai2in-pgtls-")
        for src, name in ((certs.cert, "server.crt"), (certs.key, "server.key")):
            shutil.copy(src, os.path.join(d, name))
            shutil.chown(os.path.join(d, name), "postgres", "postgres")
            os.chmod(os.path.join(d, name), 0o600)
        shutil.chown(d, "postgres", "postgres")
        self.cert_dir = d
        super().__init__()
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
        self.stop()
        self.opts = (f"-c listen_addresses=127.0.0.1 -c port={self.tcp_port} -c unix_socket_directories={self.dir} "
                     f"-c ssl=on -c ssl_cert_file={d}/server.crt -c ssl_key_file={d}/server.key -c fsync=off")
        self.start()

    def tls_url(self, ca: str) -> str:
        return (f"postgresql://postgres:{PASSWORD}@localhost:{self.tcp_port}/ai2in"
                f"?sslmode=verify-full&sslrootcert={ca}")

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.cert_dir, ignore_errors=True)


def test_database_with_verify_full(certs: Certs) -> None:
    pg = TlsPostgres(certs)
    try:
        good = PgEngine(pg.tls_url(certs.ca))
        try:
            assert good.make_key("pg-tls").startswith("ai2in_live_")
            good.keys.clear()  # made only to reach the database: no engine to clean up through
        finally:
            good.teardown()
        bad = PgEngine(pg.tls_url(certs.path("rogue-ca.pem")))
        try:
            p = subprocess.run([str(bad.binary)] + bad.base_args() + ["keys", "create", "--team", "x"],
                               capture_output=True, text=True, timeout=60, env=bad.env())
            assert p.returncode != 0, p.stdout
            assert "certificate verify failed" in p.stderr, p.stderr
            assert PASSWORD not in p.stderr + p.stdout
        finally:
            bad.teardown()
    finally:
        pg.close()
