"""Every running sandbox has a host uid range of its own (engine/sandbox/idmap.h): root inside A
and root inside B are different host uids, so neither (nor a host user given one of those
uids) can signal, trace or write the other's processes, and the budgets the kernel counts per
host uid are charged per sandbox. Files stay on disk in the canonical range (uid-base,
1000000): root's files inside are owned by 1000000 in the upper dir whatever range the sandbox
runs in, so a pause and a resume on another range keep every owner."""

from __future__ import annotations

import errno
import os
import subprocess
from typing import Dict, List, Tuple

import pytest

from ai2in import Sandbox
from it import Engine, mounts_under

UID_BASE = 1000000
UID_COUNT = 65536


def sh(sbx: Sandbox, cmd: str, user: str = "root") -> str:
    r = sbx.commands.run(cmd, user=user)
    assert r.exit_code == 0, (cmd, r.stdout, r.stderr)
    return r.stdout.strip()


def host_range(sbx: Sandbox) -> Tuple[int, int]:
    """(first host uid, first host gid) of root inside sbx, from its own maps."""
    ranges = []
    for which in ("uid_map", "gid_map"):
        lines = [line.split() for line in sh(sbx, f"cat /proc/self/{which}").splitlines()]
        assert len(lines) == 1 and lines[0][0] == "0" and int(lines[0][2]) == UID_COUNT, (which, lines)
        ranges.append(int(lines[0][1]))
    return ranges[0], ranges[1]


