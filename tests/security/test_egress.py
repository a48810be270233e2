"""Egress, probed from inside real sandboxes: a sandbox allowed out (the default) reaches the
"internet" through the engine's NAT, by address and by name; one created with
allow_internet_access=False reaches nothing, and its attempts fail at once rather than time
out; whatever a sandbox is allowed, the engine's deny list holds (169.254.0.0/16, the
operator's --deny-out ranges, the host itself and its engine API, other sandboxes); the
policy survives pause and resume; create and kill leave the ruleset as it was.

Safe for the host: every packet stays on this machine. The "internet" is a network namespace
on 198.19.R.0/24 (inside the benchmark range 198.18.0.0/15, which the test first checks the
host does not use) joined to the host by a veth, with an HTTP server and a small DNS server
(stdlib Python) in it; the engine sends the sandboxes' DNS there (--dns). 169.254.169.254 is
routed to that namespace for the test's duration, so a sandbox's packet to it can only land
there. Everything is removed whatever happens.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import signal
import socket
import subprocess
import time
from typing import Iterator, List, Optional, Tuple

import pytest
from ai2in import Sandbox
from it import Engine, rand_suffix, start_engine
from test_network import TEST_NET, host_uses, run, sandbox_ipv4, sh

METADATA = "169.254.169.254"
ON = {"allow_internet_access": True, "allow_out": [], "deny_out": []}
OFF = {"allow_internet_access": False, "allow_out": [], "deny_out": []}

# Runs in the namespace: an HTTP server on every address of it, port 80, that answers with
# who connected; a DNS server on port 53 that answers A queries for the names given as
# NAME=ADDR arguments (TTL 2 s) and NAME=>TARGET ones (a CNAME, the target's A record
# following when it has one), 32 addresses 100.64.N.1-32 for bulkN.cdn.test, 256 for
# huge.cdn.test and 300 for huger.cdn.test (answers longer than the forwarder reads over UDP),
# and NXDOMAIN
# otherwise, over UDP and TCP. Prints "ready", then reads lines: "?" prints the peers the
# HTTP server has seen as JSON, "set NAME ADDR" changes an answer and prints "ok", "tcp"
# prints how many queries came over TCP.
NS_SERVERS = r"""
import json, socket, struct, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
names, cnames = {}, {}
for arg in sys.argv[1:]:
    if "=>" in arg:
        name, target = arg.split("=>")
        cnames[name.encode()] = target.encode()
    else:
        name, addr = arg.split("=")
        names[name.encode()] = addr
peers = []
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        peers.append(self.client_address[0])
        body = ("fake-internet peer=%s\n" % self.client_address[0]).encode()
        # One write: a reader that takes one segment gets the whole answer.
        self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    def log_message(self, *a):
        pass
srv = ThreadingHTTPServer(("0.0.0.0", 80), H)
def wire(name):
    return b"".join(bytes([len(l)]) + l for l in name.split(b".")) + b"\0"
def respond(q):  # the answer to query q, or None to ignore it
    if len(q) < 17:
        return None
    tid, flags = q[:2], struct.unpack(">H", q[2:4])[0]
    i, labels = 12, []
    while i < len(q) and q[i]:
        labels.append(q[i + 1:i + 1 + q[i]])
        i += 1 + q[i]
    question = q[12:i + 5]
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    name = b".".join(labels).lower()
    rd = flags & 0x0100
    answers, owner = [], b"\xc0\x0c"
    if name in cnames and qtype == 1:
        target = wire(cnames[name])
        answers.append(owner + struct.pack(">HHIH", 5, 1, 2, len(target)) + target)
        owner, name = target, cnames[name]
    if name in names and qtype == 1:
        answers.append(owner + struct.pack(">HHIH", 1, 1, 2, 4) + socket.inet_aton(names[name]))
    elif name.startswith(b"bulk") and name.endswith(b".cdn.test") and qtype == 1:  # 32 addresses: 100.64.N.1-32
        n = int(name[4:-9])
        for k in range(1, 33):
            answers.append(owner + struct.pack(">HHIH", 1, 1, 2, 4) + bytes([100, 64, n, k]))
    elif name in (b"huge.cdn.test", b"huger.cdn.test") and qtype == 1:  # 256 or 300 addresses 100.65.K.1-250: over 4096 bytes
        for k in range(256 if name == b"huge.cdn.test" else 300):
            answers.append(owner + struct.pack(">HHIH", 1, 1, 2, 4) + bytes([100, 65, k // 250, k % 250 + 1]))
    known = name in names or name in cnames or bool(answers)
    rcode = 0 if answers or known else 3  # no AAAA record; NXDOMAIN for other names
    return tid + struct.pack(">HHHHH", 0x8180 | rd | rcode, 1, len(answers), 0, 0) + question + b"".join(answers)
def dns():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 53))
    while True:
        q, peer = u.recvfrom(512)
        a = respond(q)
        if a:
            u.sendto(a, peer)
tcp_queries = []
def dns_tcp_conn(c):
    with c:
        f = c.makefile("rb")
        while True:
            head = f.read(2)
            if len(head) < 2:
                return
            a = respond(f.read(struct.unpack(">H", head)[0]))
            if not a:
                return
            tcp_queries.append(1)
            c.sendall(struct.pack(">H", len(a)) + a)
def dns_tcp():
    t = socket.socket()
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("0.0.0.0", 53))
    t.listen(16)
    while True:
        c, _ = t.accept()
        threading.Thread(target=dns_tcp_conn, args=(c,), daemon=True).start()
