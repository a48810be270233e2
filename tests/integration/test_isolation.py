"""Isolation, seen from inside a sandbox through commands.run.

Safe for the host: nothing here sends traffic outside this machine, and the resource tests
are bounded by the sandbox's own limits (checked before they are leaned on).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from typing import Iterator, List, Tuple

import pytest
from conftest import Engine, cgroup_dirs, mounts_under, wait_until

from ai2in import Sandbox


@pytest.fixture(scope="module")
def sbx(engine: Engine, key: str) -> Iterator[Sandbox]:
    s = engine.sandbox(key)
    yield s
    s.kill()


def uid_map(sbx: Sandbox, which: str = "uid_map") -> List[Tuple[int, int, int]]:
    r = sbx.commands.run(f"cat /proc/self/{which}")
    assert r.exit_code == 0, r.stderr
    return [tuple(int(x) for x in line.split()) for line in r.stdout.splitlines()
            if line.strip()]  # type: ignore[misc]


def test_root_inside_is_not_root_outside(sbx: Sandbox) -> None:
    assert sbx.commands.run("id -u").stdout.strip() == "0"
    for which in ("uid_map", "gid_map"):
        m = uid_map(sbx, which)
        assert m, f"empty {which}"
        assert (0, 0, 4294967295) not in m, f"{which} is the host's identity map: {m}"
        for inside, outside, count in m:
            assert not (inside <= 0 < inside + count and outside == 0), \
                f"{which} maps root inside to host root: {m}"
            assert outside != 0, f"{which} maps something onto host uid 0: {m}"


def test_sees_only_own_processes(engine: Engine, sbx: Sandbox) -> None:
    r = sbx.commands.run("ps -e -o pid=,comm=")
    assert r.exit_code == 0, r.stderr
    procs = [line.split(None, 1) for line in r.stdout.splitlines() if line.strip()]
    comms = [p[1].strip() for p in procs]
    assert len(procs) < 10, f"sees too many processes (host's?): {comms}"
    assert "ai2ind" not in comms and "systemd" not in comms and "sshd" not in comms, comms
    pids = [int(p[0]) for p in procs]
    assert 1 in pids, f"no pid 1 in the sandbox's pid namespace: {procs}"


def test_hostname_is_not_hosts(sbx: Sandbox) -> None:
    host = socket.gethostname()
    inside = sbx.commands.run("hostname").stdout.strip()
    assert inside and inside != host


def test_cannot_change_host_hostname_or_mount(sbx: Sandbox) -> None:
    host_before = socket.gethostname()
    with open("/proc/sys/kernel/hostname") as f:
        host_proc_before = f.read()
    sbx.commands.run("echo evil-name > /proc/sys/kernel/hostname; hostname evil-name2")
    assert socket.gethostname() == host_before
    with open("/proc/sys/kernel/hostname") as f:
        assert f.read() == host_proc_before
    mounts_before = set(mounts_under("/"))
    sbx.commands.run("mkdir -p /tmp/mnt && mount -t tmpfs none /tmp/mnt")
    sbx.commands.run("mount --bind / /tmp/mnt")
    sbx.commands.run("mount -t proc proc /tmp/mnt")
    # Failing is expected; whatever happened inside, the host's mount table is unchanged.
    new = set(mounts_under("/")) - mounts_before
    assert not [m for m in new if m.endswith("/tmp/mnt")], f"host sees new mounts: {new}"
    # Writing to sysrq or loading modules must fail.
    assert sbx.commands.run("echo h > /proc/sysrq-trigger").exit_code != 0
    assert sbx.commands.run("test -w /sys/kernel/mm && echo w > /sys/kernel/mm/x").exit_code != 0


def sandbox_ip(s: Sandbox) -> str:
    r = s.commands.run("hostname -I")
    assert r.exit_code == 0, r.stderr
    ips = [ip for ip in r.stdout.split() if ":" not in ip and not ip.startswith("127.")]
    assert ips, f"no IPv4 address in the sandbox: {r.stdout!r}"
    return ips[0]


FETCH = ("python3 -c \"import urllib.request,sys; "
         "print(urllib.request.urlopen('http://{addr}:8000/', timeout=2).status)\"")


def test_sandboxes_cannot_reach_each_other(engine: Engine, key: str) -> None:
    a = engine.sandbox(key)
    b = engine.sandbox(key)
    b.commands.run("cd /tmp && setsid nohup python3 -m http.server 8000 "
                   ">/dev/null 2>&1 </dev/null &")
    assert wait_until(lambda: b.commands.run(FETCH.format(addr="127.0.0.1")).stdout.strip()
                      == "200", 10, 0.3), "the server in sandbox B did not come up"
    b_ip = sandbox_ip(b)
    a_ip = sandbox_ip(a)
    pool = ipaddress.ip_network(engine.net_pool)
    assert ipaddress.ip_address(b_ip) in pool, f"B's address {b_ip} is outside {pool}"
    assert ipaddress.ip_address(a_ip) in pool and a_ip != b_ip
    # Both are on this machine's private bridge: no traffic leaves the host.
    r = a.commands.run(FETCH.format(addr=b_ip), timeout=10)
    assert r.exit_code != 0 and r.stdout.strip() != "200", \
        f"sandbox A reached sandbox B's server at {b_ip}:8000: {r.stdout!r}"
    # B itself still serves (the failure above is isolation, not a dead server).
    assert b.commands.run(FETCH.format(addr="127.0.0.1")).stdout.strip() == "200"


def test_memory_limit(engine: Engine, key: str) -> None:
    s = engine.sandbox(key, memory_mb=128)
    assert s.get_info()["memory_mb"] == 128
    t0 = time.monotonic()
    r = s.commands.run("python3 -c \"x = b'x' * (300 << 20); print('allocated', len(x))\"",
                       timeout=60)
    assert r.exit_code != 0 and "allocated" not in r.stdout, \
        f"allocated 300 MB under a 128 MB limit: {r}"
    assert time.monotonic() - t0 < 60
    # The sandbox itself survives the out-of-memory kill of one process.
    assert s.commands.run("echo survived").stdout == "survived\n"
    # Within the limit works.
    r = s.commands.run("python3 -c \"x = b'x' * (40 << 20); print('ok')\"")
    assert r.stdout == "ok\n", r


def host_pids_max(engine: Engine, sandbox_id: str) -> str:
    """pids.max of the sandbox's cgroup, read on the host (v1 pids hierarchy or unified)."""
    for d in cgroup_dirs(engine.cgroup_parent):
        f = os.path.join(d, "pids.max")
        if sandbox_id in d and os.path.exists(f):
            with open(f) as fh:
                return fh.read().strip()
    return f"(no pids.max in a cgroup of {sandbox_id} under {engine.cgroup_parent})"


