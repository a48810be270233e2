"""Pause and resume: the whole filesystem survives (any directory, installed packages), the
container and everything it held on the host are gone while paused, the running cap, the
reaper and deadlines treat a paused sandbox as parked, both calls repeat harmlessly, kill works
from paused, and a `kill -9` of the engine in the middle of either converges after a restart
with the files intact. Also the memory-keeping pause (cgroup freezer)."""

from __future__ import annotations

import asyncio
import glob
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Optional

import pytest
from conftest import Engine, cgroup_dirs, mounts_under, start_engine, wait_for, wait_until

from ai2in import (AsyncSandbox, ConflictError, InvalidArgumentError, NotFoundError,
                   RateLimitError, Sandbox)

PKG_FILE = "/usr/lib/python3/dist-packages/ai2in_pause_probe.py"
# Files in several directories, including ones of the template (copied up when changed)
# and an importable module beside the installed packages, written by root.
FILES = {
    "/home/sandbox/notes.txt": ("sandbox", b"hello\n"),
    "/home/sandbox/deep/a/b/c/data.bin": ("sandbox", os.urandom(200_000)),
    "/tmp/scratch.bin": ("root", os.urandom(50_000)),
    "/root/.secret": ("root", b"root only\n"),
    "/etc/ai2in-pause.conf": ("root", b"[pause]\nkept = yes\n"),
    "/etc/debian_version": ("root", b"changed by the test\n"),
    PKG_FILE: ("root", b"VALUE = 'from an installed package'\n"),
}
CYCLES = 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sums_inside(sbx: Sandbox, paths: List[str]) -> Dict[str, str]:
    """sha256 of each path, computed inside the sandbox."""
    out = sbx.commands.run("sha256sum " + " ".join(paths)).stdout
    return {line.split()[1]: line.split()[0] for line in out.splitlines()}


def write_files(sbx: Sandbox) -> Dict[str, str]:
    for path, (user, data) in FILES.items():
        sbx.files.write(path, data, user=user)
    # A file of the template deleted: the deletion survives too.
    assert sbx.commands.run("rm /etc/motd").exit_code == 0
    return {p: sha(d) for p, (_, d) in FILES.items()}


def check_files(sbx: Sandbox, want: Dict[str, str], what: str) -> None:
    got = sums_inside(sbx, list(want))
    assert got == want, f"{what}: checksums differ"
    owner = sbx.commands.run("stat -c %U /home/sandbox/notes.txt").stdout.strip()
    assert owner == "sandbox", f"{what}: owner of notes.txt is {owner}"
    assert sbx.commands.run("test -e /etc/motd").exit_code == 1, f"{what}: /etc/motd is back"


def runc_state(e: Engine, sid: str) -> Optional[Dict[str, Any]]:
    """runc's view of the sandbox's container, or None when there is none."""
    p = subprocess.run(["runc", "--root", os.path.join(e.run_dir, "runc"), "state", sid],
                       capture_output=True, text=True, timeout=30)
    return json.loads(p.stdout) if p.returncode == 0 else None


