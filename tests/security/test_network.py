"""The network a sandbox sees, probed from inside real sandboxes: no IPv6 at all (so no way to
the host's IPv6 services by the bridge's link-local address), nothing forwarded beyond the
bridge whatever the host's net.ipv4.ip_forward, and a /sys/class/net that lists only the
sandbox's own interfaces (with the things that read /sys still working, across pause and
resume, and nothing of it left on the host after kill or a restart).

Safe for the host: every packet goes to this machine only — the host's own addresses, the
engine's bridge, and a network namespace the test makes on 198.18.0.0/15 (routed to that
namespace for the test's duration, so nothing "beyond the bridge" can leave the machine).
The forwarding test sets net.ipv4.ip_forward=1 and puts the previous value back (the engine
itself turns it on for egress: test_egress.py), with sandboxes created without internet access.
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
import threading
import time
from typing import List, Optional, Set, Tuple

import pytest
from ai2in import Sandbox
from it import Engine, mounts_under, rand_suffix, start_engine, wait_until


def sh(sbx: Sandbox, cmd: str, user: str = "root", timeout: int = 60) -> Tuple[int, str]:
    r = sbx.commands.run(cmd + " 2>&1; echo rc=$?", user=user, timeout=timeout)
    out = r.stdout.rstrip("\n")
    body, _, rc = out.rpartition("rc=")
    return int(rc), body.strip()


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def sandbox_ipv4(sbx: Sandbox) -> str:
    rc, out = sh(sbx, "python3 -c \"import socket, fcntl, struct; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                      "print(socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, struct.pack('256s', b'eth0'))[20:24]))\"")
    assert rc == 0, out
    return out.split()[-1]


# -- (a) IPv6 --------------------------------------------------------------------------------


def host_ipv6_addresses() -> List[Tuple[str, str, bool]]:
    """(address, interface, link-local) of every non-loopback IPv6 address of the host."""
    out = []
    try:
        with open("/proc/net/if_inet6") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        hexaddr, _idx, _plen, scope, _flags, ifname = line.split()
        addr = ipaddress.IPv6Address(bytes.fromhex(hexaddr))
        if ifname == "lo" or addr.is_loopback:
            continue
        out.append((str(addr), ifname, int(scope, 16) == 0x20))
    return out


class Listener:
    """A TCP server on the host bound to [::] (dual stack) that answers every connection with
    a line and records who connected."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.sock.bind(("::", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.peers: List[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                c, peer = self.sock.accept()
            except OSError:
                continue
            self.peers.append(peer[0])
            try:
                c.sendall(b"HOST-SERVICE\n")
            finally:
                c.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


# Connects to each target (address, port) and prints {target: what happened} as JSON. First
# waits (up to 4 s) for the sandbox's own IPv6 addresses, if it has any, to finish duplicate
# address detection, so that an open IPv6 path is found open rather than "not yet".
PROBE = r"""
import json, socket, sys, time
port = int(sys.argv[1])
deadline = time.monotonic() + 4
while time.monotonic() < deadline:
    try:
        rows = open("/proc/net/if_inet6").read().split("\n")
    except OSError:
        break
    if not any(r and int(r.split()[4], 16) & 0x40 for r in rows):  # IFA_F_TENTATIVE
        break
    time.sleep(0.1)
out = {}
for target in sys.argv[2:]:
    try:
        family = socket.AF_INET6 if ":" in target else socket.AF_INET
        addr = socket.getaddrinfo(target, port, family, socket.SOCK_STREAM)[0][4]
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(3)
        s.connect(addr)
        out[target] = "REACHED " + s.recv(64).decode(errors="replace").strip()
    except OSError as e:
        out[target] = "failed: %s" % e
print(json.dumps(out))
"""


