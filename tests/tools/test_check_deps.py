"""scripts/check-deps.py: passes on the real install-deps.sh, and fails naming what is missing
when a library the Makefile links or a program the engine runs is dropped from it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check-deps.py"
INSTALL = REPO / "scripts" / "install-deps.sh"


def run(install: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/bin/python3", str(SCRIPT), "--install-script", str(install)],
                          capture_output=True, text=True, timeout=120)


def test_real_list_is_complete() -> None:
    r = run(INSTALL)
    assert r.returncode == 0, r.stderr
    assert "libraries" in r.stdout and "programs" in r.stdout


@pytest.mark.parametrize("package,mentions", [
    ("libjansson-dev", "-ljansson"),    # linked by the engine and the agent
    ("libmicrohttpd-dev", "-lmicrohttpd"),
    ("libcmocka-dev", "-lcmocka"),      # the unit tests' link line
    ("iptables", "program iptables"),   # run by engine/net/net.c
    ("mmdebstrap", "program mmdebstrap"),
    ("runc", "program runc"),           # the default runtime of engine/config.c
])
def test_a_dropped_package_is_named(tmp_path: Path, package: str, mentions: str) -> None:
    text = INSTALL.read_text()
    assert f" {package}" in text or f"\n  {package}" in text
    dropped = tmp_path / "install-deps.sh"
    dropped.write_text(text.replace(f" {package}\n", "\n").replace(f" {package} ", " ").replace(f"  {package} ", "  "))
    assert package not in dropped.read_text().split("packages=(")[1].split(")")[0].split()
    r = run(dropped)
    assert r.returncode == 1
    assert mentions in r.stderr and f"add {package}" in r.stderr, r.stderr