def host_pids_with_env(marker: bytes) -> List[int]:
    """Host processes whose environment holds marker (the agent has AI2IN_SANDBOX_ID=…)."""
    out = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(f"{d}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    out.append(int(os.path.basename(d)))
        except OSError:
            pass
    return out


def alive(pid: int) -> bool:
    """pid exists and is not a zombie (a dead container's init waits for the host's pid 1 to
    reap it; it holds no CPU or memory)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def sandbox_cgroups(e: Engine, sid: str) -> List[str]:
    return [d for d in cgroup_dirs(e.cgroup_parent) if os.path.basename(d) == sid]


def veth_of(sid: str) -> str:
    return "ai" + sid[len("sbx_"):][:12]


def host_parts(e: Engine, sid: str) -> Dict[str, Any]:
    """What the sandbox holds on the host besides its directories."""
    return {
        "container": runc_state(e, sid),
        "processes": [p for p in host_pids_with_env(f"AI2IN_SANDBOX_ID={sid}".encode())
                      if alive(p)],
        "cgroups": sandbox_cgroups(e, sid),
        "mounts": mounts_under(os.path.join(e.state_dir, "sandboxes", sid)) +
        mounts_under(os.path.join(e.run_dir, "netns", sid)),
        "netns": os.path.exists(os.path.join(e.run_dir, "netns", sid)),
        "veth": os.path.exists(f"/sys/class/net/{veth_of(sid)}"),
    }


NOTHING: Dict[str, Any] = {"container": None, "processes": [], "cgroups": [], "mounts": [],
                           "netns": False, "veth": False}


def ts(s: Optional[str]) -> float:
    assert s, "expected a time"
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def container_pids(e: Engine, sid: str) -> List[int]:
    """Host pids of every process in the sandbox's cgroup."""
    try:
        with open(f"/sys/fs/cgroup/pids/{e.cgroup_parent}/{sid}/cgroup.procs") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


# -- the shared engine -------------------------------------------------------------------------


def test_files_survive_many_cycles(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key)
    want = write_files(sbx)
    check_files(sbx, want, "before any pause")
    layer = engine.layer_dir(sbx.id)
    for i in range(CYCLES):
        assert sbx.pause() == {"status": "paused"}
        info = sbx.get_info()
        assert info["state"] == "paused" and info["pause_kind"] == "filesystem", info
        assert info["end_at"] is None and info["deadline"] is None, info
        assert os.path.isdir(os.path.join(layer, "upper")), "the upper dir is gone"
        assert sbx.resume() == {"status": "running"}
        assert sbx.get_info()["pause_kind"] is None
        # A change made between cycles survives the next one too.
        sbx.commands.run(f"echo {i} >> /home/sandbox/cycles.log")
        check_files(sbx, want, f"after cycle {i + 1}")
    assert sbx.files.read("/home/sandbox/cycles.log") == "".join(f"{i}\n" for i in range(CYCLES))
    ex = sbx.run_code("import ai2in_pause_probe; ai2in_pause_probe.VALUE")
    assert ex.error is None and ex.text == "'from an installed package'", ex


def test_pause_frees_everything_on_the_host(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key)
    sbx.commands.run("sleep 1000", background=True)
    sbx.commands.run("setsid nohup sleep 1001 >/dev/null 2>&1 </dev/null &")
    pids = container_pids(engine, sbx.id)
    assert len(pids) >= 3, f"expected the agent and two sleeps in the cgroup: {pids}"
    before = host_parts(engine, sbx.id)
    assert before["container"] and before["container"]["status"] == "running", before
    assert len(before["processes"]) >= 1 and before["cgroups"] and before["mounts"], before
    assert before["netns"] and before["veth"], before
    sbx.pause()
    assert host_parts(engine, sbx.id) == NOTHING
    assert [p for p in pids if alive(p)] == [], "processes outlived the pause"
    sbx.resume()
    after = host_parts(engine, sbx.id)
    assert after["container"]["status"] == "running" and after["veth"] and after["netns"]
    assert not set(after["processes"]) & set(before["processes"])
    # Everything in memory is gone: the sleeps did not come back.
    assert sbx.commands.run("pgrep -x sleep").exit_code == 1
    assert sbx.commands.list() == []
    assert sbx.commands.run("hostname -I").stdout.split(), "no address after resume"


def test_paused_sandbox_refuses_inside_calls(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key)
    sbx.pause()
    for call in (lambda: sbx.commands.run("true"), lambda: sbx.files.read("/etc/hostname"),
                 lambda: sbx.run_code("1"), lambda: sbx.files.write("/tmp/x", "y")):
        with pytest.raises(ConflictError) as ei:
            call()
        assert ei.value.message == f"sandbox {sbx.id} is paused, not running", ei.value.message
    # Listed as paused (the default list shows running and paused ones).
    listed = {s["id"]: s["state"] for s in engine.list(module_key)}
    assert listed[sbx.id] == "paused"
    assert sbx.id in [s["id"] for s in engine.list(module_key, state="paused")]
    assert sbx.id not in [s["id"] for s in engine.list(module_key, state="running")]


def test_pause_ends_open_streams_saying_so(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key)
    h = sbx.commands.run("echo started; sleep 30", background=True)
    wait_for(lambda: "started" in h.stdout, 10, "the command to start")
    t0 = time.monotonic()
    sbx.pause()
    result = h.wait(timeout=15)
    assert time.monotonic() - t0 < 5, "the stream outlived the pause"
    assert result.error == f"sandbox {sbx.id} is paused, not running", result


def test_resume_from_another_object_fresh_kernel(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key)
    sbx.files.write("/home/sandbox/notes.txt", "hello")
    assert sbx.run_code("x = 41").error is None
    assert sbx.pause() == {"status": "paused"}
    other = Sandbox.connect(sbx.id, api_key=module_key, api_url=engine.url)
    assert other.get_info()["state"] == "paused"
    assert other.resume() == {"status": "running"}
    assert sbx.is_running()
    ex = other.run_code("print(open('/home/sandbox/notes.txt').read())")
    assert ex.error is None and ex.logs.stdout == ["hello\n"], ex
    ex = sbx.run_code("x")
    assert ex.error is not None and ex.error.name == "NameError", "the kernel should be fresh"


def test_async_sandbox(engine: Engine, module_key: str) -> None:
    async def go() -> None:
        sbx = await AsyncSandbox.create(api_key=module_key, api_url=engine.url)
        engine.created.append((sbx.id, module_key))
        await sbx.files.write("/root/a.txt", "async")
        assert await sbx.pause() == {"status": "paused"}
        again = await AsyncSandbox.connect(sbx.id, api_key=module_key, api_url=engine.url)
        assert (await again.get_info())["state"] == "paused"
        assert await again.resume(timeout=120) == {"status": "running"}
        assert (await sbx.get_info())["timeout"] == 120
        assert await sbx.files.read("/root/a.txt") == "async"
        assert await sbx.pause(keep_memory=True) == {"status": "paused"}
        assert (await sbx.get_info())["pause_kind"] == "memory"
        assert await sbx.resume() == {"status": "running"}
        await sbx.kill()

    asyncio.run(go())


def test_repeats_are_harmless_and_kill_works_from_paused(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key)
    assert sbx.resume() == {"status": "running"}  # resume of a running one: nothing happens
    assert sbx.get_info()["state"] == "running"
    assert sbx.pause() == {"status": "paused"}
    assert sbx.pause() == {"status": "paused"}
    assert sbx.pause(keep_memory=True) == {"status": "paused"}  # a pause stays what it is
    assert sbx.get_info()["pause_kind"] == "filesystem"
    assert sbx.resume() == {"status": "running"}
    assert sbx.resume() == {"status": "running"}
    sbx.pause()
    assert sbx.kill() is True
    assert not os.path.exists(os.path.join(engine.state_dir, "sandboxes", sbx.id))
    assert host_parts(engine, sbx.id) == NOTHING
    with pytest.raises(NotFoundError) as ei:
        sbx.resume()
    assert "killed" in ei.value.message
    with pytest.raises(NotFoundError):
        sbx.pause()
    assert sbx.kill() is False


def test_bad_bodies(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key)
    base = f"/v1/sandboxes/{sbx.id}"
    for path, body, words in [
        ("/pause", {"keep_memory": "yes"}, "keep_memory"),
        ("/pause", {"memory": True}, "unknown field"),
        ("/resume", {"timeout": 0}, "timeout"),
        ("/resume", {"timeout": 1.5}, "timeout"),
        ("/resume", {"timeout": "10"}, "timeout"),
        ("/resume", [], "object"),
    ]:
        status, doc, raw = engine.raw("POST", base + path, body, key=module_key)
        assert status == 400 and words in doc["error"]["message"], (path, body, raw)
    status, _, _ = engine.raw("GET", base + "/pause", key=module_key)
    assert status == 405
    status, _, _ = engine.raw("POST", base + "/pause", key=None)
    assert status == 401
    other = engine.make_key("pause-other")
    status, doc, _ = engine.raw("POST", base + "/pause", key=other)
    assert status == 404, "another team's sandbox must look missing"
    # Null means absent; an empty body is fine.
    assert engine.raw("POST", base + "/pause", {"keep_memory": None}, key=module_key)[0] == 200
    assert engine.raw("POST", base + "/resume", b"", key=module_key)[0] == 200
    with pytest.raises(InvalidArgumentError):
        sbx.resume(timeout=-1)


def test_error_sandbox_cannot_be_paused_or_resumed(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key)
    try:
        sbx.commands.run("kill -TERM 1; sleep 5", timeout=10)
    except Exception:  # noqa: BLE001 - the agent dies under the call
        pass
    assert wait_until(lambda: _state(sbx) == "error", 10, 0.2), sbx.get_info()
    with pytest.raises(ConflictError) as ei:
        sbx.resume()
    assert "in error" in ei.value.message and "kill it" in ei.value.message
    with pytest.raises(ConflictError) as ei:
        sbx.pause()
    assert "in error, it cannot be paused (kill it)" in ei.value.message
    assert sbx.kill() is True


def _state(sbx: Sandbox) -> str:
    """The sandbox's state after a call inside it (a dead agent is noticed by a call)."""
    try:
        sbx.commands.run("true", timeout=5)
    except Exception:  # noqa: BLE001 - a dead agent is noticed by a call
        pass
    return str(sbx.get_info()["state"])


# -- the running cap ------------------------------------------------------------------------

CAP = 2


@pytest.fixture(scope="module")
def cap_engine() -> Iterator[Engine]:
    e = start_engine(["--max-running", str(CAP)])
    yield e
    e.teardown()


def test_cap(cap_engine: Engine) -> None:
    e = cap_engine
    k = e.make_key("pause-cap")
    s1, s2 = e.sandbox(k), e.sandbox(k)
    with pytest.raises(RateLimitError):
        e.sandbox(k)
    s1.files.write("/home/sandbox/keep.txt", "kept")
    s1.pause()
    s3 = e.sandbox(k)  # a paused sandbox does not count
    with pytest.raises(RateLimitError) as ei:
        s1.resume()
    assert ei.value.status == 429 and ei.value.code == "limit_exceeded"
    assert f"the cap is {CAP}" in ei.value.message and s1.id in ei.value.message, ei.value.message
    info = s1.get_info()
    assert info["state"] == "paused" and info["pause_kind"] == "filesystem", \
        "a refused resume changed the sandbox"
    assert host_parts(e, s1.id) == NOTHING
    s3.kill()
    assert s1.resume() == {"status": "running"}
    assert s1.files.read("/home/sandbox/keep.txt") == "kept"
    # A pause that keeps memory holds RAM: it still counts.
    s2.pause(keep_memory=True)
    with pytest.raises(RateLimitError):
        e.sandbox(k)
    s1.pause()
    s4 = e.sandbox(k)
    with pytest.raises(RateLimitError):
        s1.resume()
    assert s2.resume() == {"status": "running"}  # already counted: never refused
    for s in (s1, s2, s4):
        s.kill()


# -- time: the idle reaper and deadlines ---------------------------------------------------------

IDLE = 4


@pytest.fixture(scope="module")
def idle_engine() -> Iterator[Engine]:
    e = start_engine(["--idle-timeout", str(IDLE), "--reap-interval", "1"])
    yield e
    e.teardown()


def test_reaper_and_deadline_ignore_paused(idle_engine: Engine) -> None:
    e = idle_engine
    k = e.make_key("pause-time")
    short = e.sandbox(k, timeout=2)
    plain = e.sandbox(k)
    idle = e.sandbox(k)
    for s in (short, plain, idle):
        s.pause()
    time.sleep(IDLE + 2.5)  # past the timeout and the idle limit of all
    for s in (short, plain, idle):
        info = s.get_info()
        assert info["state"] == "paused" and info["end_at"] is None, info
        assert "end_reason" in info and info["end_reason"] is None, info
    assert short.get_info()["timeout"] == 2 and short.get_info()["deadline"] is None
    # Resumed without a timeout, the idle limit applies again.
    idle.resume()
    info = idle.get_info()
    assert info["end_reason"] == "idle" and info["deadline"] is None, info
    assert abs(ts(info["end_at"]) - (ts(info["last_activity_at"]) + IDLE)) < 0.01, info
    t_idle = time.time()
    # Resumed, the deadline is the same length again, from now.
    t0 = time.time()
    short.resume()
    info = short.get_info()
    assert abs(ts(info["deadline"]) - (t0 + 2)) < 1.0, info
    assert info["end_at"] == info["deadline"] and info["end_reason"] == "timeout", info
    assert wait_until(lambda: _gone(e, k, short), 5, 0.2), "the re-armed deadline did not kill it"
    assert time.time() - t0 >= 1.5, "killed before its re-armed deadline"
    assert wait_until(lambda: _gone(e, k, idle), IDLE + 4 - (time.time() - t_idle), 0.2), \
        "idle reaping stopped after resume"
    # resume(timeout=) sets a new length, which replaces the idle limit.
    t0 = time.time()
    plain.resume(timeout=60)
    info = plain.get_info()
    assert info["timeout"] == 60 and abs(ts(info["deadline"]) - (t0 + 60)) < 1.0, info
    assert info["end_at"] == info["deadline"] and info["end_reason"] == "timeout", info
    # set_timeout while paused sets the length its resume arms, no deadline meanwhile.
    plain.pause()
    life = 2 * IDLE
    plain.set_timeout(life)
    info = plain.get_info()
    assert info["timeout"] == life and info["deadline"] is None and info["end_at"] is None, info
    assert info["end_reason"] is None, info
    time.sleep(IDLE + 1)
    assert plain.get_info()["state"] == "paused"
    t0 = time.time()
    plain.resume()
    assert abs(ts(plain.get_info()["deadline"]) - (t0 + life)) < 1.0
    # Idle past the idle limit, it lives until its deadline.
    assert not wait_until(lambda: _gone(e, k, plain), IDLE + 1.5, 0.2), \
        "a resumed sandbox with a timeout was reaped as idle"
    assert wait_until(lambda: _gone(e, k, plain), life + 3 - (time.time() - t0), 0.2), \
        "the re-armed deadline did not kill it"
    assert time.time() - t0 >= life - 1, "killed before its re-armed deadline"


def _gone(e: Engine, k: str, s: Sandbox) -> bool:
    """Not listed any more (a list is no activity, unlike a get)."""
    return s.id not in [x["id"] for x in e.list(k, state=["running", "paused"])]


# -- restarts of the engine -------------------------------------------------------------------


@pytest.fixture
def own_engine() -> Iterator[Engine]:
    e = start_engine()
    yield e
    e.teardown()


def db_rows(e: Engine) -> Dict[str, Dict[str, Any]]:
    """The store's rows, read directly (the engine may be dead)."""
    con = sqlite3.connect(os.path.join(e.state_dir, "state.db"), timeout=10)
    try:
        con.row_factory = sqlite3.Row
        return {r["id"]: dict(r) for r in con.execute("SELECT * FROM sandboxes")}
    finally:
        con.close()


def db_set(e: Engine, sid: str, **cols: Any) -> None:
    con = sqlite3.connect(os.path.join(e.state_dir, "state.db"), timeout=10)
    try:
        sets = ", ".join(f"{c} = ?" for c in cols)
        con.execute(f"UPDATE sandboxes SET {sets} WHERE id = ?", [*cols.values(), sid])
        con.commit()
    finally:
        con.close()


def converged(e: Engine, k: str, sbx: Sandbox, want: Dict[str, str]) -> str:
    """Checks a sandbox after a restart: running or paused (never in between), its host parts
    match, its files are intact, and it can still be paused and resumed."""
    state = sbx.get_info()["state"]
    assert state in ("running", "paused"), f"stuck in {state}"
    if state == "paused":
        assert host_parts(e, sbx.id) == NOTHING
        sbx.resume()
    check_files(sbx, want, f"after a restart ({state})")
    sbx.pause()
    assert host_parts(e, sbx.id) == NOTHING
    sbx.resume()
    assert sbx.commands.run("echo ok").stdout == "ok\n"
    return state


def post_in_background(e: Engine, path: str, key: str) -> threading.Thread:
    def go() -> None:
        try:
            e.raw("POST", path, {}, key=key, timeout=30)
        except OSError:
            pass  # the engine dies under it

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


@pytest.mark.slow
@pytest.mark.parametrize("op", ["pause", "resume"])
def test_engine_kill9_during_transition(own_engine: Engine, op: str) -> None:
    e = own_engine
    k = e.make_key("pause-kill9")
    sbx = e.sandbox(k)
    want = write_files(sbx)
    seen = []
    for delay in (0.0, 0.01, 0.03, 0.06, 0.1, 0.2):
        if op == "resume":
            sbx.pause()
        t = post_in_background(e, f"/v1/sandboxes/{sbx.id}/{op}", k)
        time.sleep(delay)
        e.stop(signal.SIGKILL)
        t.join(10)
        seen.append(db_rows(e)[sbx.id]["state"])
        e.start()
        state = converged(e, k, sbx, want)
        seen[-1] += f" -> {state}"
        if state == "running" and op == "pause":
            sbx.pause()  # the next round starts from running in both cases
            sbx.resume()
    print(f"{op}: store state when the engine died -> state after restart: {seen}")


@pytest.mark.parametrize("crash", ["pausing, container running", "pausing, container gone",
                                   "resuming, container never started",
                                   "resuming, container up", "resuming, half started"])
def test_restart_finishes_interrupted_transition(own_engine: Engine, crash: str) -> None:
    """Each point a crash can leave a transition at, made exactly: the engine killed, the
    store set to what it would say at that point, the host as it would be."""
    e = own_engine
    k = e.make_key("pause-crash")
    sbx = e.sandbox(k)
    want = write_files(sbx)
    ip = None
    if crash == "pausing, container running":  # killed right after recording `pausing`
        e.stop(signal.SIGKILL)
        db_set(e, sbx.id, state="pausing", pause_kind="filesystem")
        expect = "paused"
    elif crash == "pausing, container gone":  # killed after stopping, before `paused`
        ip = db_rows(e)[sbx.id]["ip"]
        sbx.pause()
        e.stop(signal.SIGKILL)
        db_set(e, sbx.id, state="pausing", ip=ip)
        expect = "paused"
    elif crash == "resuming, container never started":
        sbx.pause()
        e.stop(signal.SIGKILL)
        db_set(e, sbx.id, state="resuming")
        expect = "paused"
    elif crash == "resuming, container up":  # killed after starting it, before `running`
        sbx.pause()
        sbx.resume()
        e.stop(signal.SIGKILL)
        db_set(e, sbx.id, state="resuming", pause_kind="filesystem")
        expect = "running"
    else:  # the overlay mounted and the address recorded, no container yet
        sbx.pause()
        e.stop(signal.SIGKILL)
        src = os.path.join(e.state_dir, "sandboxes", sbx.id)
        layer = e.layer_dir(sbx.id)
        lower = os.path.join(e.template_dir, "base", "rootfs")
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"nodev,lowerdir={lower},upperdir={layer}/upper,workdir={layer}/work",
                        f"{src}/rootfs"], check=True, timeout=30)
        db_set(e, sbx.id, state="resuming", ip="10.0.0.99")
        expect = "paused"
    e.start()
    info = sbx.get_info()
    assert info["state"] == expect, (crash, info, e.log_tail(20))
    if expect == "paused":
        assert host_parts(e, sbx.id) == NOTHING
        assert info["pause_kind"] == "filesystem"
    assert converged(e, k, sbx, want) == expect
    # The address pool is consistent: a new sandbox gets an address of its own.
    other = e.sandbox(k)
    a = sbx.commands.run("hostname -I").stdout.split()
    b = other.commands.run("hostname -I").stdout.split()
    assert a and b and a != b, (a, b)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_engine_restart_while_paused(own_engine: Engine, sig: int) -> None:
    e = own_engine
    k = e.make_key("pause-restart")
    sbx = e.sandbox(k, timeout=600)
    want = write_files(sbx)
    sbx.pause()
    e.restart(sig)
    info = sbx.get_info()
    assert info["state"] == "paused" and info["end_at"] is None, info
    assert host_parts(e, sbx.id) == NOTHING
    assert sbx.resume() == {"status": "running"}
    check_files(sbx, want, "after restart and resume")
    assert sbx.get_info()["timeout"] == 600


