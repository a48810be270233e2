"""Idle reaping with a short --idle-timeout."""

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
    last = parse_ts(info["last_activity_at"])
    assert close(parse_ts(info["end_at"]), last + timedelta(seconds=IDLE)), info
    time.sleep(1)
    sbx.commands.run("true")
    info2 = sbx.get_info()
    last2 = parse_ts(info2["last_activity_at"])
    assert last2 > last, "a command must move last_activity_at"
    assert close(parse_ts(info2["end_at"]), last2 + timedelta(seconds=IDLE)), info2


def test_deadline_earlier_than_idle_wins(idle_engine: Engine, idle_key: str) -> None:
    sbx = idle_engine.sandbox(idle_key, timeout=60)
    info = sbx.get_info()
    # Deadline 60 s away, idle end 3 s away: end_at is the idle one.
    assert close(parse_ts(info["end_at"]),
                 parse_ts(info["last_activity_at"]) + timedelta(seconds=IDLE)), info
    sbx.kill()
