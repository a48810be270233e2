"""Domain rules, probed from inside real sandboxes: network.allow_out by name ("allowed.test")
and by wildcard ("*.cdn.test") lets a sandbox reach the addresses its names resolve to
through the engine's DNS forwarder, and nothing else; a name's new address is let through
and its old one expires; another resolver, a rewritten /etc/resolv.conf or /etc/hosts gains
nothing; pause/resume and an engine restart keep the rules; kill and restart leave no
address set behind; bad rules are refused at once.

The fake internet, its DNS server (TTL 2 s: the engine keeps an address DOMAINS_TTL_MIN =
10 s at least) and the engine come from test_egress.py's fixtures.
"""

from __future__ import annotations

import json
import signal
import os
import time
from typing import List

from ai2in import Sandbox
from it import Engine
from test_egress import FakeInternet, eng, inet, probe, reached, team  # noqa: F401 (fixtures)
from test_network import run, sh

TTL_MIN = 10  # engine/net/domains.h


def address_set(sbx: Sandbox) -> str:
    """The name of the sandbox's address set (firewall.h: AI2IN-<veth>, net.c's veth name)."""
    return "AI2IN-ai" + sbx.id.split("_", 1)[1][:12]


def sets() -> List[str]:
    return run("ipset", "list", "-n").stdout.split()


def set_members(name: str) -> List[str]:
    out = run("ipset", "list", name).stdout
    return sorted(line.split()[0] for line in out.split("Members:")[1].splitlines() if line.strip())


def test_allow_out_by_domain(eng: Engine, team: str, inet: FakeInternet) -> None:
    s = eng.sandbox(team, allow_internet_access=False, network={"allow_out": ["Allowed.Test."]})
    try:
        assert s.get_info()["network"] == {"allow_internet_access": False, "allow_out": ["allowed.test"], "deny_out": []}
        res = probe(s, "allowed.test:80", "unlisted.test:80", f"{inet.other_ip}:80", "denied.test:80", f"{inet.server_ip}:80")
        # The name's address, by name and then by address; an unlisted name is not even asked
        # upstream (REFUSED at once: a query about any name carries data out and its answer
        # data in, DNS tunnelling), and any other address is refused at once.
        assert set(reached(res)) == {"allowed.test:80", f"{inet.server_ip}:80"}, res
        assert res["unlisted.test:80"][0].startswith("no address") and res["unlisted.test:80"][1] < 2.0, res
        assert "No route to host" in res[f"{inet.other_ip}:80"][0] and res[f"{inet.other_ip}:80"][1] < 2.0, res
        assert set_members(address_set(s)) == [inet.server_ip]
    finally:
        s.kill()


def test_no_internet_asks_only_about_its_names(eng: Engine, team: str, inet: FakeInternet) -> None:
    """Without internet access DNS is no way out: a sandbox with domain rules may ask only
    about their names (over UDP and TCP), one with addresses only about nothing."""
    s = eng.sandbox(team, allow_internet_access=False, network={"allow_out": ["allowed.test"]})
    cidr = eng.sandbox(team, allow_internet_access=False, network={"allow_out": [f"{inet.server_ip}/32"]})
    try:
        gateway = s.files.read("/etc/resolv.conf").split()[1]
        s.files.write("/tmp/ask_tcp.py", ASK_TCP)
        rc, out = sh(s, f"python3 /tmp/ask_tcp.py {gateway} data-out.tunnel.test")
        assert out.startswith("ANSWER 5 0 "), out  # REFUSED (rcode 5), no answer: over TCP too
        rc, out = sh(s, f"python3 /tmp/ask_tcp.py {gateway} allowed.test")
        assert out.startswith("ANSWER 0 1 "), out
        res = probe(cidr, "allowed.test:80", f"{inet.server_ip}:80")
        assert res["allowed.test:80"][0].startswith("no address") and res["allowed.test:80"][1] < 2.0, res
        assert set(reached(res)) == {f"{inet.server_ip}:80"}, res
    finally:
        s.kill()
        cidr.kill()


