"""A runtime failure during create: the user gets the runtime's own reason, and nothing of the
half-made sandbox is left (no row, directory, mount, namespace, veth or cgroup)."""

from __future__ import annotations

import glob
import os
import stat
from typing import Iterator

import pytest
from conftest import Engine, cgroup_dirs, mounts_under, start_engine

from ai2in import Sandbox, SandboxError


@pytest.fixture
def broken_runtime_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    # A stand-in named `runc` that fails the way a real runtime does: a message and exit 1.
    d = tmp_path_factory.mktemp("runtime")
    runc = d / "runc"
    runc.write_text("#!/bin/sh\n"
                    "case \"$*\" in *' run '*) echo 'simulated runtime failure: no space left on device' >&2; exit 1;; esac\n"
                    "exit 1\n")
    runc.chmod(runc.stat().st_mode | stat.S_IXUSR)
    e = start_engine(["--runtime", str(runc)])
    yield e
    e.teardown()


def test_runtime_failure_leaves_nothing(broken_runtime_engine: Engine) -> None:
    e = broken_runtime_engine
    k = e.make_key("broken")
    with pytest.raises(SandboxError) as info:
        Sandbox(api_key=k, api_url=e.url)
    msg = str(info.value)
    assert "simulated runtime failure: no space left on device" in msg, msg
    assert "cannot create sandbox sbx_" in msg, msg
    assert info.value.status == 500

    assert e.list(k) == []
    assert e.list(k, state="creating,running,paused,error,killed") == []
    assert os.listdir(os.path.join(e.state_dir, "sandboxes")) == []
    assert os.listdir(os.path.join(e.run_dir, "sandboxes")) == []
    assert os.listdir(os.path.join(e.run_dir, "netns")) == []
    assert os.listdir(os.path.join(e.run_dir, "sysfs")) == []
    volume = os.path.join(e.state_dir, "disk")  # the disk volume stays; no layer on it
    assert [m for m in mounts_under(e.state_dir) if m != volume] == [] and mounts_under(e.run_dir) == []
    assert not os.path.isdir(volume) or os.listdir(volume) == []
    assert not os.listdir(f"/sys/class/net/{e.bridge}/brif"), "a veth was left on the bridge"
    assert not [c for c in cgroup_dirs(e.cgroup_parent) if "sbx_" in c]
    assert not glob.glob(os.path.join(e.run_dir, "runc", "sbx_*"))
    # The engine keeps serving.
    assert e.healthy()