def test_no_ipv6_to_the_host_and_none_inside(engine: Engine, sbx: Sandbox) -> None:
    gateway = str(ipaddress.ip_network(engine.net_pool)[1])
    srv = Listener()
    try:
        # Every IPv6 address of the host (the bridge's link-local one, if it has one, among
        # them; a link-local address is tried through the sandbox's eth0), and the bridge's
        # IPv4 address for good measure (the same dual-stack server, the host's INPUT rules).
        targets = [f"{a}%eth0" if ll else a for a, _if, ll in host_ipv6_addresses()] + [gateway]
        sbx.files.write("/tmp/probe.py", PROBE)
        rc, out = sh(sbx, f"python3 /tmp/probe.py {srv.port} {' '.join(targets)}", timeout=120)
        assert rc == 0, out
        results = json.loads(out.splitlines()[-1])
        reached = {t: r for t, r in results.items() if r.startswith("REACHED")}
        assert not reached, f"the sandbox reached a server of the host: {reached}"
        assert not srv.peers, f"the host's server was connected to from {srv.peers}"
    finally:
        srv.close()
    # No IPv6 address inside at all (not even ::1), and none on the bridge.
    rc, out = sh(sbx, "cat /proc/net/if_inet6; ip -6 addr")
    assert out == "", f"the sandbox has IPv6 addresses:\n{out}"
    assert not [a for a, ifname, _ in host_ipv6_addresses() if ifname == engine.bridge], \
        f"the bridge {engine.bridge} has an IPv6 address"


TURN_ON = [
    "sysctl -w net.ipv6.conf.all.disable_ipv6=0",
    "sysctl -w net.ipv6.conf.eth0.disable_ipv6=0",
    "echo 0 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
    "echo 0 > /proc/sys/net/ipv6/conf/lo/disable_ipv6",
    "mount -o remount,rw /proc/sys && echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6",
    "ip -6 addr add 2001:db8::5/64 dev eth0",
    "ip link set eth0 down",
]


def test_root_inside_cannot_turn_ipv6_on(sbx: Sandbox) -> None:
    for cmd in TURN_ON:
        rc, out = sh(sbx, cmd)
        assert rc != 0, f"`{cmd}` succeeded as root inside: {out}"
    rc, out = sh(sbx, "cat /proc/sys/net/ipv6/conf/{all,default,lo,eth0}/disable_ipv6 | tr '\\n' ' '; "
                      "cat /proc/net/if_inet6")
    assert rc == 0 and out.split() == ["1", "1", "1", "1"], \
        f"IPv6 is on inside the sandbox (disable_ipv6 of all, default, lo, eth0, then addresses): {out}"
    # The network still works (the failures above were refusals, not damage).
    assert sbx.commands.run("echo ok").stdout == "ok\n"
    rc, out = sh(sbx, "ip -br link show eth0")
    assert rc == 0 and "UP" in out, out


# -- (b) forwarding ----------------------------------------------------------------------------

# Runs in the test's network namespace: a TCP server on every address of it, and a sniffer on
# its veth that records every IPv4 packet whose source is in the sandbox pool. Prints "ready",
# then for each line read prints what the sniffer saw so far as JSON.
NS_HELPER = r"""
import ipaddress, json, socket, sys, threading
pool, port, ifname = ipaddress.ip_network(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
seen = []
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port))
srv.listen(16)
def serve():
    while True:
        c, peer = srv.accept()
        c.sendall(b"FORWARDED\n")
        c.close()
sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
sniff.bind((ifname, 0))
def watch():
    while True:
        frame = sniff.recv(65535)
        if frame[12:14] == b"\x08\x00" and ipaddress.ip_address(frame[26:30]) in pool:
            seen.append("%s -> %s" % (ipaddress.ip_address(frame[26:30]), ipaddress.ip_address(frame[30:34])))
threading.Thread(target=serve, daemon=True).start()
threading.Thread(target=watch, daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    print(json.dumps(seen), flush=True)
"""