def test_wildcard_and_cname(eng: Engine, team: str, inet: FakeInternet) -> None:
    www, apex = inet.extra_ips
    s = eng.sandbox(team, allow_internet_access=False, network={"allow_out": ["*.cdn.test"]})
    try:
        # www.cdn.test matches; cdn.test itself does not; files.cdn.test is a CNAME to
        # unlisted.test (the name asked matched: its chain's address is let through);
        # alias.test is a CNAME to www.cdn.test (the name asked did not match: nothing new).
        res = probe(s, "cdn.test:80", "alias.test:80", "www.cdn.test:80", "files.cdn.test:80")
        assert set(reached(res)) == {"www.cdn.test:80", "files.cdn.test:80"}, res
        assert set_members(address_set(s)) == sorted([www, inet.other_ip])
        assert not reached(probe(s, f"{apex}:80")), apex
    finally:
        s.kill()


def test_a_new_address_is_let_through_and_the_old_one_expires(eng: Engine, team: str, inet: FakeInternet) -> None:
    old, new = inet.extra_ips
    inet.set_answer("moving.test", old)
    s = eng.sandbox(team, allow_internet_access=False, network={"allow_out": ["moving.test"]})
    try:
        assert reached(probe(s, "moving.test:80", f"{old}:80")).keys() == {"moving.test:80", f"{old}:80"}
        inet.set_answer("moving.test", new)
        time.sleep(2.5)  # the sandbox's own resolver may cache for the answer's TTL
        res = probe(s, "moving.test:80", f"{new}:80", f"{old}:80")
        assert set(reached(res)) == {"moving.test:80", f"{new}:80", f"{old}:80"}, res  # the old one not expired yet
        time.sleep(TTL_MIN + 1)
        res = probe(s, "moving.test:80", f"{new}:80", f"{old}:80")
        assert set(reached(res)) == {"moving.test:80", f"{new}:80"}, res
        assert set_members(address_set(s)) == [new]
    finally:
        s.kill()
        inet.set_answer("moving.test", old)


def entry_timeout(name: str, ip: str) -> int:
    """Seconds the set's entry for ip has left (`ipset list`: "IP timeout N")."""
    for line in run("ipset", "list", name).stdout.split("Members:")[1].splitlines():
        if line.split()[:1] == [ip]:
            return int(line.split()[2])
    raise AssertionError(f"{ip} is not in {name}")


def test_an_address_asked_again_is_kept_as_long_as_its_newest_answer(eng: Engine, team: str, inet: FakeInternet) -> None:
    """A new answer for an address already admitted renews its entry when its TTL (at least
    TTL_MIN) outlasts what the entry has left, so a sandbox is never told to keep an address
    longer than it may reach it; one that would not outlast it changes nothing."""
    s = eng.sandbox(team, allow_internet_access=False, network={"allow_out": ["allowed.test"]})
    try:
        assert reached(probe(s, "allowed.test:80"))
        time.sleep(4)  # past the answer's own TTL (2 s): the next connect asks again
        before = entry_timeout(address_set(s), inet.server_ip)
        assert before <= TTL_MIN - 3, before
        assert reached(probe(s, "allowed.test:80"))
        renewed = entry_timeout(address_set(s), inet.server_ip)
        assert renewed >= TTL_MIN - 1, (before, renewed)
    finally:
        s.kill()


# From inside: a DNS query for NAME straight to SERVER:53, 2 s to answer.
ASK = r"""
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
q = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0\0\1\0\1"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(2)
try:
    u.sendto(q, (server, 53))
    a = u.recv(512)
    print("ANSWERED", socket.inet_ntoa(a[-4:]), "rcode", a[3] & 0x0f)
except OSError as e:
    print("failed:", e)
"""


