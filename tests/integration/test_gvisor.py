"""Sandboxes on gVisor (runtime="gvisor", runsc from bookworm-backports): commands, files,
run_code, a preview URL, the filesystem pause and resume, the memory pause (runsc checkpoint
to disk, restore at resume: a checkpoint it cannot take keeps the sandbox running; the cap;
engine restarts and kill -9 in the middle), kill, and nothing left on the host afterwards. Skipped, saying why, when runsc is not installed or too old (install it with
`scripts/install-deps.sh --gvisor`)."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest
from conftest import TEST_RUNTIME, Engine, cgroup_dirs, mounts_under, start_engine, wait_until

from ai2in import ConflictError, InvalidArgumentError, NotFoundError, RateLimitError, Sandbox

# The first runsc with the systrap platform and statx's AT_NO_AUTOMOUNT (bookworm-backports').
RUNSC_MIN = 20240729


def runsc_missing() -> Optional[str]:
    """Why the gVisor tests cannot run here, or None."""
    path = shutil.which("runsc")
    if not path:
        return "runsc is not installed (scripts/install-deps.sh --gvisor)"
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"(20\d{6})", out)
    if not m or int(m.group(1)) < RUNSC_MIN:
        return f"runsc is older than {RUNSC_MIN} ({out.strip() or 'no version'}): " \
               "scripts/install-deps.sh --gvisor installs bookworm-backports'"
    return None


pytestmark = pytest.mark.skipif(runsc_missing() is not None, reason=str(runsc_missing()))

PORT = 8000


@pytest.fixture(scope="module")
def eng() -> Iterator[Engine]:
    """An engine whose default stays runc: every sandbox here asks for gvisor itself."""
    e = start_engine()
    yield e
    e.teardown()


@pytest.fixture(scope="module")
def gkey(eng: Engine) -> str:
    return eng.make_key("gvisor")


@pytest.fixture(scope="module")
def gsbx(eng: Engine, gkey: str) -> Iterator[Sandbox]:
    s = eng.sandbox(gkey, runtime="gvisor")
    yield s
    try:
        s.kill()
    except NotFoundError:
        pass


def test_runtime_is_recorded_and_shown(eng: Engine, gkey: str, gsbx: Sandbox) -> None:
    assert gsbx.get_info()["runtime"] == "gvisor"
    runc = eng.sandbox(gkey)
    try:
        assert runc.get_info()["runtime"] == ("gvisor" if TEST_RUNTIME == "runsc" else "runc")  # the engine's default
    finally:
        runc.kill()
    with pytest.raises(InvalidArgumentError, match="runtime"):
        eng.sandbox(gkey, runtime="lxc")


def test_the_kernel_is_gvisors(gsbx: Sandbox) -> None:
    # gVisor's dmesg is its own ("Starting gVisor..."), whatever the host's kernel says.
    r = gsbx.commands.run("dmesg")
    assert r.exit_code == 0 and "gVisor" in r.stdout, r


def test_commands_and_coreutils(gsbx: Sandbox) -> None:
    # ls, stat and cp pass statx AT_NO_AUTOMOUNT, which bookworm's own runsc rejected.
    r = gsbx.commands.run("echo hi; ls -la / >/dev/null && stat /etc/passwd >/dev/null && cp -a /etc /tmp/etc && echo ok")
    assert r.exit_code == 0, r
    assert r.stdout.split() == ["hi", "ok"]
    assert gsbx.commands.run("exit 3").exit_code == 3


def test_files(gsbx: Sandbox) -> None:
    data = os.urandom(300_000)
    gsbx.files.write("/home/sandbox/blob.bin", data)
    assert gsbx.files.read("/home/sandbox/blob.bin", format="bytes") == data
    r = gsbx.commands.run("sha256sum /home/sandbox/blob.bin")
    assert r.stdout.split()[0] == hashlib.sha256(data).hexdigest()


def test_run_code(gsbx: Sandbox) -> None:
    ex = gsbx.run_code("import numpy as np\nx = np.arange(10).sum()\nx")
    assert ex.error is None, ex.error
    assert ex.text == "45"
    assert gsbx.run_code("x * 2").text == "90"  # the same kernel


def request(eng: Engine, host: str) -> int:
    c = http.client.HTTPConnection("127.0.0.1", eng.preview_port, timeout=10)
    try:
        c.putrequest("GET", "/", skip_host=True)
        c.putheader("Host", host)
        c.endheaders()
        r = c.getresponse()
        r.read()
        return r.status
    except OSError:
        return 0
    finally:
        c.close()


def test_preview_url(eng: Engine, gsbx: Sandbox) -> None:
    gsbx.commands.run(f"cd /tmp && python3 -m http.server {PORT}", background=True).disconnect()
    assert wait_until(lambda: request(eng, gsbx.get_host(PORT)) == 200, 30, 0.2), \
        "the server in the gVisor sandbox never answered through the preview proxy"


def test_pause_resume_keeps_files_then_kill_leaves_nothing(eng: Engine, gkey: str) -> None:
    s = eng.sandbox(gkey, runtime="gvisor")
    s.files.write("/home/sandbox/kept.txt", b"across the pause\n")
    # /tmp is the sandbox's disk as under runc, not a tmpfs of runsc's that the pause empties.
    assert s.commands.run("echo t > /tmp/kept && stat -f -c %T /tmp").stdout.strip() != "tmpfs"
    s.pause()
    info = s.get_info()
    assert info["state"] == "paused" and info["pause_kind"] == "filesystem"
    assert not [d for d in cgroup_dirs(eng.cgroup_parent) if s.id in d]
    s.resume()
    assert s.get_info()["runtime"] == "gvisor"
    assert s.files.read("/home/sandbox/kept.txt") == "across the pause\n"
    assert s.files.read("/tmp/kept") == "t\n"
    # Running, the sandbox cannot replace its /tmp (a mount point); its files can still hold
    # anything (written while it was a runc one, moved from another node), so the host puts a
    # link there while it is paused: the next start must not follow it on the host. The
    # sandbox starts, its /tmp leads into its own tree, and the engine says why.
    s.pause()
    upper = os.path.join(eng.state_dir, "disk", s.id, "upper")
    shutil.rmtree(os.path.join(upper, "tmp"))
    os.symlink("/etc", os.path.join(upper, "tmp"))
    s.resume()
    assert s.commands.run("readlink /tmp; cat /tmp/hostname").stdout.split("\n")[0] == "/etc"
    assert "ai2in-it-" not in s.commands.run("ls -a /tmp/").stdout
    assert "tmp is not a directory" in eng.log_tail()
    s.kill()
    assert wait_until(lambda: not [d for d in cgroup_dirs(eng.cgroup_parent) if s.id in d], 10)
    assert not [m for m in mounts_under(eng.root) if s.id in m]
    assert not [f for f in os.listdir(os.path.join(eng.run_dir, "runsc")) if s.id in f] \
        if os.path.isdir(os.path.join(eng.run_dir, "runsc")) else True
    assert not os.path.exists(os.path.join(eng.state_dir, "sandboxes", s.id))
    out = subprocess.run(["pgrep", "-f", f"runsc.*{s.id}"], capture_output=True, text=True).stdout
    assert out == "", f"runsc processes of {s.id} left: {out}"


# -- the memory pause: runsc checkpoint to disk, restore at resume ---------------------------


def image_dir(e: Engine, sid: str) -> str:
    return os.path.join(e.state_dir, "sandboxes", sid, "checkpoint")


def runsc_processes(sid: str) -> str:
    return subprocess.run(["pgrep", "-f", f"runsc.*{sid}"], capture_output=True, text=True).stdout


def memory_held(e: Engine, sid: str) -> int:
    """Bytes of anonymous and shared memory (the sandbox kernel's own memory is a memfd)
    charged to the sandbox's memory cgroups: 0 when they are gone. Not the page cache its
    files left there, which the host reclaims at will."""
    total = 0
    for d in cgroup_dirs(e.cgroup_parent):
        if sid in d and "/memory/" in d:
            try:
                with open(os.path.join(d, "memory.stat")) as f:
                    stat = dict(line.split() for line in f if line.strip())
                total += int(stat.get("rss", 0)) + int(stat.get("shmem", 0))
            except (OSError, ValueError):
                pass
    return total


def start_counter(s: Sandbox) -> None:
    # Written beside and renamed: a reader never sees a half-written number.
    s.commands.run("i=0; while true; do i=$((i+1)); echo $i > /home/sandbox/c.new; mv /home/sandbox/c.new /home/sandbox/counter;"
                   " sleep 0.05; done", background=True)
    assert wait_until(lambda: s.commands.run("test -s /home/sandbox/counter").exit_code == 0, 10, 0.1)


def counter_on_host(e: Engine, sid: str) -> int:
    with open(os.path.join(e.layer_dir(sid), "upper", "home", "sandbox", "counter")) as f:
        return int(f.read().strip() or 0)


def test_memory_pause_checkpoints_to_disk_and_restores_mid_session(eng: Engine, gkey: str) -> None:
    s = eng.sandbox(gkey, runtime="gvisor")
    try:
        ex = s.run_code("import numpy as np\na = np.random.rand(10**6)\ntotal = a.sum()")
        assert ex.error is None, ex.error
        s.files.write("/home/sandbox/kept.txt", "before the pause")
        start_counter(s)
        # A connection from the sandbox to itself is saved with the rest.
        s.commands.run("python3 -c \"import socket, time; l = socket.socket(); l.bind(('127.0.0.1', 9000)); l.listen();"
                       " c = socket.create_connection(('127.0.0.1', 9000)); a, _ = l.accept(); time.sleep(1000)\"",
                       background=True)
        pids = [p.pid for p in s.commands.list()]
        assert s.pause(keep_memory=True) == {"status": "paused"}
        info = s.get_info()
        assert info["state"] == "paused" and info["pause_kind"] == "memory" and info["end_at"] is None, info
        # The memory is on disk and nothing runs: no runsc process, no cgroup.
        img = os.path.join(image_dir(eng, s.id), "checkpoint.img")
        assert os.path.getsize(img) > 1 << 20, "the image is too small to hold the kernel's memory"
        assert info["memory_image_mb"] == -(-os.path.getsize(img) // (1 << 20)), info
        # Its sandbox process exits by itself shortly after the checkpoint (runtime/runsc.c).
        assert wait_until(lambda: runsc_processes(s.id) == "", 10, 0.2), "the checkpointed container still runs"
        # (The memory cgroup's statistics lag behind a little.)
        assert wait_until(lambda: memory_held(eng, s.id) < 1 << 20, 10, 0.2), \
            f"the checkpointed sandbox still holds RAM: {memory_held(eng, s.id)} bytes"
        frozen_at = counter_on_host(eng, s.id)
        time.sleep(1.0)  # ~20 increments if it were running
        assert counter_on_host(eng, s.id) == frozen_at, "the counter moved while checkpointed"
        assert s.resume() == {"status": "running"}
        info = s.get_info()
        assert info["pause_kind"] is None and info["memory_image_mb"] is None, info
        assert not os.path.exists(image_dir(eng, s.id)), "the image outlived the restore"
        ex = s.run_code("bool(total == a.sum())")
        assert ex.error is None and ex.text == "True", "the kernel lost its memory"
        now = int(s.files.read("/home/sandbox/counter").strip())
        assert frozen_at <= now < frozen_at + 20, f"the counter restarted: {frozen_at} -> {now}"
        assert wait_until(lambda: int(s.files.read("/home/sandbox/counter").strip()) > now + 5, 10, 0.2), \
            "the counter did not continue"
        assert [p.pid for p in s.commands.list()] == pids
        assert s.files.read("/home/sandbox/kept.txt") == "before the pause"
        # A second round works the same, and kill of a checkpointed sandbox removes its image.
        s.pause(keep_memory=True)
        assert os.path.exists(image_dir(eng, s.id))
    finally:
        s.kill()
    assert not os.path.exists(os.path.join(eng.state_dir, "sandboxes", s.id))
    assert runsc_processes(s.id) == ""


# What a checkpoint cannot save: a unix socket listening on the sandbox's disk (a host-backed
# directory: runsc --host-uds=create makes it a host socket), or a TCP connection from
# outside (here: an open request through the preview proxy, held by the server inside).
UNIX_ON_DISK = ("import socket, time; u = socket.socket(socket.AF_UNIX); u.bind('/home/sandbox/app.sock');"
                " u.listen(); open('/home/sandbox/ready', 'w'); time.sleep(1000)")
HOLD_A_CONNECTION = ("import socket, time; l = socket.socket(); l.bind(('0.0.0.0', 8001)); l.listen();"
                     " a, _ = l.accept(); open('/home/sandbox/ready', 'w'); time.sleep(1000)")


@pytest.mark.parametrize("blocker", ["unix socket on disk", "preview connection"])
def test_checkpoint_that_cannot_be_taken_keeps_the_sandbox_running(eng: Engine, gkey: str, blocker: str) -> None:
    s = eng.sandbox(gkey, runtime="gvisor")
    conn = None
    try:
        assert s.run_code("kept = 6 * 7").error is None
        code = UNIX_ON_DISK if blocker == "unix socket on disk" else HOLD_A_CONNECTION
        h = s.commands.run(f"exec python3 -c \"{code}\"", background=True)
        if blocker == "preview connection":
            assert wait_until(lambda: s.commands.run("ss -ltn 2>/dev/null | grep -q :8001 || "
                                                     "grep -q ':1F41 00000000:0000 0A' /proc/net/tcp").exit_code == 0, 10, 0.1)
            conn = socket.create_connection(("127.0.0.1", eng.preview_port), timeout=10)
            conn.sendall(f"GET / HTTP/1.1\r\nHost: {s.get_host(8001)}\r\n\r\n".encode())
        assert wait_until(lambda: s.commands.run("test -e /home/sandbox/ready").exit_code == 0, 10, 0.1)
        with pytest.raises(ConflictError) as ei:
            s.pause(keep_memory=True)
        msg = ei.value.message
        assert ei.value.status == 409 and "keeps running" in msg, msg
        assert ("/home/sandbox/app.sock" if blocker == "unix socket on disk" else ":8001 - ") in msg, msg
        info = s.get_info()
        assert info["state"] == "running" and info["pause_kind"] is None, info
        assert s.run_code("kept").text == "42", "a refused checkpoint lost the kernel"
        assert h.pid in [p.pid for p in s.commands.list()], "the process was lost"
        assert not os.path.exists(image_dir(eng, s.id))
        # Without it, the pause works.
        if conn:
            conn.close()
        # Not h.kill(): on gVisor it leaves the supervised process running (BRANCH-NOTES.md).
        s.commands.run(f"kill -9 {h.pid}")
        last: List[str] = []
        assert wait_until(lambda: _pause_memory(s, last), 30, 0.5), f"the pause kept failing once the blocker was gone: {last}"
        s.resume()
        assert s.run_code("kept").text == "42"
    finally:
        if conn:
            conn.close()
        s.kill()


def _pause_memory(s: Sandbox, last: List[str]) -> bool:
    """Whether pause(keep_memory=True) went through (a closed connection lingers a while);
    the refusal's message into last."""
    try:
        s.pause(keep_memory=True)
        return True
    except ConflictError as e:
        last[:] = [e.message]
        return False


def test_checkpointed_sandbox_is_not_in_the_running_cap() -> None:
    e = start_engine(["--max-running", "1"])
    try:
        k = e.make_key("gvisor-cap")
        s1 = e.sandbox(k, runtime="gvisor")
        assert s1.run_code("v = 'in memory'").error is None
        s1.pause(keep_memory=True)
        s2 = e.sandbox(k)  # the checkpointed one holds no container
        with pytest.raises(RateLimitError):
            s1.resume()
        info = s1.get_info()
        assert info["state"] == "paused" and info["pause_kind"] == "memory", info
        s2.kill()
        s1.resume()
        assert s1.run_code("v").text == "'in memory'"
        s1.kill()
    finally:
        e.teardown()


def test_memory_paused_gvisor_sandbox_survives_engine_restart() -> None:
    e = start_engine()
    try:
        k = e.make_key("gvisor-ckpt-restart")
        s = e.sandbox(k, runtime="gvisor")
        assert s.run_code("y = 'kept on disk'").error is None
        s.pause(keep_memory=True)
        e.restart(signal.SIGKILL)
        info = s.get_info()
        assert info["state"] == "paused" and info["pause_kind"] == "memory", info
        s.resume()
        assert s.run_code("y").text == "'kept on disk'"
        # kill -9 of the engine in the middle of a checkpoint, then of a restore: after the
        # restart the sandbox is running or paused, never in between, and usable.
        seen = []
        for op, delay in (("pause", 0.3), ("pause", 1.0), ("resume", 0.3), ("resume", 1.0)):
            if op == "resume" and s.get_info()["state"] == "running":
                s.pause(keep_memory=True)
            elif op == "pause" and s.get_info()["state"] == "paused":
                s.resume()
            body = {"keep_memory": True} if op == "pause" else {}
            t = threading.Thread(target=lambda: _post(e, f"/v1/sandboxes/{s.id}/{op}", k, body), daemon=True)
            t.start()
            time.sleep(delay)
            e.stop(signal.SIGKILL)
            t.join(30)
            e.start()
            info = s.get_info()
            assert info["state"] in ("running", "paused"), f"stuck in {info['state']}"
            seen.append(f"{op}@{delay}: {info['state']}/{info['pause_kind']}")
            if info["state"] == "paused":
                s.resume()
            assert s.commands.run("echo ok").stdout == "ok\n"
            if info["pause_kind"] != "filesystem":  # what says it kept the memory did
                assert s.run_code("y").text == "'kept on disk'", seen[-1]
            else:
                assert s.run_code("y = 'kept on disk'").error is None
        print("kill -9 during checkpoint/restore ->", seen)
        s.kill()
    finally:
        e.teardown()


def _post(e: Engine, path: str, key: str, body: Dict[str, Any]) -> None:
    try:
        e.raw("POST", path, body, key=key, timeout=60)
    except OSError:
        pass  # the engine dies under it


def test_engine_restart_readopts_a_gvisor_sandbox() -> None:
    # An engine of its own: the restart must not disturb the module's engine.
    e = start_engine()
    try:
        k = e.make_key("gvisor-restart")
        s = e.sandbox(k, runtime="gvisor")
        s.files.write("/tmp/before", b"x")
        e.restart()
        again = e.connect(s.id, k)
        info = again.get_info()
        assert info["state"] == "running" and info["runtime"] == "gvisor"
        assert again.commands.run("cat /tmp/before").stdout == "x"
        again.kill()
    finally:
        e.teardown()