# -- keep_memory ------------------------------------------------------------------------------


def freezer_state(e: Engine, sid: str) -> str:
    path = f"/sys/fs/cgroup/freezer/{e.cgroup_parent}/{sid}/freezer.state"
    with open(path) as f:
        return f.read().strip()


def counter(sbx: Sandbox) -> int:
    return int(sbx.files.read("/tmp/counter").strip() or 0)


def test_keep_memory_continues_where_it_was(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key)
    assert sbx.run_code("x = 41").error is None
    # Written beside and renamed: a reader never sees a half-written number.
    h = sbx.commands.run("i=0; while true; do i=$((i+1)); echo $i > /tmp/c.new;"
                         " mv /tmp/c.new /tmp/counter; sleep 0.02; done", background=True)
    wait_for(lambda: sbx.commands.run("test -s /tmp/counter").exit_code == 0, 5, "the counter")
    before_ip = sbx.commands.run("hostname -I").stdout
    t0 = time.monotonic()
    assert sbx.pause(keep_memory=True) == {"status": "paused"}
    pause_s = time.monotonic() - t0
    upper = os.path.join(engine.layer_dir(sbx.id), "upper", "tmp", "counter")
    with open(upper) as f:
        frozen_at = int(f.read() or 0)
    info = sbx.get_info()
    assert info["state"] == "paused" and info["pause_kind"] == "memory" and info["end_at"] is None
    assert freezer_state(engine, sbx.id) == "FROZEN"
    assert (runc_state(engine, sbx.id) or {}).get("status") == "paused"
    time.sleep(1.0)  # ~50 increments if it were running
    with open(upper) as f:
        assert int(f.read() or 0) == frozen_at, "the counter moved while frozen"
    with pytest.raises(ConflictError):
        sbx.commands.run("true")
    t0 = time.monotonic()
    assert sbx.resume() == {"status": "running"}
    resume_s = time.monotonic() - t0
    assert counter(sbx) - frozen_at < 15, "the counter restarted or ran while frozen"
    wait_for(lambda: counter(sbx) > frozen_at + 5, 5, "the counter to continue")
    ex = sbx.run_code("x + 1")
    assert ex.error is None and ex.text == "42", "the kernel lost its memory"
    assert [p.pid for p in sbx.commands.list()] == [h.pid]
    assert sbx.commands.run("hostname -I").stdout == before_ip, "a frozen pause keeps its address"
    assert pause_s < 2 and resume_s < 2, (pause_s, resume_s)
    # Kill from a frozen pause is quick and leaves nothing.
    sbx.pause(keep_memory=True)
    t0 = time.monotonic()
    assert sbx.kill() is True
    assert time.monotonic() - t0 < 3, "killing a frozen sandbox waited for it"
    assert host_parts(engine, sbx.id) == NOTHING