def test_other_resolvers_and_hosts_gain_nothing(eng: Engine, team: str, inet: FakeInternet) -> None:
    s = eng.sandbox(team, allow_internet_access=False, network={"allow_out": ["allowed.test"]})
    try:
        s.files.write("/tmp/ask.py", ASK)
        # The fake internet's resolver, asked directly: refused (not only unanswered).
        rc, out = sh(s, f"python3 /tmp/ask.py {inet.server_ip} unlisted.test")
        assert "failed" in out and "ANSWERED" not in out, out
        # Through the engine's: refused, as the name is none of its rules' (DNS tunnelling).
        gateway = s.files.read("/etc/resolv.conf").split()[1]
        rc, out = sh(s, f"python3 /tmp/ask.py {gateway} unlisted.test")
        assert out.strip().endswith("rcode 5"), out
        # /etc/hosts naming an unlisted address, and /etc/resolv.conf naming another resolver.
        rc, out = sh(s, f"echo '{inet.other_ip} sneaky.test' >> /etc/hosts && "
                        f"echo 'nameserver {inet.server_ip}' > /etc/resolv.conf")
        assert rc == 0, out
        res = probe(s, "sneaky.test:80", "unlisted.test:80", f"{inet.other_ip}:80")
        assert not reached(res), res
        assert "no address" in res["unlisted.test:80"][0], res
        assert set_members(address_set(s)) == []
    finally:
        s.kill()


# From inside: asks SERVER for bulk0.cdn.test … bulk{N-1}.cdn.test, then bulk0 again, and
# prints each answer's rcode and number of answers as JSON.
ASK_MANY = r"""
import json, socket, struct, sys
server, n = sys.argv[1], int(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
out = []
for i in list(range(n)) + [0]:
    name = "bulk%d.cdn.test" % i
    q = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0\0\1\0\1"
    u.sendto(q, (server, 53))
    a = u.recv(4096)
    out.append([a[3] & 0x0f, struct.unpack(">H", a[6:8])[0]])
print(json.dumps(out))
"""


def test_a_full_address_set_answers_servfail(eng: Engine, team: str, inet: FakeInternet) -> None:
    """At most 4096 addresses at once (FIREWALL_SET_MAX): 128 answers of 32 fill the set; the
    next answer that would add one is SERVFAIL (said once in the log), a name already admitted
    is still answered."""
    s = eng.sandbox(team, allow_internet_access=False, network={"allow_out": ["*.cdn.test"]})
    try:
        s.files.write("/tmp/ask_many.py", ASK_MANY)
        gateway = s.files.read("/etc/resolv.conf").split()[1]
        rc, out = sh(s, f"python3 /tmp/ask_many.py {gateway} 129", timeout=120)
        assert rc == 0, out
        answers = json.loads(out.splitlines()[-1])
        assert answers[:128] == [[0, 32]] * 128, answers[:128]
        assert answers[128] == [2, 0], answers[128]  # SERVFAIL, no records
        assert answers[129] == [0, 32], answers[129]
        assert len(set_members(address_set(s))) == 4096
        with open(eng.log_path) as f:
            assert f.read().count(f"cannot let {address_set(s)[6:]} reach the addresses of bulk128.cdn.test") == 1
    finally:
        s.kill()


# From inside: NAME asked over UDP (flags and answer count of what comes back, and how long
# it took), then resolved by glibc (which asks again over TCP when the answer is truncated).
ASK_HUGE = r"""
import socket, struct, sys, time
server, name = sys.argv[1], sys.argv[2]
q = struct.pack(">HHHHHH", 11, 0x0100, 1, 0, 0, 0) + b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0\0\1\0\1"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(4)
t = time.monotonic()
u.sendto(q, (server, 53))
a = u.recv(65535)
print("UDP tc", (a[2] >> 1) & 1, "rcode", a[3] & 0x0f, "answers", struct.unpack(">H", a[6:8])[0], "in", round(time.monotonic() - t, 2))
print("GLIBC", len({ai[4][0] for ai in socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)}))
"""