def test_pids_limit(engine: Engine, sbx: Sandbox) -> None:
    value = host_pids_max(engine, sbx.id)
    assert value.isdigit(), f"the sandbox has no pids limit: {value}"
    limit = int(value)
    assert 0 < limit <= 32768, f"pids limit {limit} is not a useful bound"
    if limit > 4096:
        pytest.skip(f"pids limit {limit} is too high to lean on safely")
    # Lean on it: try to start limit + 50 sleepers (fork fails at once with EAGAIN), then
    # kill them all.
    script = (
        "import subprocess\n"
        "ps = []\n"
        "err = ''\n"
        "try:\n"
        f"    for i in range({limit + 50}):\n"
        "        ps.append(subprocess.Popen(['sleep', '60']))\n"
        "except OSError as e:\n"
        "    err = str(e)\n"
        "for p in ps:\n"
        "    p.kill()\n"
        "for p in ps:\n"
        "    p.wait()\n"
        "print(len(ps), err)\n")
    sbx.commands.run(f"cat > /tmp/spawn.py <<'EOF'\n{script}EOF")
    r = sbx.commands.run("python3 /tmp/spawn.py", timeout=120)
    assert r.exit_code == 0, r
    started = int(r.stdout.split()[0])
    assert started < limit, f"started {started} processes under a pids limit of {limit}: {r}"
    assert sbx.commands.run("echo ok").stdout == "ok\n"


def test_cannot_see_host_files(sbx: Sandbox) -> None:
    r = sbx.commands.run("ls /var/tmp; cat /etc/hostname; ls /run")
    assert "ai2in-it-" not in r.stdout, "the host's /var/tmp is visible in the sandbox"
    assert sbx.commands.run("test -e /var/lib/ai2in/state.db").exit_code != 0


def test_cannot_see_other_sandboxes_cgroups(engine: Engine, key: str, sbx: Sandbox) -> None:
    """The host's cgroup tree would name (and expose the usage of) every other sandbox."""
    other = engine.sandbox(key)
    try:
        r = sbx.commands.run(
            "ls -R /sys/fs/cgroup 2>/dev/null | head -200; cat /proc/self/cgroup")
        assert other.id not in r.stdout, r.stdout
        assert engine.cgroup_parent not in r.stdout, r.stdout
    finally:
        other.kill()


