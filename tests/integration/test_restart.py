"""The engine survives itself: sandboxes outlive a kill -9 of ai2ind and are re-adopted."""

from __future__ import annotations

import signal
from typing import Iterator

import pytest
from conftest import Engine, start_engine

from ai2in import Sandbox


@pytest.fixture
def own_engine() -> Iterator[Engine]:
    e = start_engine()
    yield e
    e.teardown()


def test_sandboxes_survive_engine_kill9(own_engine: Engine) -> None:
    e = own_engine
    k = e.make_key("survivor")
    s1 = e.sandbox(k, metadata={"n": "1"})
    s2 = e.sandbox(k, metadata={"n": "2"}, timeout=600)
    s1.commands.run("echo kept > /home/sandbox/data.txt")
    s2.commands.run("setsid nohup sleep 1000 >/dev/null 2>&1 </dev/null &")
    e.stop(signal.SIGKILL)
    e.start()
    listed = e.list(k)
    assert [s["id"] for s in listed] == [s1.id, s2.id]
    assert all(s["state"] == "running" for s in listed), listed
    assert [s["metadata"] for s in listed] == [{"n": "1"}, {"n": "2"}]
    assert listed[1]["timeout"] == 600 and listed[1]["deadline"]
    assert s1.commands.run("cat /home/sandbox/data.txt").stdout == "kept\n"
    assert s2.commands.run("echo alive").stdout == "alive\n"
    # Processes started before the engine died are still running.
    assert s2.commands.run("pgrep -x sleep").exit_code == 0
    # The restarted engine still creates and kills.
    s3 = e.sandbox(k)
    assert s3.commands.run("echo new").stdout == "new\n"
    assert s1.kill() is True and s3.kill() is True
    assert [s["id"] for s in e.list(k)] == [s2.id]


def test_sandboxes_survive_graceful_restart(own_engine: Engine) -> None:
    e = own_engine
    k = e.make_key("graceful")
    s1 = e.sandbox(k)
    s1.commands.run("echo kept > /tmp/f")
    assert e.stop(signal.SIGTERM) == 0, f"ai2ind did not exit cleanly on SIGTERM:\n{e.log_tail()}"
    e.start()
    again = Sandbox.connect(s1.id, api_key=k, api_url=e.url)
    assert again.get_info()["state"] == "running"
    assert again.commands.run("cat /tmp/f").stdout == "kept\n"