def test_an_answer_too_long_for_udp_comes_truncated_then_whole_over_tcp(eng: Engine, team: str, inet: FakeInternet) -> None:
    """An upstream answer longer than the forwarder reads over UDP (4096 bytes) is answered at
    once with TC set and no records, not dropped (which left the client waiting out its
    timeout); the client's retry over TCP gets it whole, and its 256 addresses are admitted.
    One with more addresses than the forwarder admits from one answer (256) is SERVFAIL, not
    passed on with addresses the sandbox would be refused."""
    s = eng.sandbox(team, allow_internet_access=False, network={"allow_out": ["*.cdn.test"]})
    try:
        s.files.write("/tmp/ask_huge.py", ASK_HUGE)
        gateway = s.files.read("/etc/resolv.conf").split()[1]
        tcp_before = inet.tcp_queries()
        rc, out = sh(s, f"python3 /tmp/ask_huge.py {gateway} huge.cdn.test")
        assert rc == 0, out
        udp = out.split("UDP ")[1].split()
        assert udp[:6] == ["tc", "1", "rcode", "0", "answers", "0"] and float(udp[7]) < 1.0, out
        assert out.split("GLIBC ")[1].split()[0] == "256", out
        assert inet.tcp_queries() > tcp_before
        assert len(set_members(address_set(s))) == 256
        s.files.write("/tmp/ask_tcp.py", ASK_TCP)
        rc, out = sh(s, f"python3 /tmp/ask_tcp.py {gateway} huger.cdn.test")
        assert out.startswith("ANSWER 2 0 "), out  # SERVFAIL, no records
        assert len(set_members(address_set(s))) == 256
    finally:
        s.kill()


# From inside: a DNS query for NAME to SERVER:53 over TCP; prints rcode and answer count.
ASK_TCP = r"""
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
q = struct.pack(">HHHHHH", 9, 0x0100, 1, 0, 0, 0) + b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0\0\1\0\1"
c = socket.create_connection((server, 53), timeout=5)
c.sendall(struct.pack(">H", len(q)) + q)
f = c.makefile("rb")
a = f.read(struct.unpack(">H", f.read(2))[0])
print("ANSWER", a[3] & 0x0f, struct.unpack(">H", a[6:8])[0], len(a))
"""


def test_dns_over_tcp(eng: Engine, team: str, inet: FakeInternet) -> None:
    """A resolver that asks over TCP (a truncated answer's retry; here glibc's use-vc) is
    answered, through the upstream's TCP, and its answers admitted like UDP ones."""
    s = eng.sandbox(team, allow_internet_access=False, network={"allow_out": ["allowed.test", "*.cdn.test"]})
    try:
        gateway = s.files.read("/etc/resolv.conf").split()[1]
        before = inet.tcp_queries()
        rc, out = sh(s, f"printf 'nameserver {gateway}\\noptions use-vc\\n' > /etc/resolv.conf && cat /etc/resolv.conf")
        assert rc == 0 and "use-vc" in out, out
        res = probe(s, "allowed.test:80", "unlisted.test:80")
        assert set(reached(res)) == {"allowed.test:80"}, res
        assert inet.tcp_queries() > before
        s.files.write("/tmp/ask_tcp.py", ASK_TCP)
        rc, out = sh(s, f"python3 /tmp/ask_tcp.py {gateway} bulk7.cdn.test")
        assert "ANSWER 0 32" in out, out  # 560 bytes: more than a plain UDP answer holds
        assert f"100.64.7.32" in set_members(address_set(s))
    finally:
        s.kill()


# From inside: garbage at the forwarder (random datagrams, a query naming a pointer loop, TCP
# connections that send nothing, half a length, or a length past the bound), then a normal
# lookup.
HOSTILE = r"""
import os, socket, struct, sys
server = sys.argv[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(2000):
    u.sendto(os.urandom(i % 700), (server, 53))
loop = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\0\1\0\1"
for i in range(100):
    u.sendto(loop, (server, 53))
held = []
for payload in (b"", b"\x00", b"\xff\xff" + os.urandom(100), b"\x00\x05hello"):
    try:
        c = socket.create_connection((server, 53), timeout=2)
        c.sendall(payload)
        held.append(c)
    except OSError as e:
        print("tcp:", e)
print("sent")
"""