threading.Thread(target=srv.serve_forever, daemon=True).start()
threading.Thread(target=dns, daemon=True).start()
threading.Thread(target=dns_tcp, daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    if line.startswith("set "):
        _, name, addr = line.split()
        names[name.encode()] = addr
        print("ok", flush=True)
    elif line.startswith("tcp"):
        print(len(tcp_queries), flush=True)
    else:
        print(json.dumps(peers), flush=True)
"""


class FakeInternet:
    """A namespace on 198.19.R.0/24: the server address .2 (allowed.test), a second address
    .66 (denied.test) inside the range given to the engine as --deny-out (.64/26), .130
    (unlisted.test), .140 and .141 (names of test_egress_domains.py), and 169.254.169.254,
    routed to it from the host."""

    def __init__(self) -> None:
        overlap = host_uses(TEST_NET)
        if overlap:
            pytest.fail(f"the host already uses {TEST_NET}, where this test puts its internet: {overlap}", pytrace=False)
        sfx = rand_suffix(6)
        r = random.randint(1, 254)
        self.name = "ai2t-inet-" + sfx
        self.host_if, self.ns_if = "ai2tih" + sfx, "ai2tin" + sfx
        self.host_ip, self.server_ip, self.denied_ip = f"198.19.{r}.1", f"198.19.{r}.2", f"198.19.{r}.66"
        self.other_ip = f"198.19.{r}.130"  # for a sandbox's own rules
        self.extra_ips = [f"198.19.{r}.140", f"198.19.{r}.141"]
        self.deny_out = f"198.19.{r}.64/26"
        self.proc: Optional[subprocess.Popen[str]] = None
        self.metadata_routed = False
        run("ip", "netns", "add", self.name)
        try:
            self._setup()
        except BaseException:
            self.remove()
            raise

    def _setup(self) -> None:
        run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if, "netns", self.name)
        if os.path.exists(f"/proc/sys/net/ipv6/conf/{self.host_if}"):
            with open(f"/proc/sys/net/ipv6/conf/{self.host_if}/disable_ipv6", "w") as f:
                f.write("1")
        run("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_if)
        run("ip", "link", "set", self.host_if, "up")
        for addr in (f"{self.server_ip}/24", f"{self.denied_ip}/24", f"{self.other_ip}/24",
                     *(f"{a}/24" for a in self.extra_ips), f"{METADATA}/32"):
            run("ip", "-n", self.name, "addr", "add", addr, "dev", self.ns_if)
        run("ip", "-n", self.name, "link", "set", self.ns_if, "up")
        run("ip", "-n", self.name, "link", "set", "lo", "up")
        run("ip", "-n", self.name, "route", "add", "default", "via", self.host_ip)
        # Only if the host has no route of its own for it (a cloud host's metadata service).
        via = run("ip", "route", "get", METADATA).stdout
        if "dev lo" in via or re.search(r"^169\.254\.", run("ip", "route", "show").stdout, re.M):
            pytest.skip(f"the host routes {METADATA} itself: {via.strip()}")
        run("ip", "route", "add", f"{METADATA}/32", "via", self.server_ip)
        self.metadata_routed = True
        www, apex = self.extra_ips
        answers = [f"allowed.test={self.server_ip}", f"denied.test={self.denied_ip}", f"unlisted.test={self.other_ip}",
                   f"moving.test={www}", f"www.cdn.test={www}", f"cdn.test={apex}", "files.cdn.test=>unlisted.test",
                   "alias.test=>www.cdn.test"]
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.name, "python3", "-c", NS_SERVERS, *answers],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready", "the fake internet's servers did not start"
        # Up, and reached from the host by each address (the host's own traffic is not the
        # engine's to filter): what a sandbox fails to reach is there.
        for addr in (self.server_ip, self.denied_ip, self.other_ip, *self.extra_ips, METADATA):
            with socket.create_connection((addr, 80), timeout=3) as c:
                c.sendall(b"GET / HTTP/1.0\r\n\r\n")
                assert b"fake-internet" in c.makefile("rb").read()

    def peers(self) -> List[str]:
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write("?\n")
        self.proc.stdin.flush()
        return list(json.loads(self.proc.stdout.readline()))

    def set_answer(self, name: str, addr: str) -> None:
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(f"set {name} {addr}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def tcp_queries(self) -> int:
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write("tcp\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def remove(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()
        if self.metadata_routed:
            run("ip", "route", "del", f"{METADATA}/32", "via", self.server_ip, check=False)
        run("ip", "link", "del", self.host_if, check=False)
        run("ip", "netns", "del", self.name, check=False)


@pytest.fixture(scope="module")
def inet() -> Iterator[FakeInternet]:
    f = FakeInternet()
    try:
        yield f
    finally:
        f.remove()


@pytest.fixture(scope="module")
def eng(inet: FakeInternet) -> Iterator[Engine]:
    e = start_engine(["--dns", inet.server_ip, "--deny-out", f"{inet.deny_out}, 203.0.113.0/24"])
    try:
        yield e
    finally:
        e.teardown()


@pytest.fixture(scope="module")
def team(eng: Engine) -> str:
    return eng.make_key("egress")


# From inside: for each target HOST:PORT, an HTTP GET (3 s timeout) and how long it took.
# A name is resolved first (its failure is reported as such).
PROBE = r"""
import json, socket, sys, time
out = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    t = time.monotonic()
    try:
        addr = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_STREAM)[0][4]
    except OSError as e:
        out[target] = ["no address: %s" % e, time.monotonic() - t]
        continue
    try:
        s = socket.create_connection(addr, timeout=3)
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        s.settimeout(3)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        data = data.decode(errors="replace")
        out[target] = ["REACHED " + data.splitlines()[-1] if data else "REACHED (empty)", time.monotonic() - t]
    except OSError as e:
        out[target] = ["failed: %s" % e, time.monotonic() - t]