def test_keep_memory_survives_engine_restart(own_engine: Engine) -> None:
    e = own_engine
    k = e.make_key("pause-mem-restart")
    sbx = e.sandbox(k)
    assert sbx.run_code("y = 'kept in memory'").error is None
    sbx.pause(keep_memory=True)
    e.restart(signal.SIGKILL)
    info = sbx.get_info()
    assert info["state"] == "paused" and info["pause_kind"] == "memory", info
    assert freezer_state(e, sbx.id) == "FROZEN"
    sbx.resume()
    assert sbx.run_code("y").text == "'kept in memory'"
    # A frozen container that vanished while the engine was down: the files are kept.
    sbx.files.write("/home/sandbox/f.txt", "files")
    sbx.pause(keep_memory=True)
    e.stop(signal.SIGKILL)
    subprocess.run(["runc", "--root", os.path.join(e.run_dir, "runc"), "delete", "--force",
                    sbx.id], check=True, capture_output=True, timeout=30)
    e.start()
    info = sbx.get_info()
    assert info["state"] == "paused" and info["pause_kind"] == "filesystem", info
    assert host_parts(e, sbx.id) == NOTHING
    sbx.resume()
    assert sbx.files.read("/home/sandbox/f.txt") == "files"


def test_a_paused_sandboxs_address_is_not_handed_out_at_once(engine: Engine, module_key: str) -> None:
    """Addresses go round the pool: a preview client still holding a paused sandbox's address
    does not meet the next sandbox created there (the proxy also checks after connecting)."""
    def addr(s: Sandbox) -> str:
        return s.commands.run("python3 -c \"import socket, fcntl, struct; s = socket.socket(); "
                              "print(socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, struct.pack('256s', b'eth0'))[20:24]))\"").stdout.strip()

    a = engine.sandbox(module_key)
    first = addr(a)
    a.pause()
    b = engine.sandbox(module_key)
    assert addr(b) != first
    a.resume()
    assert addr(a) not in (first, addr(b))
    a.kill()
    b.kill()
