"""Nothing leaks: after 100 create/kill cycles, mounts, network namespaces, veths, cgroups,
sandbox directories and the engine's file descriptors are back to where they started."""

from __future__ import annotations

import glob
import os
import subprocess
import time
from typing import Dict, Iterator, List

import pytest
from conftest import Engine, cgroup_dirs, mounts_under, start_engine

CYCLES = 100


@pytest.fixture
def own_engine() -> Iterator[Engine]:
    e = start_engine()
    yield e
    e.teardown()


def veths() -> List[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True,
                         text=True, check=True).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


def bridge_ports(bridge: str) -> List[str]:
    return sorted(os.listdir(f"/sys/class/net/{bridge}/brif")) \
        if os.path.isdir(f"/sys/class/net/{bridge}/brif") else []


def snapshot(e: Engine) -> Dict[str, List[str]]:
    return {
        "mounts under state dir": mounts_under(e.state_dir),
        "mounts under run dir": mounts_under(e.run_dir),
        "files in run dir": sorted(
            p for p in glob.glob(os.path.join(e.run_dir, "**"), recursive=True)
            if not p.endswith(".log")),
        "veths": veths(),
        "bridge ports": bridge_ports(e.bridge),
        "cgroup dirs": sorted(cgroup_dirs(e.cgroup_parent)),
        "sandbox dirs": sorted(os.listdir(os.path.join(e.state_dir, "sandboxes")))
        if os.path.isdir(os.path.join(e.state_dir, "sandboxes")) else [],
        "sandbox layers on the disk volume": sorted(os.listdir(os.path.join(e.state_dir, "disk")))
        if os.path.isdir(os.path.join(e.state_dir, "disk")) else [],
        "engine fds": [str(len(os.listdir(f"/proc/{e.pid()}/fd")))],
    }


def diff(base: Dict[str, List[str]], now: Dict[str, List[str]]) -> Dict[str, object]:
    out: Dict[str, object] = {}
    for k in base:
        if k == "engine fds":
            if int(now[k][0]) > int(base[k][0]) + 5:
                out[k] = f"{base[k][0]} -> {now[k][0]}"
            continue
        extra = sorted(set(now[k]) - set(base[k]))
        if extra:
            out[k] = extra[:10] + ([f"... {len(extra)} in all"] if len(extra) > 10 else [])
    return out


@pytest.mark.slow
def test_create_kill_cycles_leave_nothing(own_engine: Engine) -> None:
    e = own_engine
    k = e.make_key("leaky")
    # Warm up: whatever the engine creates once (bridge, directories) belongs to the baseline.
    s = e.sandbox(k)
    s.commands.run("true")
    s.kill()
    time.sleep(0.5)
    base = snapshot(e)
    t0 = time.monotonic()
    for i in range(CYCLES):
        s = e.sandbox(k, metadata={"i": str(i)})
        if i % 10 == 0:
            assert s.commands.run("echo x > /tmp/x && cat /tmp/x").stdout == "x\n"
        assert s.kill() is True
    took = time.monotonic() - t0
    assert e.list(k) == []
    deadline = time.monotonic() + 10  # let asynchronous teardown finish
    while True:
        d = diff(base, snapshot(e))
        if not d or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not d, f"left behind after {CYCLES} create/kill cycles: {d}"
    print(f"{CYCLES} create/kill cycles in {took:.1f} s ({1000 * took / CYCLES:.0f} ms each)")


def test_kill_of_running_command_sandbox_leaves_nothing(own_engine: Engine) -> None:
    e = own_engine
    k = e.make_key("busy")
    s = e.sandbox(k)
    s.commands.run("true")
    s.kill()
    base = snapshot(e)
    s = e.sandbox(k)
    s.commands.run("setsid nohup sleep 1000 >/dev/null 2>&1 </dev/null &")
    s.commands.run("cd /tmp && setsid nohup python3 -m http.server 8000 >/dev/null 2>&1 "
                   "</dev/null &")
    assert s.kill() is True
    deadline = time.monotonic() + 10
    while diff(base, snapshot(e)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not diff(base, snapshot(e))