print(json.dumps(out))
"""


def probe(sbx: Sandbox, *targets: str) -> dict:
    sbx.files.write("/tmp/egress_probe.py", PROBE)
    rc, out = sh(sbx, "python3 /tmp/egress_probe.py " + " ".join(targets), timeout=120)
    assert rc == 0, out
    return json.loads(out.splitlines()[-1])


def reached(results: dict) -> dict:
    return {t: r for t, (r, _) in results.items() if r.startswith("REACHED")}


def test_default_sandbox_reaches_the_internet_by_address_and_name(eng: Engine, team: str, inet: FakeInternet) -> None:
    s = eng.sandbox(team)
    try:
        assert s.get_info()["network"] == ON
        gateway = str(ipaddress.ip_network(eng.net_pool)[1])
        assert s.files.read("/etc/resolv.conf").split() == ["nameserver", gateway]
        res = probe(s, f"{inet.server_ip}:80", "allowed.test:80")
        # Through NAT: the server sees the host's address on its link, not the sandbox's.
        assert res[f"{inet.server_ip}:80"][0] == f"REACHED fake-internet peer={inet.host_ip}", res
        assert res["allowed.test:80"][0] == f"REACHED fake-internet peer={inet.host_ip}", res
        # The usual tools too.
        rc, out = sh(s, "curl -sS --max-time 5 http://allowed.test/")
        assert rc == 0 and "fake-internet" in out, out
        rc, out = sh(s, "getent hosts denied.test; getent hosts nosuch.test")
        assert inet.denied_ip in out and "nosuch" not in out, out
    finally:
        s.kill()


def test_no_internet_reaches_nothing_and_fails_at_once(eng: Engine, team: str, inet: FakeInternet) -> None:
    s = eng.sandbox(team, allow_internet_access=False)
    try:
        assert s.get_info()["network"] == OFF
        before = len(inet.peers())
        res = probe(s, f"{inet.server_ip}:80", f"{inet.server_ip}:443", "allowed.test:80", f"{METADATA}:80")
        assert not reached(res), res
        # Refused (EHOSTUNREACH from the engine's REJECT), not left to time out.
        for target, (what, took) in res.items():
            assert took < 2.0, f"{target}: {what} after {took:.1f} s"
        assert "No route to host" in res[f"{inet.server_ip}:80"][0], res
        assert "no address" in res["allowed.test:80"][0], res
        assert len(inet.peers()) == before, "the fake internet's server was reached"
    finally:
        s.kill()


def test_sdk_create_forms_pass_the_option(eng: Engine, team: str) -> None:
    import asyncio
    from ai2in import AsyncSandbox

    async def async_info() -> dict:
        a = await AsyncSandbox.create(api_key=team, api_url=eng.url, allow_internet_access=False)
        try:
            return (await a.get_info())["network"]
        finally:
            await a.kill()

    assert asyncio.run(async_info()) == OFF
    b = Sandbox.create(api_key=team, api_url=eng.url, allow_internet_access=False)
    try:
        assert b.get_info()["network"] == OFF
    finally:
        b.kill()


def host_ipv4_addresses() -> List[str]:
    return [line.split()[3].split("/")[0] for line in run("ip", "-4", "-o", "addr", "show").stdout.splitlines()]


def test_deny_list_holds_with_internet_on(eng: Engine, team: str, inet: FakeInternet) -> None:
    a = eng.sandbox(team)
    b = eng.sandbox(team)
    srv = socket.socket()
    try:
        # Another sandbox's server, and a server of the host on every address.
        b.commands.run("python3 -m http.server 8000 --bind 0.0.0.0 >/dev/null 2>&1", background=True)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", 0))
        srv.listen(16)
        host_port = srv.getsockname()[1]
        b_ip = sandbox_ipv4(b)
        time.sleep(0.5)
        targets = [f"{METADATA}:80", f"{inet.denied_ip}:80", "denied.test:80", f"{b_ip}:8000"]
        targets += [f"{ip}:{host_port}" for ip in host_ipv4_addresses()]
        targets += [f"{ip}:{eng.port}" for ip in host_ipv4_addresses()]  # the engine's API
        before = len(inet.peers())
        res = probe(a, f"{inet.server_ip}:80", *targets)
        assert reached(res) == {f"{inet.server_ip}:80": f"REACHED fake-internet peer={inet.host_ip}"}, res
        assert len(inet.peers()) == before + 1, inet.peers()
        # The engine's deny list refuses at once, like a sandbox without internet (another
        # sandbox is on the same link: bridge port isolation drops its frames, which time out).
        for t in (f"{METADATA}:80", f"{inet.denied_ip}:80"):
            assert res[t][1] < 2.0, (t, res[t])
    finally:
        srv.close()
        a.kill()
        b.kill()


def test_pause_and_resume_keep_the_policy(eng: Engine, team: str, inet: FakeInternet) -> None:
    on = eng.sandbox(team)
    off = eng.sandbox(team, allow_internet_access=False)
    try:
        for keep_memory in (False, True):
            for s in (on, off):
                s.pause(keep_memory=keep_memory)
                s.resume()
            assert on.get_info()["network"] == ON
            assert off.get_info()["network"] == OFF
            assert reached(probe(on, "allowed.test:80")), keep_memory
            assert not reached(probe(off, f"{inet.server_ip}:80")), keep_memory
    finally:
        on.kill()
        off.kill()


def test_a_sandboxs_own_rules(eng: Engine, team: str, inet: FakeInternet) -> None:
    """network.deny_out on top of the internet; network.allow_out without it (and the
    engine's deny list still above both); kept across pause and resume."""
    deny = eng.sandbox(team, network={"deny_out": [inet.server_ip]})
    allow = eng.sandbox(team, allow_internet_access=False,
                        network={"allow_out": [f"{inet.server_ip}/32", inet.deny_out, "169.254.0.0/16"]})
    try:
        assert deny.get_info()["network"] == {"allow_internet_access": True, "allow_out": [],
                                              "deny_out": [f"{inet.server_ip}/32"]}
        assert allow.get_info()["network"]["allow_out"] == [f"{inet.server_ip}/32", inet.deny_out, "169.254.0.0/16"]
        for rnd in range(2):
            res = probe(deny, f"{inet.server_ip}:80", "allowed.test:80", f"{inet.other_ip}:80", f"{inet.denied_ip}:80")
            assert set(reached(res)) == {f"{inet.other_ip}:80"}, res
            assert res[f"{inet.server_ip}:80"][1] < 2.0, res
            # Without internet and without domain rules, no name is resolved (a query is a way
            # out too: test_egress_domains.py): the allowed address by its number only.
            res = probe(allow, f"{inet.server_ip}:80", "allowed.test:80", f"{inet.other_ip}:80", f"{inet.denied_ip}:80",
                        f"{METADATA}:80")
            assert set(reached(res)) == {f"{inet.server_ip}:80"}, res
            assert res["allowed.test:80"][0].startswith("no address"), res
            for t, (what, took) in res.items():
                assert took < 2.0, (t, what, took)
            if rnd == 0:
                for s in (deny, allow):
                    s.pause()
                    s.resume()
    finally:
        deny.kill()
        allow.kill()


def engine_rules(bridge: str) -> Tuple[List[str], List[str]]:
    tag = re.compile(f'--comment "?ai2in:{re.escape(bridge)}"?( |$)')
    out = []
    for table in ("filter", "nat"):
        out.append(sorted(l for l in run("iptables", "-w", "-t", table, "-S").stdout.splitlines() if tag.search(l)))
    return out[0], out[1]


def address_sets() -> List[str]:
    return sorted(n for n in run("ipset", "list", "-n").stdout.split() if n.startswith("AI2IN-"))


def test_create_and_kill_leave_the_ruleset_as_it_was(eng: Engine, team: str) -> None:
    before, sets_before = engine_rules(eng.bridge), address_sets()
    assert before[0] and before[1], before
    # 100 cycles (the count) over every kind of policy: none, internet off, CIDR
    # rules, domain rules (their address set), some paused and resumed on the way.
    policies = [None, {"deny_out": ["203.0.113.7"]}, {"allow_out": ["198.51.100.0/24"]},
                {"allow_out": ["allowed.test", "*.example.test"]}]
    for i in range(100):
        s = eng.sandbox(team, allow_internet_access=bool(i % 2), network=policies[i % 4])
        if i % 10 == 0:
            s.pause()
            s.resume()
        if i % 4 == 3:
            assert len(address_sets()) == len(sets_before) + 1  # its own, while it lives
        s.kill()
    assert engine_rules(eng.bridge) == before
    assert address_sets() == sets_before
    # And a restart puts back the same rules, once; a live sandbox's own chain stays while it
    # lives and goes when it is killed while the engine is down.
    live = eng.sandbox(team, network={"deny_out": ["203.0.113.7"]})
    with_live = engine_rules(eng.bridge)
    # Its chain: its deny_out, the internet; and the jump to it.
    assert len(with_live[0]) == len(before[0]) + 3, with_live
    eng.restart()
    assert engine_rules(eng.bridge) == with_live
    live.kill()
    assert engine_rules(eng.bridge) == before


def test_restart_removes_the_chain_of_a_dead_sandbox(eng: Engine, team: str) -> None:
    """A sandbox with rules of its own whose container dies while the engine is down: the
    restarted engine tears it down, its chain included."""
    before = engine_rules(eng.bridge)
    s = eng.sandbox(team, network={"deny_out": ["203.0.113.9"]})
    assert engine_rules(eng.bridge) != before
    eng.stop(signal.SIGKILL)
    for state in [p for p in (os.path.join(d, "state.json") for d, _, f in os.walk(eng.run_dir) if "state.json" in f)
                  if s.id in p]:
        root = os.path.dirname(os.path.dirname(state))
        run("runc", "--root", root, "delete", "--force", s.id)
    eng.start()
    assert engine_rules(eng.bridge) == before
    assert eng.connect(s.id, team).get_info()["state"] == "error"
