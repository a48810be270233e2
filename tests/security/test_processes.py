"""Processes inside a sandbox against their owner (issue 13), probed from inside real
sandboxes: a fork bomb must not take the sandbox from its owner — commands.kill_all() ends
it, and meanwhile the agent answers (a new command is refused at once with a 503 naming the
pids limit; the process list still comes) and never crashes (a code kernel cannot be started
then, which is said, not an abort) — and a command's timeout or kill ends every process it
started, also those that left its session with setsid.

The bombs run in sandboxes of an engine of their own whose pids limit is 128, not 1024, so
that they fill it at once and cost the machine little; every bomb is ended by kill_all (and
by the sandbox's kill in the fixture's teardown, whatever happened).
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any, Callable, Iterator

import pytest
from ai2in import (CommandExitError, InvalidArgumentError, Sandbox, SandboxError,
                   UnavailableError)
from it import Engine, start_engine, wait_for

PIDS = 128
BOMB = ":(){ :|:& };:"


@pytest.fixture(scope="module")
def small() -> Iterator[Engine]:
    """An engine whose sandboxes may hold PIDS processes and threads."""
    e = start_engine(["--default-pids", str(PIDS)])
    yield e
    e.teardown()


@pytest.fixture
def bsbx(small: Engine) -> Iterator[Sandbox]:
    """A sandbox of the small engine, for one bomb; killed after the test."""
    s = small.sandbox(small.make_key("bomb"), request_timeout=30)
    yield s
    try:
        s.kill()
    except Exception:  # noqa: BLE001 - teardown never hides the test's result
        pass


def bounded(seconds: float, f: Callable[[], Any]) -> Any:
    """f(), or a failure of the test if it has not returned after seconds (a hang)."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(f).result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        pytest.fail(f"no answer within {seconds:g} s", pytrace=False)
    finally:
        pool.shutdown(wait=False)


def start_bomb(sbx: Sandbox) -> int:
    """Starts a fork bomb and waits until it has taken every pid: a new command is then
    refused. Returns the pid of the bomb's command (which exits at once: the bomb runs on
    in its orphans)."""
    h = sbx.commands.run(BOMB, background=True, timeout=None)
    h.disconnect()

    def full() -> bool:
        try:
            sbx.commands.run("true", timeout=5)
            return False
        except SandboxError:
            return True
    time.sleep(0.5)
    wait_for(lambda: bounded(40, full), 60, "the fork bomb to fill the pids limit")
    return h.pid


def ps(sbx: Sandbox) -> str:
    return sbx.commands.run("ps -eo pid,ppid,pgid,sid,args").stdout


def test_kill_all_ends_a_fork_bomb(bsbx: Sandbox) -> None:
    start_bomb(bsbx)
    t0 = time.monotonic()
    killed = bounded(20, bsbx.commands.kill_all)
    took = time.monotonic() - t0
    assert isinstance(killed, int) and killed > 10, killed
    assert took < 6, f"kill_all took {took:.1f} s"
    r = bounded(20, lambda: bsbx.commands.run("echo alive; ps -eo pid= | wc -l"))
    lines = r.stdout.split()
    assert lines[0] == "alive", r
    assert int(lines[1]) < 20, ps(bsbx)  # the bomb is gone, not just paused
    assert bsbx.get_info()["state"] == "running"


def test_while_a_bomb_runs_the_owner_gets_answers(bsbx: Sandbox) -> None:
    sleeper = bsbx.commands.run("sleep 600", background=True)
    start_bomb(bsbx)
    refused = 0
    for _ in range(3):  # a pid may come free for a moment: then the command just runs
        t0 = time.monotonic()
        try:
            bounded(20, lambda: bsbx.commands.run("true"))
            continue
        except SandboxError as e:
            err = e
        took = time.monotonic() - t0
        assert took < 5, f"refusing a command took {took:.1f} s"
        assert not isinstance(err, InvalidArgumentError), f"a {err.status} blames the caller: {err}"
        assert isinstance(err, UnavailableError) and err.status == 503, repr(err)
        assert "pids limit" in str(err), str(err)
        refused += 1
    assert refused > 0, "every command ran while the bomb filled the pids limit"
    listed = bounded(20, bsbx.commands.list)
    assert sleeper.pid in [p.pid for p in listed], listed
    assert bounded(20, bsbx.commands.kill_all) > 10
    assert bounded(20, lambda: bsbx.commands.run("echo ok")).stdout == "ok\n"


def test_code_during_and_after_a_bomb_never_crashes_the_agent(bsbx: Sandbox) -> None:
    assert bsbx.run_code("marker = 42; marker").text == "42"
    start_bomb(bsbx)
    # The default kernel runs: an execution may or may not find a thread; a new kernel (a
    # context) cannot start. Either answers; neither takes the agent down.
    for call in (lambda: bsbx.run_code("1 + 1"), bsbx.create_code_context):
        try:
            bounded(60, call)
        except SandboxError as e:
            assert not isinstance(e, InvalidArgumentError), f"a {e.status} blames the caller: {e}"
    assert bsbx.get_info()["state"] == "running"
    assert bounded(20, bsbx.commands.kill_all) > 10
    assert bsbx.get_info()["state"] == "running"
    # The kernel was killed too: the next run_code gets a fresh one.
    ex = bounded(60, lambda: bsbx.run_code("marker"))
    assert ex.error is not None and ex.error.name == "NameError", ex
    assert bounded(60, lambda: bsbx.run_code("1 + 1")).text == "2"
    ctx = bounded(60, bsbx.create_code_context)
    assert bounded(60, lambda: bsbx.run_code("2 + 2", context=ctx)).text == "4"


LEAKERS = "setsid sleep 1000 & setsid -f sleep 1001; sleep 1002"


def leftovers(sbx: Sandbox) -> bool:
    out = sbx.commands.run("ps -eo args").stdout
    return not any(f"sleep {n}" in out for n in (1000, 1001, 1002))


def test_a_timeout_ends_what_left_the_session(sbx: Sandbox) -> None:
    r = sbx.commands.run(LEAKERS, timeout=2)
    assert r.timed_out and r.exit_code == 124, r
    wait_for(lambda: leftovers(sbx), 5, "the setsid children to be gone after the timeout")


def test_a_kill_ends_what_left_the_session(sbx: Sandbox) -> None:
    h = sbx.commands.run(LEAKERS, background=True)
    wait_for(lambda: "sleep 1001" in ps(sbx) and "sleep 1000" in ps(sbx), 10, "the sleeps")
    assert sbx.commands.kill(h.pid) is True
    assert h.wait(timeout=10).exit_code == 137
    wait_for(lambda: leftovers(sbx), 5, "the setsid children to be gone after the kill")


def test_a_finished_command_leaves_its_daemons_running(sbx: Sandbox) -> None:
    """Only a timeout or a kill ends what a command started: `nohup server &` outlives it."""
    r = sbx.commands.run("setsid -f sleep 1003 >/dev/null 2>&1; nohup sleep 1004 >/dev/null 2>&1 & echo ok")
    assert r.stdout == "ok\n" and r.exit_code == 0
    time.sleep(0.5)
    out = ps(sbx)
    assert "sleep 1003" in out and "sleep 1004" in out, out
    with pytest.raises(CommandExitError):
        sbx.commands.run("false", check=True)
    assert sbx.commands.kill_all() >= 2
    assert "sleep 100" not in ps(sbx)