# From inside the sandbox: TCP connects and UDP datagrams to each target.
FORWARD_PROBE = r"""
import json, socket, sys
out = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        s = socket.create_connection((host, int(port)), timeout=3)
        out["tcp " + target] = "REACHED " + s.recv(64).decode(errors="replace").strip()
    except OSError as e:
        out["tcp " + target] = "failed: %s" % e
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(3):
            u.sendto(b"ping", (host, int(port)))
        out["udp " + target] = "sent"
    except OSError as e:
        out["udp " + target] = "failed: %s" % e
print(json.dumps(out))
"""

TEST_NET = ipaddress.ip_network("198.18.0.0/15")


def host_uses(net: ipaddress.IPv4Network) -> List[str]:
    """Addresses and routes of the host that overlap net."""
    found = []
    for line in run("ip", "-4", "-o", "addr", "show").stdout.splitlines():
        addr = ipaddress.ip_interface(line.split()[3])
        if addr.network.overlaps(net):
            found.append(line.strip())
    for line in run("ip", "-4", "route", "show", "table", "all").stdout.splitlines():
        dst = line.split()[0]
        if dst in ("default", "broadcast", "local", "unreachable", "blackhole", "prohibit"):
            dst = line.split()[1] if dst != "default" else "0.0.0.0/0"
        try:
            if dst != "0.0.0.0/0" and ipaddress.ip_network(dst, strict=False).overlaps(net):
                found.append(line.strip())
        except ValueError:
            pass
    return found


