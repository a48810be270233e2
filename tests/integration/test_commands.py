"""Commands through the SDK against the real engine: output as it is printed, background
processes, stdin, re-attaching, kill, list, timeouts, reaping, binary and overwhelming
output, and the engine's answers to bad input."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import re
import threading
import time
from typing import List, Tuple

import pytest
from conftest import Engine, RssSampler, wait_for

from ai2in import (AsyncSandbox, CommandExitError, ConflictError, InvalidArgumentError,
                   NotFoundError, Sandbox)

MISSING_PID = 999999


def test_result_of_a_failing_command(sbx: Sandbox) -> None:
    r = sbx.commands.run("echo hi; echo err >&2; exit 3")
    assert (r.stdout, r.stderr, r.exit_code, r.timed_out, r.ok) == ("hi\n", "err\n", 3, False,
                                                                    False)
    assert r.error is None and r.stdout_bytes == b"hi\n"
    with pytest.raises(CommandExitError) as ei:
        sbx.commands.run("echo bad >&2; exit 7", check=True)
    assert ei.value.exit_code == 7 and "bad" in str(ei.value)


def test_defaults_envs_cwd_user(engine: Engine, module_key: str) -> None:
    sbx = engine.sandbox(module_key, envs={"FROM_CREATE": "c1"})
    try:
        assert sbx.commands.run("pwd; id -un").stdout == "/home/sandbox\nroot\n"
        r = sbx.commands.run('echo "$FROM_CREATE $FROM_CALL"; pwd; id -un',
                             envs={"FROM_CALL": "k2"}, cwd="/tmp", user="sandbox")
        assert r.stdout == "c1 k2\n/tmp\nsandbox\n"
        sbx.commands.run("mkdir -p /home/sandbox/sub")
        assert sbx.commands.run("pwd", cwd="sub").stdout == "/home/sandbox/sub\n"
        h = sbx.commands.run('echo "$FROM_CREATE"', background=True)
        assert h.wait(timeout=10).stdout == "c1\n"
        t = sbx.pty.create(cmd='echo "[$FROM_CREATE]"')
        assert "[c1]" in t.wait(timeout=10).stdout
    finally:
        sbx.kill()


def test_stdout_and_stderr_interleave_in_order(sbx: Sandbox) -> None:
    seen: List[Tuple[str, str]] = []
    r = sbx.commands.run("echo a; sleep 0.2; echo b >&2; sleep 0.2; echo c",
                         on_stdout=lambda line: seen.append(("out", line)),
                         on_stderr=lambda line: seen.append(("err", line)))
    assert seen == [("out", "a"), ("err", "b"), ("out", "c")]
    assert (r.stdout, r.stderr) == ("a\nc\n", "b\n")


def test_callbacks_fire_as_printed(sbx: Sandbox) -> None:
    seen: List[Tuple[str, float]] = []
    t0 = time.monotonic()
    r = sbx.commands.run("for i in 1 2 3; do echo $i; sleep 1; done",
                         on_stdout=lambda line: seen.append((line, time.monotonic())))
    done = time.monotonic()
    assert [line for line, _ in seen] == ["1", "2", "3"]
    gaps = [seen[i + 1][1] - seen[i][1] for i in range(2)]
    assert all(0.6 < g < 1.8 for g in gaps), f"lines should arrive ~1 s apart: {gaps}"
    assert seen[0][1] - t0 < 1.5 and done - seen[0][1] > 2.0, "first line came at the end"
    assert r.stdout == "1\n2\n3\n" and r.exit_code == 0


def test_partial_last_line_and_unicode(sbx: Sandbox) -> None:
    lines: List[str] = []
    r = sbx.commands.run("printf 'héllo ✓\\n𝄞 no newline'", on_stdout=lines.append)
    assert lines == ["héllo ✓", "𝄞 no newline"]
    assert r.stdout == "héllo ✓\n𝄞 no newline"


def test_background_server_reached_then_killed(sbx: Sandbox) -> None:
    t0 = time.monotonic()
    h = sbx.commands.run("python3 -m http.server 8000", background=True, tag="web")
    assert time.monotonic() - t0 < 5 and h.pid > 1
    r = wait_for(lambda: (lambda r: r if r.exit_code == 0 else None)(
        sbx.commands.run("curl -s localhost:8000")), 15, "the http server to answer")
    assert "Directory listing" in r.stdout
    listed = {p.pid: p for p in sbx.commands.list()}
    assert h.pid in listed and listed[h.pid].tag == "web"
    assert listed[h.pid].cmd == "python3 -m http.server 8000" and listed[h.pid].background
    assert h.kill() is True
    res = h.wait(timeout=10)
    assert res.exit_code == 137 and res.signal == "SIGKILL" and not res.timed_out
    assert "GET / " in res.stderr  # the server's access log, read by the handle's thread
    assert h.pid not in [p.pid for p in sbx.commands.list()]
    assert h.kill() is False and sbx.commands.kill(h.pid) is False


def test_stdin_round_trip(sbx: Sandbox) -> None:
    h = sbx.commands.run("cat; echo done", background=True, stdin=True)
    assert [p.stdin for p in sbx.commands.list() if p.pid == h.pid] == [True]
    h.send_stdin("x\n")
    h.send_stdin(b"\x00\xffbin\n")
    h.close_stdin()
    r = h.wait(timeout=10)
    assert r.stdout_bytes == b"x\n\x00\xffbin\ndone\n" and r.exit_code == 0


def test_stdin_errors(sbx: Sandbox) -> None:
    h = sbx.commands.run("sleep 30", background=True)
    with pytest.raises(ConflictError) as ei:
        h.send_stdin("x")
    assert "stdin" in str(ei.value) and ei.value.status == 409
    h2 = sbx.commands.run("sleep 30", background=True, stdin=True)
    h2.close_stdin()
    with pytest.raises(ConflictError, match="stdin"):
        h2.send_stdin("x")
    with pytest.raises(NotFoundError):
        sbx.commands.send_stdin(MISSING_PID, "x")
    with pytest.raises(NotFoundError):
        sbx.commands.close_stdin(MISSING_PID)
    assert h.kill() and h2.kill()


def test_reattach_from_another_client(engine: Engine, module_key: str, sbx: Sandbox) -> None:
    h = sbx.commands.run("for i in 1 2 3 4 5 6; do echo line$i; sleep 0.5; done",
                         background=True)
    wait_for(lambda: "line1" in h.stdout, 10, "the first line")
    h.disconnect()
    time.sleep(0.6)  # the process runs on without a reader
    other = Sandbox.connect(sbx.id, api_key=module_key, api_url=engine.url)
    lines: List[str] = []
    h2 = other.commands.connect(h.pid, on_stdout=lines.append)
    r = h2.wait(timeout=15)
    assert lines == [f"line{i}" for i in range(1, 7)], "replay then live output"
    assert r.exit_code == 0 and r.stdout.startswith("line1\n")
    # It ended less than 60 s ago: a new attach replays and ends at once.
    again = other.commands.connect(h.pid).wait(timeout=5)
    assert again.exit_code == 0 and "line6" in again.stdout


def test_disconnect_of_a_background_command_leaves_it_running(sbx: Sandbox) -> None:
    h = sbx.commands.run("sleep 30", background=True)
    h.disconnect()
    assert h.pid in [p.pid for p in sbx.commands.list()]
    assert sbx.commands.kill(h.pid) is True


def test_kill_and_signals(sbx: Sandbox) -> None:
    h = sbx.commands.run("trap 'echo got INT; kill $!; exit 5' INT; echo ready; "
                         "sleep 30 & wait", background=True)
    wait_for(lambda: "ready" in h.stdout, 10, "the trap to be set")
    h.send_signal("SIGINT")
    r = h.wait(timeout=10)
    assert r.exit_code == 5 and "got INT" in r.stdout
    h = sbx.commands.run("sleep 30", background=True)
    h.send_signal(15)
    r = h.wait(timeout=10)
    assert r.exit_code == 143 and r.signal == "SIGTERM"
    h = sbx.commands.run("sleep 30", background=True)
    with pytest.raises(InvalidArgumentError):
        h.send_signal("SIGBOGUS")
    assert sbx.commands.kill(h.pid) is True
    assert h.wait(timeout=10).exit_code == 137


def test_unknown_pid(sbx: Sandbox) -> None:
    assert sbx.commands.kill(MISSING_PID) is False
    with pytest.raises(NotFoundError) as ei:
        sbx.commands.connect(MISSING_PID)
    assert str(MISSING_PID) in str(ei.value) or "process" in str(ei.value)
    with pytest.raises(NotFoundError):
        sbx.commands.send_stdin(MISSING_PID, "x")
    with pytest.raises(NotFoundError):
        sbx.commands.send_signal(MISSING_PID, "SIGTERM")


def test_timeout_kills_the_whole_tree(sbx: Sandbox) -> None:
    t0 = time.monotonic()
    r = sbx.commands.run("bash -c 'sleep 100 & sleep 100'", timeout=2)
    took = time.monotonic() - t0
    assert r.exit_code == 124 and r.timed_out, r
    assert took < 8, f"a 2 s timeout took {took:.1f} s"
    ps = sbx.commands.run("ps -eo pid,stat,args")
    assert "sleep 100" not in ps.stdout, ps.stdout
    t0 = time.monotonic()
    r = sbx.commands.run("trap '' TERM; sleep 100", timeout=1)  # deaf to SIGTERM
    took = time.monotonic() - t0
    assert r.exit_code == 124 and r.timed_out and r.signal == "SIGKILL", r
    assert 2.5 < took < 8, f"SIGKILL should follow SIGTERM by 2 s; took {took:.1f} s"
    r = sbx.commands.run("sleep 0.3", timeout=0.1)  # a float timeout
    assert r.timed_out and r.exit_code == 124
    assert sbx.commands.run("sleep 1; echo ok", timeout=None).stdout == "ok\n"


def test_kill_all_ends_every_process_and_kernels_restart_fresh(engine: Engine, module_key: str,
                                                                sbx: Sandbox) -> None:
    assert sbx.run_code("marker = 7; marker").text == "7"
    h = sbx.commands.run("sleep 600 & setsid -f sleep 601; sleep 602", background=True)
    term = sbx.pty.create(80, 24, cmd="sleep 603")
    wait_for(lambda: all(f"sleep 60{i}" in sbx.commands.run("ps -eo args").stdout for i in range(4)),
             10, "the sleeps to run")
    killed = sbx.commands.kill_all()
    # sleep 600..603 (bash runs the last one itself), two supervisors, the Python kernel
    assert killed >= 7, killed
    assert h.wait(timeout=10).exit_code == 137
    assert term.wait(timeout=10).exit_code == 137
    ps = sbx.commands.run("ps -eo pid,args").stdout
    assert "sleep 60" not in ps and "ipykernel" not in ps, ps
    assert [p.pid for p in sbx.commands.list()] == []
    ex = sbx.run_code("marker")  # a fresh kernel: the state is gone
    assert ex.error is not None and ex.error.name == "NameError", ex
    assert sbx.run_code("1 + 1").text == "2"
    assert sbx.commands.kill_all() >= 1  # the new kernel

    async def main() -> None:
        a = await AsyncSandbox.connect(sbx.id, api_key=module_key, api_url=engine.url)
        await a.commands.run("sleep 604", background=True)
        assert await a.commands.kill_all() >= 2  # its bash (or sleep) and supervisor
        assert "sleep 604" not in (await a.commands.run("ps -eo args")).stdout

    asyncio.run(main())
    st, doc, raw = engine.raw("POST", f"/v1/sandboxes/{sbx.id}/processes/kill_all",
                              body={"all": True}, key=module_key)
    assert st == 400 and "no fields" in doc["error"]["message"], raw[:300]


def test_a_waited_command_dies_with_its_client(sbx: Sandbox) -> None:
    def stop_reading(line: str) -> None:
        raise KeyboardInterrupt  # as a user pressing Ctrl-C while run() waits

    with pytest.raises(KeyboardInterrupt):
        sbx.commands.run("echo ready; sleep 31; echo never", on_stdout=stop_reading)

    def gone() -> bool:
        return "sleep 31" not in sbx.commands.run("ps -eo args").stdout
    wait_for(gone, 8, "the command to be killed once its client went away")


def test_many_orphans_are_reaped(sbx: Sandbox) -> None:
    sbx.commands.run("for i in $(seq 200); do (sleep 0.01 &); done")
    time.sleep(1)
    r = sbx.commands.run("ps -eo stat= | grep -c '^Z' || true")
    assert r.stdout.strip() == "0", sbx.commands.run("ps -eo pid,ppid,stat,args").stdout


def test_binary_output_arrives_intact(sbx: Sandbox) -> None:
    r = sbx.commands.run("head -c 100000 /dev/urandom | tee /tmp/r; sha256sum /tmp/r >&2")
    assert len(r.stdout_bytes) == 100000
    assert hashlib.sha256(r.stdout_bytes).hexdigest() == r.stderr.split()[0]
    assert "\ufffd" in r.stdout  # the text view replaced what is not UTF-8


def _raw_stream_events(engine: Engine, key: str, sid: str, pid: int, seconds: float,
                       per_read: int, pause: float) -> List[dict]:
    """Reads a process's stream slowly (per_read bytes every pause seconds) for a while, or
    until a `dropped` event came."""
    conn = http.client.HTTPConnection("127.0.0.1", engine.port, timeout=30)
    events: List[dict] = []
    try:
        conn.request("GET", f"/v1/sandboxes/{sid}/processes/{pid}/stream",
                     headers={"X-API-Key": key})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()[:300]
        buf = b""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            chunk = resp.read1(per_read)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            events += [json.loads(x) for x in lines if x.strip()]
            if any(e["type"] == "dropped" for e in events):
                break
            time.sleep(pause)
    finally:
        conn.close()
    return events


def test_overwhelming_output_is_dropped_not_buffered(engine: Engine, module_key: str,
                                                     sbx: Sandbox) -> None:
    # It prints far more than the 1 MiB the agent holds, at full speed, for longer than the
    # test lasts (it is killed at the end).
    h = sbx.commands.run("yes | head -c 50G", background=True)
    h.disconnect()  # nobody reads it now
    time.sleep(0.5)
    with RssSampler(engine.pid()) as rss:
        events = _raw_stream_events(engine, module_key, sbx.id, h.pid, seconds=10,
                                    per_read=16 * 1024, pause=0.05)
        # The SDK reports what the engine dropped, as a counter and a marker line.
        markers: List[str] = []
        got_marker = threading.Event()

        def on_line(line: str) -> None:
            if line.startswith("[ai2in:"):
                markers.append(line)
                got_marker.set()
        h2 = sbx.commands.connect(h.pid, on_stdout=on_line)
        assert got_marker.wait(20), "no dropped marker"
        assert h2.kill() is True
        r = h2.wait(timeout=30)
    types = [e["type"] for e in events]
    assert types[0] == "start" and "dropped" in types, types[:20]
    assert sum(e["bytes"] for e in events if e["type"] == "dropped") > 0
    assert r.exit_code == 137 or r.signal == "SIGKILL", r
    assert r.dropped_bytes > 0 and h2.dropped_bytes == r.dropped_bytes
    assert re.fullmatch(r"\[ai2in: \d+ bytes of output dropped\]", markers[0])
    assert markers[0] in r.stdout
    assert rss.growth_mb < 64, f"engine RSS grew by {rss.growth_mb:.0f} MiB"
    agent = sbx.commands.run("grep VmRSS /proc/1/status").stdout.split()
    assert int(agent[1]) < 64 * 1024, f"agent RSS {agent}"


def test_bad_input_gets_clear_messages(engine: Engine, module_key: str, sbx: Sandbox) -> None:
    cases = [
        (dict(cmd="true", user="nobody-such"), "user"),
        (dict(cmd="true", cwd="/does/not/exist"), "cwd|directory|exist"),
        (dict(cmd=""), "cmd"),
        (dict(cmd="echo a\0b"), "cmd|nul"),
        (dict(cmd="true", timeout=-1), "timeout"),
        (dict(cmd="true", timeout=86401), "timeout"),
    ]
    for kwargs, mentions in cases:
        cmd = kwargs.pop("cmd")
        with pytest.raises(InvalidArgumentError) as ei:
            sbx.commands.run(cmd, **kwargs)  # type: ignore[arg-type]
        msg = str(ei.value).lower()
        assert ei.value.status == 400 and any(m in msg for m in mentions.split("|")), \
            f"{cmd!r} {kwargs}: {msg!r} should mention {mentions}"
    base = f"/v1/sandboxes/{sbx.id}/processes"
    for body, mentions in [({}, "cmd"), ({"cmd": 5}, "cmd"), ({"cmd": "true", "bogus": 1},
                                                             "bogus"),
                           ({"cmd": "true", "stdin": "yes"}, "stdin"),
                           ({"cmd": "true", "pty": {"cols": 0, "rows": 24}}, "cols"),
                           ({"cmd": "x" * (128 * 1024 + 1)}, "cmd")]:
        st, doc, raw = engine.raw("POST", base, body=body, key=module_key)
        assert st == 400 and doc["error"]["code"] == "bad_request", (body, raw[:300])
        assert mentions in doc["error"]["message"].lower(), (body, doc)
    st, doc, raw = engine.raw("POST", f"{base}/1/signal", body={"signal": "SIGNOPE"},
                              key=module_key)
    assert st in (400, 404), raw[:300]
    st, doc, raw = engine.raw("POST", f"{base}/abc/stdin", body=b"x", key=module_key)
    assert st in (400, 404) and doc["error"]["message"], raw[:300]
    assert sbx.commands.run("echo still fine").stdout == "still fine\n"


def test_async_sandbox_streams(engine: Engine, module_key: str, sbx: Sandbox) -> None:
    async def main() -> None:
        a = await AsyncSandbox.connect(sbx.id, api_key=module_key, api_url=engine.url)
        lines: List[str] = []
        h = await a.commands.run("cat", background=True, stdin=True, on_stdout=lines.append)
        await h.send_stdin("ping\n")
        await h.close_stdin()
        r = await h.wait(timeout=10)
        assert r.stdout == "ping\n" and lines == ["ping"]
        await a.files.write("/tmp/async.txt", "async")
        assert await a.files.read("/tmp/async.txt") == "async"
        chunks = [c async for c in await a.files.read("/tmp/async.txt", format="stream")]
        assert b"".join(chunks) == b"async"
        assert (await a.commands.run("exit 4")).exit_code == 4

    asyncio.run(main())
