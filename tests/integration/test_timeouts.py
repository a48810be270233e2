"""Hard lifetimes: timeout at create, set_timeout, end_at, limits."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from conftest import Engine, gone, wait_until
from test_lifecycle import parse_ts

from ai2in import InvalidArgumentError, NotFoundError

SLACK = 2.5  # reaper interval (1 s) + kill time + scheduling on a 2-core machine


def listed(engine: Engine, key: str, sid: str) -> bool:
    return sid in [s["id"] for s in engine.list(key)]


def test_timeout_at_create_kills(engine: Engine, key: str) -> None:
    t0 = time.monotonic()
    sbx = engine.sandbox(key, timeout=3)
    info = sbx.get_info()
    assert info["timeout"] == 3
    assert wait_until(lambda: time.monotonic() - t0 > 1.5, 2)
    assert sbx.is_running(), "killed before its 3 s timeout"
    assert wait_until(lambda: gone(sbx), 3 + SLACK + 1, 0.2), \
        f"sandbox with timeout=3 still alive after {time.monotonic() - t0:.1f} s"
    took = time.monotonic() - t0
    assert took >= 2.5, f"killed after {took:.1f} s, before its 3 s timeout"
    assert not listed(engine, key, sbx.id)
    with pytest.raises(NotFoundError):
        sbx.commands.run("true")


def test_set_timeout_on_sandbox_without_one(engine: Engine, key: str) -> None:
    sbx = engine.sandbox(key)
    assert sbx.get_info()["deadline"] is None
    t0 = time.monotonic()
    sbx.set_timeout(2)
    info = sbx.get_info()
    assert info["timeout"] == 2 and info["deadline"] is not None
    assert wait_until(lambda: gone(sbx), 2 + SLACK + 1, 0.2), \
        f"still alive {time.monotonic() - t0:.1f} s after set_timeout(2)"
    assert time.monotonic() - t0 >= 1.5


def test_set_timeout_extends(engine: Engine, key: str) -> None:
    sbx = engine.sandbox(key, timeout=3)
    sbx.set_timeout(30)
    time.sleep(5.5)
    assert sbx.is_running(), "set_timeout(30) did not extend a timeout=3 sandbox"
    assert sbx.commands.run("echo still").stdout == "still\n"
    assert sbx.get_info()["timeout"] == 30


def test_end_at_is_now_plus_timeout(engine: Engine, key: str) -> None:
    sbx = engine.sandbox(key, timeout=300)
    now = datetime.now(timezone.utc)
    info = sbx.get_info()
    end_at = parse_ts(info["end_at"])
    assert abs((end_at - now).total_seconds() - 300) < 5, info
    assert parse_ts(info["deadline"]) == end_at
    sbx.set_timeout(600)
    now = datetime.now(timezone.utc)
    info = sbx.get_info()
    assert abs((parse_ts(info["end_at"]) - now).total_seconds() - 600) < 5, info
    # A shorter timeout shortens the life too: it is "now + t", not "max".
    sbx.set_timeout(120)
    now = datetime.now(timezone.utc)
    assert abs((parse_ts(sbx.get_info()["end_at"]) - now).total_seconds() - 120) < 5


@pytest.mark.parametrize("bad", [86401, 10**7, 0, -1])
def test_set_timeout_out_of_range(engine: Engine, key: str, bad: int) -> None:
    sbx = engine.sandbox(key)
    with pytest.raises(InvalidArgumentError) as ei:
        sbx.set_timeout(bad)
    assert ei.value.status == 400 and ei.value.code == "bad_request"
    assert "86400" in ei.value.message, f"message should name the limit: {ei.value.message!r}"
    assert sbx.get_info()["deadline"] is None, "a rejected set_timeout must change nothing"
    sbx.kill()


def test_max_timeout_accepted(engine: Engine, key: str) -> None:
    sbx = engine.sandbox(key, timeout=86400)
    sbx.set_timeout(86400)
    assert sbx.get_info()["timeout"] == 86400
    sbx.kill()
