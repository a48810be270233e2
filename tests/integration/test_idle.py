"""Idle reaping with a short --idle-timeout, and hard lifetimes that replace it: a sandbox
with a timeout lives until its deadline, active or not; one without is reaped when idle."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Iterator

import pytest
from conftest import Engine, rand_suffix, start_engine, wait_until
from test_lifecycle import parse_ts

IDLE = 3


@pytest.fixture(scope="module")
def idle_engine() -> Iterator[Engine]:
    e = start_engine(["--idle-timeout", str(IDLE)])
    yield e
    e.teardown()


@pytest.fixture
def idle_key(idle_engine: Engine) -> str:
    return idle_engine.make_key("idle-" + rand_suffix(6))


def close(a: datetime, b: datetime) -> bool:
    return abs((a - b).total_seconds()) < 0.01


def listed(e: Engine, key: str, sid: str) -> bool:
    # list is not an API call "on" a sandbox, so polling it does not count as activity.
    return sid in [s["id"] for s in e.list(key)]


def test_untouched_sandbox_is_reaped(idle_engine: Engine, idle_key: str) -> None:
    t0 = time.monotonic()
    sbx = idle_engine.sandbox(idle_key)
    time.sleep(1.5)
    assert listed(idle_engine, idle_key, sbx.id), "reaped before the idle timeout"
    assert wait_until(lambda: not listed(idle_engine, idle_key, sbx.id), 6, 0.2), \
        f"idle sandbox still listed {time.monotonic() - t0:.1f} s after create (idle {IDLE} s)"
    took = time.monotonic() - t0
    assert took >= IDLE - 0.5, f"reaped after {took:.1f} s, before the {IDLE} s idle timeout"
    assert not sbx.is_running()


def test_hard_lifetime_outlives_the_idle_timeout(idle_engine: Engine, idle_key: str) -> None:
    """timeout at create and set_timeout both give a deadline longer than the idle timeout:
    left idle, the sandboxes survive the idle timeout and die at their deadline."""
    life = 4 * IDLE
    at_create = idle_engine.sandbox(idle_key, timeout=life)
    extended = idle_engine.sandbox(idle_key)
    extended.set_timeout(life)
    t0 = time.monotonic()
    # Idle (listing is no activity) for twice the idle timeout: both are still there.
    assert not wait_until(lambda: not listed(idle_engine, idle_key, at_create.id)
                          or not listed(idle_engine, idle_key, extended.id), 2 * IDLE, 0.2), \
        f"a sandbox with a {life} s timeout was reaped as idle after {time.monotonic() - t0:.1f} s"
    for sbx in (at_create, extended):
        info = sbx.get_info()
        assert info["timeout"] == life, info
        assert info["end_at"] == info["deadline"], info
        assert info["end_reason"] == "timeout", info
    assert wait_until(lambda: not listed(idle_engine, idle_key, at_create.id)
                      and not listed(idle_engine, idle_key, extended.id), life + 4, 0.2), \
        f"still alive {time.monotonic() - t0:.1f} s after a {life} s timeout"
    took = time.monotonic() - t0
    assert took >= life - 1, f"killed after {took:.1f} s, before its {life} s deadline"


def test_active_sandbox_survives(idle_engine: Engine, idle_key: str) -> None:
    sbx = idle_engine.sandbox(idle_key)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2 * IDLE:
        assert sbx.commands.run("true").exit_code == 0, \
            f"busy sandbox died after {time.monotonic() - t0:.1f} s"
        time.sleep(1)
    assert listed(idle_engine, idle_key, sbx.id)
    assert sbx.is_running()
    # Left alone now, it goes.
    assert wait_until(lambda: not listed(idle_engine, idle_key, sbx.id), IDLE + 4, 0.2)


def test_end_at_follows_last_activity(idle_engine: Engine, idle_key: str) -> None:
    sbx = idle_engine.sandbox(idle_key)
    info = sbx.get_info()
    assert info["idle_timeout"] == IDLE
    assert info["deadline"] is None
    assert info["end_reason"] == "idle", info
    last = parse_ts(info["last_activity_at"])
    assert close(parse_ts(info["end_at"]), last + timedelta(seconds=IDLE)), info
    time.sleep(1)
    sbx.commands.run("true")
    info2 = sbx.get_info()
    last2 = parse_ts(info2["last_activity_at"])
    assert last2 > last, "a command must move last_activity_at"
    assert close(parse_ts(info2["end_at"]), last2 + timedelta(seconds=IDLE)), info2
    assert info2["end_reason"] == "idle", info2


def test_deadline_replaces_the_idle_limit(idle_engine: Engine, idle_key: str) -> None:
    """A deadline later than the idle limit is when the sandbox ends (not the idle limit),
    and activity does not move it."""
    sbx = idle_engine.sandbox(idle_key, timeout=60)
    info = sbx.get_info()
    assert info["end_reason"] == "timeout" and info["end_at"] == info["deadline"], info
    time.sleep(0.5)
    sbx.commands.run("true")
    info2 = sbx.get_info()
    assert parse_ts(info2["last_activity_at"]) > parse_ts(info["last_activity_at"])
    assert info2["end_at"] == info["end_at"], "activity must not move a hard deadline"
    sbx.kill()
