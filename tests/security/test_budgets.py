"""Shared kernel budgets: every host-wide table a sandbox can fill is bounded per sandbox, so
that one sandbox at its cap leaves the others and the host their share (issue 13).

Probes run inside real sandboxes of an engine whose caps are lowered (so that they stay short
and gentle on a shared machine); each probe takes a resource until the kernel refuses it, or
until a ceiling a little above the cap, and holds it while the test checks that another
sandbox and host root can still get one. Against an engine without the bounds, the probe
reaches its ceiling (or the host is refused) and the test fails.

What each test shows:
- inotify instances, inotify watches, fanotify groups, POSIX message queues: charged to the
  sandbox's user namespace's owner, a host uid of its own (engine/sandbox/userns.h), and to
  each uid inside under the namespace's own limits (sandbox-inotify-*);
- open files: RLIMIT_NOFILE (sandbox-open-files), soft = hard, not raisable inside;
- PTYs: the sandbox's devpts instance has max= (sandbox-ptys);
- legacy AIO contexts (fs.aio-max-nr, host-wide): io_setup is denied;
- memory_mb: at most max-memory-mb (default half the host's memory), also at resume;
- keys, namespaces, mounts, SysV IPC: denied or private to the sandbox.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import subprocess
import sys
from typing import Iterator, List, Tuple

import pytest
from ai2in import InvalidArgumentError, Sandbox
from it import Engine, engine_binary, rand_suffix, start_engine, wait_for

OPEN_FILES = 256
PTYS = 8
INOTIFY_PER_USER = 16
WATCHES_PER_USER = 1000
MAX_MEMORY_MB = 1024

CAPS = {
    "--sandbox-open-files": OPEN_FILES,
    "--sandbox-ptys": PTYS,
    "--sandbox-inotify-instances": INOTIFY_PER_USER,
    "--sandbox-inotify-watches": WATCHES_PER_USER,
    "--max-memory-mb": MAX_MEMORY_MB,
}

libc = ctypes.CDLL(None, use_errno=True)

# One script for every probe: takes a resource as each uid in turn (root inside may switch
# its effective uid) until the kernel refuses it or the total reaches the ceiling, prints
# what it got as JSON, and holds it all until killed.
PROBE = r'''
import ctypes, errno, json, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
kind, ceiling, uids = sys.argv[1], int(sys.argv[2]), [int(u) for u in sys.argv[3].split(",")]

class MqAttr(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long), ("msgsize", ctypes.c_long),
                ("curmsgs", ctypes.c_long), ("pad", ctypes.c_long * 4)]

def maker(uid):
    if kind == "inotify":
        return lambda i: libc.inotify_init1(os.O_CLOEXEC)
    if kind == "fanotify":  # unprivileged: FAN_CLASS_NOTIF | FAN_REPORT_FID
        return lambda i: libc.fanotify_init(0x200, os.O_RDONLY)
    if kind == "mqueue":
        attr = MqAttr(0, 10, 8192, 0)
        return lambda i: libc.mq_open(f"/probe-{uid}-{i}".encode(), os.O_CREAT | os.O_RDWR, 0o600, ctypes.byref(attr))
    if kind == "files":
        return lambda i: os.open("/dev/null", os.O_RDONLY)
    if kind == "ptys":
        return lambda i: os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
    if kind == "watches":
        d = f"/tmp/watched-{uid}"
        os.makedirs(d, exist_ok=True)
        for i in range(ceiling):
            open(f"{d}/{i}", "w").close()
        fd = libc.inotify_init1(os.O_CLOEXEC)
        return lambda i: libc.inotify_add_watch(fd, f"{d}/{i}".encode(), 2)
    raise SystemExit("unknown kind " + kind)

got, per_uid, why = [], {}, "ceiling"
for uid in uids:
    if uid != os.geteuid():
        os.seteuid(0)
        os.seteuid(uid)
    make, n = maker(uid), 0
    while len(got) < ceiling:
        try:
            r = make(n)
            e = ctypes.get_errno() if r < 0 else 0
        except OSError as ex:
            r, e = -1, ex.errno
        if r < 0:
            why = errno.errorcode.get(e, str(e))
            break
        got.append(r)
        n += 1
    per_uid[uid] = n
    if n == 0 or len(got) >= ceiling:
        break
print(json.dumps({"count": len(got), "why": why, "per_uid": per_uid}), flush=True)
time.sleep(600)
'''


def engine_args(**override: int) -> List[str]:
    """The caps as flags (override: max_memory_mb=…), those the engine under test knows: an
    engine without them starts with its defaults, and the probes show what they reach there."""
    text = subprocess.run([str(engine_binary()), "--help"], capture_output=True, text=True,
                          timeout=10).stdout
    args: List[str] = []
    for flag, value in CAPS.items():
        value = override.get(flag[2:].replace("-", "_"), value)
        if flag in text:
            args += [flag, str(value)]
    return args


@pytest.fixture(scope="module")
def budgets() -> Iterator[Engine]:
    e = start_engine(engine_args())
    yield e
    e.teardown()


@pytest.fixture(scope="module")
def bkey(budgets: Engine) -> str:
    return budgets.make_key("b-" + rand_suffix(8))


@pytest.fixture
def pair(budgets: Engine, bkey: str) -> Iterator[Tuple[Sandbox, Sandbox]]:
    """Two sandboxes of the capped engine: a (the probe's) and b (the neighbour)."""
    a = budgets.sandbox(bkey)
    b = budgets.sandbox(bkey)
    yield a, b
    for s in (a, b):
        try:
            s.kill()
        except Exception as ex:  # noqa: BLE001 - teardown reports, never hides the result
            sys.stderr.write(f"\n[ai2in tests] killing {s.id}: {ex}\n")


class Probe:
    """PROBE running in a sandbox: .result once it has taken what it could."""

    def __init__(self, sbx: Sandbox, kind: str, ceiling: int, uids: str = "", user: str = "root"
                 ) -> None:
        sbx.files.write("/tmp/probe.py", PROBE)
        uids = uids or ("1000" if user == "sandbox" else "0")
        self.handle = sbx.commands.run(f"python3 /tmp/probe.py {kind} {ceiling} {uids}",
                                       background=True, user=user, timeout=300)
        wait_for(lambda: self.handle.stdout.strip() or self.handle.exit_code is not None, 60,
                 f"the {kind} probe's count")
        assert self.handle.stdout.strip(), f"the {kind} probe failed: {self.handle.stderr}"
        self.result = json.loads(self.handle.stdout.splitlines()[0])

    @property
    def count(self) -> int:
        return int(self.result["count"])

    def stop(self) -> None:
        try:
            self.handle.kill()
        except Exception:  # noqa: BLE001 - it may have ended
            pass


def host_file(path: str) -> int:
    with open(path) as f:
        return int(f.read().split()[0])


def sh(sbx: Sandbox, cmd: str, user: str = "root") -> str:
    r = sbx.commands.run(cmd, user=user, timeout=60)
    return (r.stdout + r.stderr).strip()


# -- the user namespace's budgets ---------------------------------------------------------

def test_inotify_instances_one_user_is_held_to_the_namespaces_limit(
        pair: Tuple[Sandbox, Sandbox]) -> None:
    a, _ = pair
    p = Probe(a, "inotify", INOTIFY_PER_USER + 16, user="sandbox")
    try:
        assert p.result["why"] == "EMFILE" and p.count == INOTIFY_PER_USER, p.result
    finally:
        p.stop()


# Root inside takes a budget as one uid after another: what a whole sandbox can hold.
EVERY_UID = ",".join(str(u) for u in range(0, 64000, 1000))


def test_inotify_instances_one_sandbox_cannot_use_up_the_hosts(pair: Tuple[Sandbox, Sandbox]
                                                                ) -> None:
    a, b = pair
    host_per_user = host_file("/proc/sys/fs/inotify/max_user_instances")
    p = Probe(a, "inotify", host_per_user + 32, uids=EVERY_UID)
    try:
        w = b.files.watch_dir("/home/sandbox")  # the neighbour's watch works
        w.stop()
        fd = libc.inotify_init1(os.O_CLOEXEC)
        assert fd >= 0, f"host root cannot open an inotify instance: {os.strerror(ctypes.get_errno())}"
        os.close(fd)
        # Held to one host user's budget, whatever uids it takes them as.
        assert p.result["why"] == "EMFILE" and p.count <= host_per_user, p.result
    finally:
        p.stop()


def test_inotify_watches_are_held_to_the_per_user_limit(pair: Tuple[Sandbox, Sandbox]) -> None:
    a, _ = pair
    p = Probe(a, "watches", WATCHES_PER_USER + 100, user="sandbox")
    try:
        assert p.result["why"] == "ENOSPC" and p.count == WATCHES_PER_USER, p.result
        fd = libc.inotify_init1(os.O_CLOEXEC)
        assert fd >= 0 and libc.inotify_add_watch(fd, b"/", 2) >= 0
        os.close(fd)
    finally:
        p.stop()


def test_fanotify_groups_one_sandbox_cannot_use_up_the_hosts(pair: Tuple[Sandbox, Sandbox]
                                                              ) -> None:
    a, b = pair
    host_per_user = host_file("/proc/sys/user/max_fanotify_groups")
    p = Probe(a, "fanotify", host_per_user + 32, uids=EVERY_UID)
    try:
        other = Probe(b, "fanotify", 1)
        other.stop()
        assert other.count == 1, f"the neighbour cannot make a fanotify group: {other.result}"
        fd = libc.fanotify_init(0x200, os.O_RDONLY)
        assert fd >= 0, f"host root cannot make a fanotify group: {os.strerror(ctypes.get_errno())}"
        os.close(fd)
        assert p.result["why"] == "EMFILE" and 0 < p.count <= host_per_user, p.result
    finally:
        p.stop()


MQ_ONE = r'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.mq_open(b"/host-probe", os.O_CREAT | os.O_RDWR, 0o600, None)
print(fd, os.strerror(ctypes.get_errno()))
'''


def test_message_queues_one_sandbox_cannot_use_up_the_hosts(pair: Tuple[Sandbox, Sandbox]
                                                             ) -> None:
    """POSIX message queues are charged in bytes (RLIMIT_MSGQUEUE, 800 KiB) to the user
    namespace's owner: with host root as every sandbox's owner, nine queues in one sandbox
    left none to any other sandbox or to host root."""
    a, b = pair
    p = Probe(a, "mqueue", 64, uids="0,1000,2000")
    try:
        other = Probe(b, "mqueue", 1)
        other.stop()
        assert other.count == 1, f"the neighbour cannot make a message queue: {other.result}"
        # Host root, in an IPC namespace of its own (the queue goes with it).
        out = subprocess.run(["unshare", "--ipc", sys.executable, "-c", MQ_ONE],
                             capture_output=True, text=True, timeout=30).stdout
        assert not out.startswith("-1"), f"host root cannot make a message queue: {out}"
        assert p.result["why"] == "EMFILE" and 0 < p.count < 64, p.result
    finally:
        p.stop()


# -- open files, PTYs, AIO ---------------------------------------------------------------

def test_open_files_stop_at_the_configured_limit(pair: Tuple[Sandbox, Sandbox]) -> None:
    a, _ = pair
    assert sh(a, "ulimit -Sn; ulimit -Hn").split() == [str(OPEN_FILES)] * 2
    p = Probe(a, "files", OPEN_FILES + 64)
    try:
        # stdin, stdout, stderr and python's own take a few of the limit.
        assert p.result["why"] == "EMFILE" and OPEN_FILES - 16 <= p.count < OPEN_FILES, p.result
    finally:
        p.stop()
    out = sh(a, "python3 -c 'import resource as r; r.setrlimit(r.RLIMIT_NOFILE, "
                f"({OPEN_FILES + 1}, {OPEN_FILES + 1}))' 2>&1; echo rc=$?")
    assert "rc=0" not in out, out  # root inside cannot raise it


def test_ptys_stop_at_the_sandboxs_cap(pair: Tuple[Sandbox, Sandbox]) -> None:
    a, b = pair
    p = Probe(a, "ptys", PTYS + 16)
    try:
        t = b.pty.create()  # the neighbour still opens one
        t.kill()
        master, slave = os.openpty()  # and so does the host
        os.close(master)
        os.close(slave)
        assert p.result["why"] == "ENOSPC" and p.count == PTYS, p.result
        # The agent's own terminals come from the same instance: a refusal that says why.
        with pytest.raises(Exception) as refused:
            a.pty.create()
        assert "terminal" in str(refused.value), refused.value
    finally:
        p.stop()


AIO_SETUP = r'''
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
ctx = ctypes.c_ulong(0)
r = libc.syscall(206, int(sys.argv[1]), ctypes.byref(ctx))  # io_setup
print(r, ctypes.get_errno(), flush=True)
time.sleep(600)
'''


def test_aio_contexts_are_not_a_sandboxs_to_take(pair: Tuple[Sandbox, Sandbox]) -> None:
    """fs.aio-max-nr counts every io_setup() on the host together, root's included."""
    a, _ = pair
    left = host_file("/proc/sys/fs/aio-max-nr") - host_file("/proc/sys/fs/aio-nr")
    a.files.write("/tmp/aio.py", AIO_SETUP)
    h = a.commands.run(f"python3 /tmp/aio.py {left}", background=True, timeout=300)
    try:
        wait_for(lambda: h.stdout.strip(), 30, "io_setup's answer")
        ctx = ctypes.c_ulong(0)
        assert libc.syscall(206, 1, ctypes.byref(ctx)) == 0, \
            f"host root cannot set up AIO: {os.strerror(ctypes.get_errno())}"
        libc.syscall(207, ctx)  # io_destroy
        r, err = (int(x) for x in h.stdout.split()[:2])
        assert r < 0 and err == errno.ENOSYS, h.stdout
    finally:
        h.kill()


# -- memory_mb --------------------------------------------------------------------------------

def host_half_memory_mb() -> int:
    with open("/proc/meminfo") as f:
        kib = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    return max(64, min(65536, kib // 1024 // 2))


def test_memory_over_the_cap_is_a_400_naming_it(budgets: Engine, bkey: str) -> None:
    status, doc, raw = budgets.raw("POST", "/v1/sandboxes", {"memory_mb": MAX_MEMORY_MB + 1},
                                   key=bkey)
    assert status == 400, raw
    msg = doc["error"]["message"]
    assert "max-memory-mb" in msg and str(MAX_MEMORY_MB) in msg, msg
    s = budgets.sandbox(bkey, memory_mb=MAX_MEMORY_MB)  # the cap itself is fine
    s.kill()


def test_the_default_cap_is_half_the_hosts_memory(engine: Engine, module_key: str) -> None:
    cap = host_half_memory_mb()
    with pytest.raises(InvalidArgumentError) as refused:
        s = engine.sandbox(module_key, memory_mb=cap + 1)
        s.kill()
    assert "max-memory-mb" in str(refused.value) and str(cap) in str(refused.value)


def memory_limit_mb(e: Engine, sid: str) -> int:
    path = f"/sys/fs/cgroup/memory/{e.cgroup_parent}/{sid}/memory.limit_in_bytes"
    return host_file(path) // (1 << 20)


def test_resume_applies_a_lowered_cap() -> None:
    """A sandbox created under a larger max-memory-mb is resumed with the cap in force."""
    e = start_engine(engine_args())
    try:
        k = e.make_key("r-" + rand_suffix(8))
        s = e.sandbox(k, memory_mb=MAX_MEMORY_MB)
        s.pause()
        e.stop()
        e.start(engine_args(max_memory_mb=MAX_MEMORY_MB // 2))
        s = e.connect(s.id, k)
        s.resume()
        assert s.get_info()["memory_mb"] == MAX_MEMORY_MB // 2
        assert memory_limit_mb(e, s.id) == MAX_MEMORY_MB // 2
        s.kill()
    finally:
        e.teardown()


# -- denied or private ----------------------------------------------------------------------

KEYS = r'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
for name, nr, args in (("add_key", 248, (b"user", b"k", b"v", 1, -3)),
                       ("request_key", 249, (b"user", b"k", None, 0)),
                       ("keyctl", 250, (0, -3, 0, 0, 0))):
    r = libc.syscall(nr, *args)
    print(name, r, ctypes.get_errno())
'''


def test_keys_are_denied(pair: Tuple[Sandbox, Sandbox]) -> None:
    """The kernel's key quotas are per host uid, and all sandboxes share one uid range:
    keyrings are denied outright (seccomp)."""
    a, _ = pair
    a.files.write("/tmp/keys.py", KEYS)
    for line in sh(a, "python3 /tmp/keys.py").splitlines():
        name, r, err = line.split()
        assert int(r) == -1 and int(err) == errno.EPERM, line


NAMESPACES = r'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
flags = {"user": 0x10000000, "mnt": 0x20000, "uts": 0x4000000, "ipc": 0x8000000, "net": 0x40000000,
         "pid": 0x20000000, "cgroup": 0x2000000, "time": 0x80}
for name, flag in flags.items():
    print(name, libc.unshare(flag), ctypes.get_errno())
print("mount", libc.mount(b"none", b"/mnt", b"tmpfs", 0, None), ctypes.get_errno())
'''


def test_no_namespaces_or_mounts_to_count(pair: Tuple[Sandbox, Sandbox]) -> None:
    """/proc/sys/user/max_*_namespaces and fs.mount-max: a sandbox makes neither (no
    CAP_SYS_ADMIN, and seccomp for user namespaces), and its limits are read-only."""
    a, _ = pair
    a.files.write("/tmp/ns.py", NAMESPACES)
    for line in sh(a, "python3 /tmp/ns.py").splitlines():
        name, r, err = line.split()
        assert int(r) == -1 and int(err) == errno.EPERM, line
    out = sh(a, "echo 1 > /proc/sys/user/max_inotify_instances; echo rc=$?; "
                "echo 1 > /proc/sys/kernel/shmmni; echo rc=$?")
    assert "rc=0" not in out, out


SYSV = r'''
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
size = int(sys.argv[1]) << 20
sid = libc.shmget(0, size, 0o1600)  # IPC_PRIVATE, IPC_CREAT
print(sid, flush=True)
addr = libc.shmat(sid, None, 0)
libc.shmctl(sid, 0, None)  # IPC_RMID: goes when detached
ctypes.memset(addr, 1, size)
print("filled", flush=True)
'''


def test_sysv_ipc_is_private_and_charged_to_the_sandbox(budgets: Engine, bkey: str) -> None:
    a = budgets.sandbox(bkey, memory_mb=128)
    b = budgets.sandbox(bkey)
    try:
        assert sh(a, "readlink /proc/self/ns/ipc") != sh(b, "readlink /proc/self/ns/ipc")
        assert "Shared memory id" in sh(a, "ipcmk -M 4096")
        assert "0x" not in sh(b, "ipcs -m | tail -n +4"), "a's segment is visible in b"
        a.files.write("/tmp/sysv.py", SYSV)
        r = a.commands.run("python3 /tmp/sysv.py 256; echo rc=$?", timeout=60)
        # Filling 256 MiB of shared memory in a 128 MiB sandbox gets it killed, not the host.
        assert "filled" not in r.stdout and "rc=0" not in r.stdout, r.stdout
    finally:
        a.kill()
        b.kill()
