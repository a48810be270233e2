"""Hard lifetimes: timeout at create, set_timeout, end_at and end_reason, the 24 h cap."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from conftest import Engine, gone, wait_until
from test_lifecycle import parse_ts

from ai2in import InvalidArgumentError, NotFoundError, Sandbox

SLACK = 2.5  # reaper interval (1 s) + kill time + scheduling on a 2-core machine
DAY = 86400  # the longest hard lifetime: longer ones are capped to it


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


def seconds_from_now(ts: str) -> float:
    return (parse_ts(ts) - datetime.now(timezone.utc)).total_seconds()


def test_end_at_is_now_plus_timeout(engine: Engine, key: str) -> None:
    sbx = engine.sandbox(key, timeout=300)
    now = datetime.now(timezone.utc)
    info = sbx.get_info()
    end_at = parse_ts(info["end_at"])
    assert abs((end_at - now).total_seconds() - 300) < 5, info
    assert parse_ts(info["deadline"]) == end_at
    assert info["end_reason"] == "timeout", info
    sbx.set_timeout(600)
    now = datetime.now(timezone.utc)
    info = sbx.get_info()
    assert abs((parse_ts(info["end_at"]) - now).total_seconds() - 600) < 5, info
    # A shorter timeout shortens the life too: it is "now + t", not "max".
    sbx.set_timeout(120)
    now = datetime.now(timezone.utc)
    assert abs((parse_ts(sbx.get_info()["end_at"]) - now).total_seconds() - 120) < 5


def test_seed_extend_to_an_hour(engine: Engine, fresh_key: str) -> None:
    """The seed's calls: set_timeout(3600) makes get_info()["end_at"] an hour from now,
    later than the engine's 30 minutes of idle reaping: a hard lifetime replaces it."""
    sbx = engine.sandbox(fresh_key, timeout=300)
    assert sbx.get_info()["idle_timeout"] == 1800
    sbx.set_timeout(3600)
    info = sbx.get_info()
    assert abs(seconds_from_now(info["end_at"]) - 3600) < 5, info
    assert info["end_at"] == info["deadline"] and info["end_reason"] == "timeout", info
    sbx.kill()


@pytest.mark.parametrize("asked", [DAY + 1, 100000, 10**12])
def test_timeout_over_24h_is_capped(engine: Engine, fresh_key: str, asked: int) -> None:
    """The seed's "max 24h": a longer timeout is not refused, it is cut to 24 h from now."""
    sbx = engine.sandbox(fresh_key, timeout=asked)
    info = sbx.get_info()
    assert info["timeout"] == DAY, info
    assert abs(seconds_from_now(info["end_at"]) - DAY) < 5, info
    assert info["end_at"] == info["deadline"] and info["end_reason"] == "timeout", info
    sbx.set_timeout(60)
    sbx.set_timeout(asked)
    info = sbx.get_info()
    assert info["timeout"] == DAY, info
    assert abs(seconds_from_now(info["end_at"]) - DAY) < 5, info
    sbx.kill()


def test_set_timeout_answer_shows_the_capped_deadline(engine: Engine, fresh_key: str) -> None:
    sbx = engine.sandbox(fresh_key)
    status, doc, raw = engine.raw("POST", f"/v1/sandboxes/{sbx.id}/timeout", {"timeout": 100000},
                                  key=fresh_key)
    assert status == 200, raw
    assert doc["timeout"] == DAY and doc["end_reason"] == "timeout", doc
    assert abs(seconds_from_now(doc["deadline"]) - DAY) < 5, doc
    # A whole number written as a float, far beyond any integer type, is capped the same.
    status, doc, raw = engine.raw("POST", f"/v1/sandboxes/{sbx.id}/timeout", b'{"timeout": 1e300}',
                                  key=fresh_key)
    assert status == 200 and doc["timeout"] == DAY, raw
    sbx.kill()


def test_resume_timeout_over_24h_is_capped(engine: Engine, fresh_key: str) -> None:
    sbx = engine.sandbox(fresh_key)
    sbx.pause()
    assert sbx.resume(timeout=100000) == {"status": "running"}
    info = sbx.get_info()
    assert info["timeout"] == DAY and info["end_reason"] == "timeout", info
    assert abs(seconds_from_now(info["end_at"]) - DAY) < 5, info
    # Paused, it ends by neither rule: no end_at, no end_reason.
    sbx.pause()
    info = sbx.get_info()
    assert info["end_at"] is None and info["deadline"] is None, info
    assert "end_reason" in info and info["end_reason"] is None, info
    sbx.kill()


@pytest.mark.parametrize("bad", [0, -1, -100000])
def test_set_timeout_not_positive(engine: Engine, fresh_key: str, bad: int) -> None:
    sbx = engine.sandbox(fresh_key)
    with pytest.raises(InvalidArgumentError) as ei:
        sbx.set_timeout(bad)
    assert ei.value.status == 400 and ei.value.code == "bad_request"
    msg = ei.value.message
    assert "timeout" in msg and f"got {bad}" in msg and "at least 1" in msg, msg
    info = sbx.get_info()
    assert info["deadline"] is None and info["end_reason"] == "idle", \
        "a rejected set_timeout must change nothing"
    sbx.kill()


@pytest.mark.parametrize("bad", [0, -1])
def test_create_and_resume_timeout_not_positive(engine: Engine, fresh_key: str, bad: int) -> None:
    before = {s["id"] for s in engine.list(fresh_key)}
    with pytest.raises(InvalidArgumentError) as ei:
        Sandbox(api_key=fresh_key, api_url=engine.url, timeout=bad)
    assert ei.value.status == 400 and "at least 1" in ei.value.message, ei.value.message
    assert {s["id"] for s in engine.list(fresh_key)} == before, "a refused create left a sandbox"
    sbx = engine.sandbox(fresh_key)
    sbx.pause()
    with pytest.raises(InvalidArgumentError) as ei:
        sbx.resume(timeout=bad)
    assert ei.value.status == 400 and "at least 1" in ei.value.message, ei.value.message
    assert sbx.get_info()["state"] == "paused"
    sbx.kill()


def test_max_timeout_accepted(engine: Engine, key: str) -> None:
    sbx = engine.sandbox(key, timeout=86400)
    sbx.set_timeout(86400)
    assert sbx.get_info()["timeout"] == 86400
    sbx.kill()