def test_hostile_queries_leave_dns_working(eng: Engine, team: str, inet: FakeInternet) -> None:
    s = eng.sandbox(team, allow_internet_access=False, network={"allow_out": ["allowed.test"]})
    other = eng.sandbox(team)
    try:
        gateway = s.files.read("/etc/resolv.conf").split()[1]
        s.files.write("/tmp/hostile.py", HOSTILE)
        rc, out = sh(s, f"python3 /tmp/hostile.py {gateway}", timeout=120)
        assert rc == 0 and "sent" in out, out
        assert set(reached(probe(s, "allowed.test:80"))) == {"allowed.test:80"}
        assert set(reached(probe(other, "allowed.test:80"))) == {"allowed.test:80"}
        assert eng.running
    finally:
        s.kill()
        other.kill()


def test_pause_resume_and_restart_keep_the_rules(eng: Engine, team: str, inet: FakeInternet) -> None:
    s = eng.sandbox(team, allow_internet_access=False, network={"allow_out": ["allowed.test"]})
    try:
        for keep_memory in (False, True):
            s.pause(keep_memory=keep_memory)
            s.resume()
            res = probe(s, "allowed.test:80", "unlisted.test:80")
            assert set(reached(res)) == {"allowed.test:80"}, (keep_memory, res)
        eng.restart()
        res = probe(s, "allowed.test:80", "unlisted.test:80")
        assert set(reached(res)) == {"allowed.test:80"}, res
    finally:
        s.kill()


def test_kill_and_restart_leave_no_address_set(eng: Engine, team: str) -> None:
    before = set(sets())
    a = eng.sandbox(team, allow_internet_access=False, network={"allow_out": ["allowed.test"]})
    b = eng.sandbox(team, network={"allow_out": ["*.cdn.test", "198.19.0.0/16"], "deny_out": ["203.0.113.0/24"]})
    assert set(sets()) - before == {address_set(a), address_set(b)}
    a.kill()
    assert set(sets()) - before == {address_set(b)}
    # Its container dead while the engine is down: the restarted engine removes its set.
    eng.stop(signal.SIGKILL)
    for state in [p for p in (os.path.join(d, "state.json") for d, _, f in os.walk(eng.run_dir) if "state.json" in f)
                  if b.id in p]:
        root = os.path.dirname(os.path.dirname(state))
        run("runc", "--root", root, "delete", "--force", b.id)
    eng.start()
    assert set(sets()) - before == set()
    for i in range(10):
        s = eng.sandbox(team, allow_internet_access=bool(i % 2), network={"allow_out": ["allowed.test"]})
        if i % 4 == 0:
            s.pause()
            s.resume()
        s.kill()
    assert set(sets()) - before == set()


def msg(doc: dict) -> str:
    return str(doc["error"]["message"])


def test_bad_rules_are_refused_at_once(eng: Engine, team: str) -> None:
    cases = {
        "bad..domain.test": "allow_out[0]",
        "-leading.test": "allow_out[0]",
        "*.*.test": "allow_out[0]",
        "*.test": "allow_out[0]",   # one label under the wildcard: a top-level domain
        "localhost": "allow_out[0]",
        "10.1.2": "allow_out[0]",   # a mistyped address, not a name
        "a" * 64 + ".test": "allow_out[0]",
        ("abcdefghi." * 26) + "test": "allow_out[0]",  # 264 characters
        "http://pypi.org/": "allow_out[0]",
    }
    for rule, where in cases.items():
        t = time.monotonic()
        status, doc, raw = eng.raw("POST", "/v1/sandboxes", {"network": {"allow_out": [rule]}}, key=team)
        assert status == 400 and where in msg(doc) and "domain such as pypi.org" in msg(doc), (rule, raw)
        assert time.monotonic() - t < 1.0
    status, doc, raw = eng.raw("POST", "/v1/sandboxes", {"network": {"deny_out": ["pypi.org"]}}, key=team)
    assert status == 400 and "is a domain: deny_out takes IPv4 CIDRs only" in msg(doc), raw
    status, doc, raw = eng.raw("POST", "/v1/sandboxes", {"network": {"allow_out": [f"h{i}.test" for i in range(65)]}}, key=team)
    assert status == 400 and "at most 64" in msg(doc), raw
    assert eng.list(team) == []