# Root in the sandbox has the agent's uid: only the agent being non-dumpable keeps it from
# ptracing pid 1 or taking its fds (fd 3 is the listening socket the engine talks to).
GRAB_AGENT = r"""
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
def result(r):
    return "ok" if r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
pidfd = libc.syscall(434, 1, 0)  # pidfd_open(1, 0)
print("pidfd_open", result(pidfd))
got = libc.syscall(438, pidfd, 3, 0)  # pidfd_getfd(pidfd, 3, 0)
print("pidfd_getfd", result(got))
if got < 0:  # else the agent is open to anything: no need to stop it too
    print("ptrace", result(libc.ptrace(16, 1, None, None)))  # PTRACE_ATTACH
"""

# Attaches to the pid given and detaches again: what a debugger does.
ATTACH = r"""
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
pid = int(sys.argv[1])
if libc.ptrace(16, pid, None, None) != 0:  # PTRACE_ATTACH
    sys.exit("attach: " + os.strerror(ctypes.get_errno()))
os.waitpid(pid, 0)
libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
print("attached")
"""


def test_root_cannot_take_the_agents_socket_or_read_it(sbx: Sandbox) -> None:
    sbx.files.write("/tmp/grab.py", GRAB_AGENT)
    r = sbx.commands.run("python3 /tmp/grab.py")
    assert r.exit_code == 0, r
    assert r.stdout.splitlines() == ["pidfd_open ok", "pidfd_getfd EPERM", "ptrace EPERM"], r.stdout
    for what in ("environ", "mem", "fd/3"):
        r = sbx.commands.run(f"cat /proc/1/{what}")
        assert r.exit_code != 0 and "Permission denied" in r.stderr, (what, r)
    r = sbx.commands.run("readlink /proc/1/fd/3")
    assert r.exit_code != 0 and "socket:" not in r.stdout, r
    # The agent serves on, and what it starts is dumpable again (execve resets it): root and
    # the sandbox user can debug their own processes.
    sbx.files.write("/tmp/attach.py", ATTACH)
    for user in ("root", "sandbox"):
        r = sbx.commands.run("sleep 30 & python3 /tmp/attach.py $! && grep -c = /proc/$!/environ; "
                             "kill $!", user=user)
        assert r.exit_code == 0 and r.stdout.splitlines()[0] == "attached", (user, r)
        assert int(r.stdout.splitlines()[1]) > 0, (user, r)
    r = sbx.commands.run("gdb -batch -ex run --args /bin/echo under-gdb 2>&1", user="sandbox")
    assert "under-gdb" in r.stdout, r
    assert sbx.commands.run("echo ok").stdout == "ok\n"


def test_kernel_dir_swapped_for_a_symlink_is_not_followed(engine: Engine, key: str) -> None:
    """With /run unusable, a Python kernel's directory is made in /tmp and handed to the
    kernel's user, who can rename it and put a symlink in its place: removing the context
    must not delete, as root, the files the symlink points to."""
    s = engine.sandbox(key)
    try:
        # /run/ai2in-kernels a file: the kernel directory falls back to /tmp.
        r = s.commands.run("rm -rf /run/ai2in-kernels && touch /run/ai2in-kernels && "
                           "mkdir -p /opt/victim && echo precious > /opt/victim/data && "
                           "chmod 755 /opt/victim")
        assert r.exit_code == 0, r
        ctx = s.create_code_context(user="sandbox")
        r = s.commands.run("find /tmp -maxdepth 1 -name 'ai2in-kernel-*' -user sandbox")
        dirs = r.stdout.split()
        assert len(dirs) == 1, r
        kdir = dirs[0]
        assert "".join(s.run_code("print(1 + 1)", context=ctx).logs.stdout) == "2\n"
        r = s.commands.run(f"mv {kdir} /tmp/moved && ln -s /opt/victim {kdir}", user="sandbox")
        assert r.exit_code == 0, r
        s.remove_code_context(ctx)
        assert s.commands.run("cat /opt/victim/data").stdout == "precious\n"
        # The directory it made was emptied where it went; the symlink was left alone.
        assert s.commands.run("ls -A /tmp/moved").stdout == ""
        assert s.commands.run(f"readlink {kdir}").stdout == "/opt/victim\n"
    finally:
        s.kill()