def host_pids(sid: str) -> List[int]:
    """The host pids of the processes in the sandbox's cgroups."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cgroup") as f:
                if sid in f.read():
                    pids.append(int(p))
        except OSError:
            pass
    return pids


def host_uids(sid: str) -> Dict[int, int]:
    out = {}
    for pid in host_pids(sid):
        try:
            out[pid] = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            pass
    return out


@pytest.fixture
def two(engine: Engine, fresh_key: str):
    a, b = engine.sandbox(fresh_key), engine.sandbox(fresh_key)
    yield a, b
    a.kill()
    b.kill()


def test_each_sandbox_runs_in_a_host_uid_range_of_its_own(two: Tuple[Sandbox, Sandbox]) -> None:
    a, b = two
    (ua, ga), (ub, gb) = host_range(a), host_range(b)
    assert ua == ga and ub == gb
    assert abs(ua - ub) >= UID_COUNT, f"the ranges of two sandboxes meet: {ua} and {ub}"
    for u in (ua, ub):  # neither is the canonical range the files are owned by on disk
        assert not (UID_BASE - UID_COUNT < u < UID_BASE + UID_COUNT), u
    # From the host: every process of A (its agent included) runs in A's range, B's in B's.
    for sbx, base in ((a, ua), (b, ub)):
        sh(sbx, "sleep 600 >/dev/null 2>&1 &")
        uids = host_uids(sbx.id)
        assert len(uids) >= 2, uids
        assert all(base <= u < base + UID_COUNT for u in uids.values()), (base, uids)


def test_root_of_one_sandbox_cannot_signal_another(two: Tuple[Sandbox, Sandbox]) -> None:
    a, b = two
    ua, _ = host_range(a)
    sh(b, "sleep 600 >/dev/null 2>&1 &")
    victims = [p for p, u in host_uids(b.id).items()]
    assert victims
    # A host process with A's root uid (what a process escaping A's namespaces would be):
    # kill(pid, 0) on B's processes answers EPERM; on A's own it succeeds.
    probe = ("import os, sys\n"
             "for p in map(int, sys.argv[1:]):\n"
             "    try:\n        os.kill(p, 0); print(p, 'ok')\n"
             "    except PermissionError:\n        print(p, 'EPERM')\n"
             "    except ProcessLookupError:\n        print(p, 'gone')\n")
    r = subprocess.run(["setpriv", f"--reuid={ua}", f"--regid={ua}", "--clear-groups", "--inh-caps=-all",
                        "--bounding-set=-all", "/usr/bin/python3", "-c", probe] + [str(p) for p in victims],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    seen = dict(line.split() for line in r.stdout.splitlines())
    assert "ok" not in seen.values(), f"A's root uid may signal B's processes: {seen}"
    own = list(host_uids(a.id))
    r = subprocess.run(["setpriv", f"--reuid={ua}", f"--regid={ua}", "--clear-groups", "--inh-caps=-all",
                        "--bounding-set=-all", "/usr/bin/python3", "-c", probe, str(own[0])],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.split()[1:] == ["ok"], r.stdout  # the probe can tell


def test_files_keep_their_owners_inside_and_canonical_ones_on_disk(engine: Engine, sbx: Sandbox) -> None:
    # The template's files are root's inside; the sandbox user's home is its own.
    assert sh(sbx, "stat -c %u:%g / /etc/passwd /usr/bin/python3") == "0:0\n0:0\n0:0"
    assert sh(sbx, "id -u", user="sandbox") == "1000"
    assert sh(sbx, "stat -c %u:%g $HOME", user="sandbox") == "1000:1000"
    sh(sbx, "echo hi > $HOME/mine && mkdir -p $HOME/d && touch $HOME/d/f", user="sandbox")
    sh(sbx, "echo hi > /root-file && chown 1234:2345 /root-file")
    assert sh(sbx, "stat -c %U:%u $HOME/mine $HOME/d/f", user="sandbox") == "sandbox:1000\nsandbox:1000"
    # On the host, in the upper dir: the canonical owners, whatever range the sandbox runs in.
    upper = os.path.join(engine.layer_dir(sbx.id), "upper")
    st = os.stat(os.path.join(upper, "home", "sandbox", "mine"))
    assert (st.st_uid, st.st_gid) == (UID_BASE + 1000, UID_BASE + 1000)
    st = os.stat(os.path.join(upper, "root-file"))
    assert (st.st_uid, st.st_gid) == (UID_BASE + 1234, UID_BASE + 2345)
    assert os.stat(upper).st_uid == UID_BASE
    # The template stays untouched and read-only under the sandbox's idmapped view of it.
    lower = os.path.join(engine.state_dir, "sandboxes", sbx.id, "lower")
    with pytest.raises(OSError) as err:
        open(os.path.join(lower, "ai2in-test-write"), "w").close()
    assert err.value.errno == errno.EROFS, err.value
    assert os.stat(os.path.join(lower, "etc", "passwd")).st_uid == host_range(sbx)[0]


def test_a_pause_and_resume_on_another_range_keeps_every_owner(engine: Engine, fresh_key: str) -> None:
    a = engine.sandbox(fresh_key)
    sh(a, "echo kept > $HOME/kept && mkdir $HOME/dir && chmod 700 $HOME/dir && echo x > $HOME/dir/x", user="sandbox")
    before, _ = host_range(a)
    a.pause()
    assert mounts_under(os.path.join(engine.state_dir, "sandboxes", a.id)) == []
    b = engine.sandbox(fresh_key)  # takes the address A gave back, and so its range
    try:
        a.resume()
        after, _ = host_range(a)
        assert after != before, "A resumed on the range it had (did B not take its address?)"
        assert sh(a, "stat -c %u:%g $HOME/kept $HOME/dir $HOME/dir/x", user="sandbox") == "1000:1000\n" * 2 + "1000:1000"
        assert sh(a, "cat $HOME/kept $HOME/dir/x && echo more >> $HOME/kept", user="sandbox") == "kept\nx"
        assert sh(a, "stat -c %u /") == "0"
    finally:
        b.kill()
        a.kill()
    assert mounts_under(os.path.join(engine.state_dir, "sandboxes", a.id)) == []


PIPES = """
import fcntl, os, sys, time
n = int(sys.argv[1])
for _ in range(3):
    if os.fork() == 0:
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        keep = [os.pipe() for _ in range(n)]
        time.sleep(600)
time.sleep(3)
r, w = os.pipe()
print(fcntl.fcntl(w, fcntl.F_GETPIPE_SZ))
"""


def test_pipe_pages_are_charged_per_sandbox(two: Tuple[Sandbox, Sandbox]) -> None:
    # fs.pipe-user-pages-soft is counted per host uid: root in A holding more pipes than it
    # allows (16384 pages: 1024 pipes of 64 KiB) used to shrink every sandbox's new pipes.
    a, b = two
    with open("/proc/sys/fs/pipe-user-pages-soft") as f:
        soft = int(f.read())
    if not 0 < soft <= 16384 * 2:
        pytest.skip(f"fs.pipe-user-pages-soft is {soft}")
    per_process = soft // 16 // 3 + 100
    sh(a, f"cat > /tmp/pipes.py <<'EOF'\n{PIPES}\nEOF")
    assert int(sh(a, f"python3 /tmp/pipes.py {per_process}")) < 65536  # A is at its budget
    assert sh(b, "python3 -c 'import fcntl, os; print(fcntl.fcntl(os.pipe()[1], fcntl.F_GETPIPE_SZ))'") == "65536"