class LanNetns:
    """A network namespace on 198.18.R.0/24 joined to the host by a veth of its own, with the
    whole of 198.18.0.0/15 routed to it, and NS_HELPER running in it."""

    def __init__(self, pool: str) -> None:
        sfx = rand_suffix(6)
        self.name = "ai2t-fwd-" + sfx
        self.host_if, self.ns_if = "ai2tfh" + sfx, "ai2tfn" + sfx
        r = random.randint(1, 254)
        self.host_ip, self.ns_ip = f"198.18.{r}.1", f"198.18.{r}.2"
        self.port = random.randint(20000, 40000)
        self.helper: Optional[subprocess.Popen[str]] = None
        self.routed = False
        run("ip", "netns", "add", self.name)
        try:
            self._setup(pool)
        except BaseException:
            self.remove()
            raise

    def _setup(self, pool: str) -> None:
        run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if, "netns", self.name)
        if os.path.exists(f"/proc/sys/net/ipv6/conf/{self.host_if}"):  # quiet: IPv4 only
            with open(f"/proc/sys/net/ipv6/conf/{self.host_if}/disable_ipv6", "w") as f:
                f.write("1")
        run("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_if)
        run("ip", "link", "set", self.host_if, "up")
        run("ip", "-n", self.name, "addr", "add", f"{self.ns_ip}/24", "dev", self.ns_if)
        run("ip", "-n", self.name, "link", "set", self.ns_if, "up")
        run("ip", "-n", self.name, "link", "set", "lo", "up")
        run("ip", "-n", self.name, "route", "add", "default", "via", self.host_ip)
        run("ip", "route", "add", str(TEST_NET), "via", self.ns_ip)
        self.routed = True
        self.helper = subprocess.Popen(["ip", "netns", "exec", self.name, "python3", "-c", NS_HELPER, pool,
                                        str(self.port), self.ns_if],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.helper.stdout is not None
        assert self.helper.stdout.readline().strip() == "ready", "the namespace's helper did not start"

    def seen(self) -> List[str]:
        assert self.helper and self.helper.stdin and self.helper.stdout
        self.helper.stdin.write("?\n")
        self.helper.stdin.flush()
        return list(json.loads(self.helper.stdout.readline()))

    def remove(self) -> None:
        if self.helper:
            self.helper.kill()
            self.helper.wait()
        if self.routed:
            run("ip", "route", "del", str(TEST_NET), "via", self.ns_ip, check=False)
        run("ip", "link", "del", self.host_if, check=False)
        run("ip", "netns", "del", self.name, check=False)


def read_ip_forward() -> str:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        return f.read().strip()


def write_ip_forward(value: str) -> None:
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write(value)


def probe_beyond_the_bridge(engine: Engine, sbx: Sandbox) -> Tuple[dict, List[str]]:
    """With net.ipv4.ip_forward=1 (put back afterwards), what the sandbox reached beyond the
    bridge over TCP, and which of its packets arrived in the test's namespace."""
    overlap = host_uses(TEST_NET)
    if overlap:
        pytest.fail(f"the host already uses {TEST_NET}, which this test routes to a namespace of "
                    f"its own: {overlap}", pytrace=False)
    sbx_ip = sandbox_ipv4(sbx)
    before = read_ip_forward()
    ns = LanNetns(engine.net_pool)
    try:
        write_ip_forward("1")
        # The server is up (the host reaches it), and the host's routing would forward the
        # sandbox's packets to the namespace: only the engine's policy can stop them.
        with socket.create_connection((ns.ns_ip, ns.port), timeout=3) as c:
            assert c.recv(64) == b"FORWARDED\n"
        route = run("ip", "route", "get", ns.ns_ip, "from", sbx_ip, "iif", engine.bridge).stdout
        assert ns.host_if in route, f"the host would not forward {sbx_ip} -> {ns.ns_ip}: {route}"
        # The namespace's server, and addresses "beyond the bridge" elsewhere in 198.18.0.0/15
        # (routed to the namespace: the host's LAN stands in for them).
        own = ipaddress.ip_network(f"{ns.ns_ip}/24", strict=False)
        others: List[str] = []
        while len(others) < 3:
            a = TEST_NET[random.randint(2, TEST_NET.num_addresses - 2)]
            if a not in own:
                others.append(str(a))
        targets = [f"{ns.ns_ip}:{ns.port}"] + [f"{a}:{p}" for a, p in zip(others, (80, 53, 443))]
        sbx.files.write("/tmp/fwd.py", FORWARD_PROBE)
        rc, out = sh(sbx, "python3 /tmp/fwd.py " + " ".join(targets), timeout=120)
        assert rc == 0, out
        results = json.loads(out.splitlines()[-1])
        reached = {t: r for t, r in results.items() if r.startswith("REACHED")}
        time.sleep(0.5)
        return reached, ns.seen()
    finally:
        write_ip_forward(before)
        ns.remove()
        assert read_ip_forward() == before


def test_nothing_is_forwarded_beyond_the_bridge(engine: Engine, module_key: str) -> None:
    """A sandbox created without internet access (what one with it may reach beyond the
    bridge: test_egress.py)."""
    sbx = engine.sandbox(module_key, allow_internet_access=False)
    try:
        reached, seen = probe_beyond_the_bridge(engine, sbx)
    finally:
        sbx.kill()
    assert not reached, f"with ip_forward=1 the sandbox reached a server beyond the bridge: {reached}"
    assert not seen, f"packets of the sandbox were forwarded out of the host: {seen[:10]}"


def test_rules_stay_above_other_owners_accept_rules() -> None:
    """A host firewall manager's ACCEPT rules for the bridge (Docker's, ufw's), put at the top
    of FORWARD and INPUT while the engine was down, do not win once it is back."""
    e = start_engine()
    foreign = [[chain, "-i", e.bridge, "-m", "comment", "--comment", "not-ai2in-test", "-j", "ACCEPT"]
               for chain in ("INPUT", "FORWARD")]
    foreign.append(["FORWARD", "-o", e.bridge, "-m", "comment", "--comment", "not-ai2in-test", "-j", "ACCEPT"])
    try:
        e.stop()
        for rule in foreign:
            run("iptables", "-w", "-I", rule[0], "1", *rule[1:])
        e.start()
        sbx = e.sandbox(e.make_key("fw"), allow_internet_access=False)
        reached, seen = probe_beyond_the_bridge(e, sbx)
        assert not reached and not seen, (reached, seen)
        # The host's services too, through the bridge's address (INPUT).
        srv = Listener()
        try:
            gateway = str(ipaddress.ip_network(e.net_pool)[1])
            sbx.files.write("/tmp/probe.py", PROBE)
            rc, out = sh(sbx, f"python3 /tmp/probe.py {srv.port} {gateway}")
            assert rc == 0 and "REACHED" not in out and not srv.peers, out
        finally:
            srv.close()
        # Where the rules stand: above the other owner's.
        for chain in ("INPUT", "FORWARD"):
            listing = [line for line in run("iptables", "-w", "-S", chain).stdout.splitlines() if line.startswith("-A")]
            first_foreign = min(i for i, line in enumerate(listing) if "not-ai2in-test" in line)
            ours = [i for i, line in enumerate(listing) if re.search(f'--comment "?ai2in:{e.bridge}"?( |$)', line)]
            # INPUT: replies, the DNS forwarder's port (UDP, and TCP reset), the drop.
            assert len(ours) == (4 if chain == "INPUT" else 2) and max(ours) < first_foreign, (chain, listing)
    finally:
        for rule in foreign:
            run("iptables", "-w", "-D", *rule, check=False)
        e.teardown()


# -- (c) /sys ----------------------------------------------------------------------------------

SYS_VIEW = r"""
import json, os
def ls(p):
    try:
        return sorted(os.listdir(p))
    except OSError as e:
        return ["error: %s" % e]
nets = set()  # every network device directory anywhere under /sys/devices
for root, dirs, files in os.walk("/sys/devices"):
    if os.path.basename(root) == "net":
        nets.update(os.path.join(root, d) for d in dirs)
        dirs[:] = []
    elif root.count("/") > 9:
        dirs[:] = []
def read(p):
    try:
        return open(p).read().strip()
    except OSError as e:
        return "error: %s" % e
print(json.dumps({
    "class_net": ls("/sys/class/net"),
    "virtual_net": ls("/sys/devices/virtual/net"),
    "devices_net": sorted(nets),
    "ifindex": read("/sys/class/net/eth0/ifindex"),
    "rx_bytes": read("/sys/class/net/eth0/statistics/rx_bytes"),
    "mtu": read("/sys/class/net/eth0/mtu"),
    "nameindex": sorted(n for _, n in __import__("socket").if_nameindex()),
}))
"""


def sys_view(sbx: Sandbox) -> dict:
    sbx.files.write("/tmp/sysview.py", SYS_VIEW)
    rc, out = sh(sbx, "python3 /tmp/sysview.py")
    assert rc == 0, out
    return json.loads(out.splitlines()[-1])


def own_ifindex(sbx: Sandbox) -> str:
    rc, out = sh(sbx, "ip -o link show eth0")
    assert rc == 0, out
    return out.split(":", 1)[0].strip()


def assert_own_interfaces_only(sbx: Sandbox, others: Set[str]) -> None:
    v = sys_view(sbx)
    assert v["class_net"] == ["eth0", "lo"], f"/sys/class/net inside shows {v['class_net']}"
    assert set(v["virtual_net"]) <= {"eth0", "lo"}, f"/sys/devices/virtual/net shows {v['virtual_net']}"
    # The host's eth0 lives under its PCI (or virtio) device: only the sandbox's own devices,
    # both virtual, may show anywhere.
    assert v["devices_net"] == ["/sys/devices/virtual/net/eth0", "/sys/devices/virtual/net/lo"], \
        f"network devices under /sys/devices: {v['devices_net']}"
    assert not others & set(v["class_net"]), others
    assert v["nameindex"] == ["eth0", "lo"], v["nameindex"]
    # eth0 in /sys is the sandbox's own eth0 (the host has an eth0 too), with its counters.
    assert v["ifindex"] == own_ifindex(sbx), (v["ifindex"], own_ifindex(sbx))
    assert v["rx_bytes"].isdigit() and v["mtu"].isdigit(), v


def host_interfaces() -> Set[str]:
    return set(os.listdir("/sys/class/net"))


def sandbox_mounts(engine: Engine, sandbox_id: str) -> List[str]:
    return [m for m in mounts_under(engine.root) if sandbox_id in m]


def test_sys_class_net_shows_only_the_sandboxs_interfaces(engine: Engine, module_key: str, sbx: Sandbox) -> None:
    other = engine.sandbox(module_key)
    try:
        host_only = host_interfaces() - {"lo", "eth0"}
        assert any(i.startswith("ai") for i in host_only), host_only  # the veths, the bridge
        assert_own_interfaces_only(sbx, host_only)
        # What reads /sys and the network still works: ip, python, files, code.
        rc, out = sh(sbx, "ip addr show eth0")
        assert rc == 0 and sandbox_ipv4(sbx) in out, out
        assert sbx.run_code("import os; len(os.listdir('/sys/class/net'))").text == "2"
        sbx.files.write("/tmp/f.txt", "data")
        assert sbx.files.read("/tmp/f.txt") == "data"
        rc, out = sh(sbx, "nproc && ls /sys/devices/system/cpu | grep -c '^cpu[0-9]' && cat /sys/devices/system/cpu/online")
        assert rc == 0, out
        # Still read-only, and the masked parts still masked.
        rc, out = sh(sbx, "touch /sys/class/net/x")
        assert rc != 0, out
        rc, out = sh(sbx, "ls -A /sys/firmware /sys/fs/cgroup /sys/kernel/debug /sys/kernel/security | grep -v ':$' | grep .")
        assert rc != 0, f"masked parts of /sys are not empty: {out}"
        rc, out = sh(sbx, "awk '$5 == \"/sys\" {print $6}' /proc/self/mountinfo")
        assert rc == 0 and {"ro", "nosuid", "nodev", "noexec"} <= set(out.split(",")), out
    finally:
        other.kill()


def test_sys_view_follows_pause_and_resume_and_goes_with_kill(engine: Engine, module_key: str) -> None:
    s = engine.sandbox(module_key)
    mounted = sandbox_mounts(engine, s.id)
    for keep_memory in (False, True):
        s.pause(keep_memory=keep_memory)
        if not keep_memory:
            # A paused sandbox holds no network namespace, so no view of one either.
            assert sandbox_mounts(engine, s.id) == [], f"mounts of paused {s.id}: {sandbox_mounts(engine, s.id)}"
        s.resume()
        assert_own_interfaces_only(s, host_interfaces() - {"lo", "eth0"})
        assert sorted(sandbox_mounts(engine, s.id)) == sorted(mounted)
    s.kill()
    assert wait_until(lambda: not sandbox_mounts(engine, s.id), 10), sandbox_mounts(engine, s.id)


def test_restart_removes_the_sys_view_of_a_dead_sandbox() -> None:
    e = start_engine()
    try:
        key = e.make_key("sysfs")
        s = e.sandbox(key)
        assert sandbox_mounts(e, s.id)
        e.stop(signal.SIGKILL)
        # Its container dies while the engine is down: the restarted engine tears it down.
        for state in [p for p in (os.path.join(d, "state.json") for d, _, f in os.walk(e.run_dir)
                                  if "state.json" in f) if s.id in p]:
            root = os.path.dirname(os.path.dirname(state))
            run("runc", "--root", root, "delete", "--force", s.id)
        e.start()
        assert wait_until(lambda: not sandbox_mounts(e, s.id), 10), sandbox_mounts(e, s.id)
        assert e.connect(s.id, key).get_info()["state"] == "error"
    finally:
        e.teardown()
