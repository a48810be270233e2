"""Sandbox lifecycle through the SDK: create, get_info, commands, connect, list, kill."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone

import pytest
from conftest import SDK_DIR, Engine

from ai2in import CommandExitError, NotFoundError, Sandbox

ID_RE = re.compile(r"^sbx_[a-z0-9]{20}$")


def parse_ts(s: str) -> datetime:
    """ISO-8601 with a Z or an offset, on any Python >= 3.9."""
    assert isinstance(s, str), f"timestamp is not a string: {s!r}"
    t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    assert t.tzinfo is not None, f"timestamp {s!r} has no time zone"
    return t


def test_create_and_get_info(engine: Engine, key: str) -> None:
    before = datetime.now(timezone.utc)
    sbx = engine.sandbox(key, metadata={"user": "alice", "job": "j1"},
                         envs={"SECRET_TOKEN": "s3cr3t-value"})
    assert ID_RE.match(sbx.id), sbx.id
    assert sbx.sandbox_id == sbx.id
    info = sbx.get_info()
    assert info["id"] == sbx.id
    assert info["state"] == "running"
    assert info["template"] == "base"
    assert info["metadata"] == {"user": "alice", "job": "j1"}
    assert info["timeout"] is None and info["deadline"] is None
    assert info["cpu_count"] == 1 and info["memory_mb"] == 512
    created = parse_ts(info["created_at"])
    assert abs((created - before).total_seconds()) < 30
    end_at = parse_ts(info["end_at"])  # idle reaping applies: never null while running
    assert end_at > datetime.now(timezone.utc)
    assert "envs" not in info
    assert "s3cr3t-value" not in json.dumps(info), "envs must never be echoed back"
    assert sbx.is_running()


def test_commands_output_and_exit_code(engine: Engine, key: str) -> None:
    sbx = engine.sandbox(key)
    r = sbx.commands.run("echo hi; echo oops >&2; exit 3")
    assert (r.stdout, r.stderr, r.exit_code) == ("hi\n", "oops\n", 3)
    assert sbx.commands.run("true").exit_code == 0
    with pytest.raises(CommandExitError) as ei:
        sbx.commands.run("echo bad >&2; exit 7", check=True)
    assert ei.value.exit_code == 7 and ei.value.result.stderr == "bad\n"
    # Output with characters JSON must escape, and more than a pipe buffer of output.
    r = sbx.commands.run("printf 'a\"b\\\\c\\ttab\\n'; head -c 300000 /dev/zero | tr '\\0' x")
    assert r.stdout.startswith('a"b\\c\ttab\n') and r.stdout.count("x") == 300000


def test_commands_envs_cwd_user(engine: Engine, key: str) -> None:
    sbx = engine.sandbox(key, envs={"FROM_CREATE": "c1"})
    assert sbx.commands.run("echo $FROM_CREATE").stdout == "c1\n"
    r = sbx.commands.run('echo "$FROM_CALL $FROM_CREATE"', envs={"FROM_CALL": "k2"})
    assert r.stdout == "k2 c1\n"
    assert sbx.commands.run("echo ${FROM_CALL:-unset}").stdout == "unset\n", \
        "per-call envs must not stick to later commands"
    assert sbx.commands.run("pwd").stdout == "/home/sandbox\n"
    assert sbx.commands.run("pwd", cwd="/tmp").stdout == "/tmp\n"
    assert sbx.commands.run("id -un", user="sandbox").stdout == "sandbox\n"
    assert sbx.commands.run("id -un", user="root").stdout == "root\n"
    # State persists between commands (same filesystem).
    sbx.commands.run("echo persisted > /home/sandbox/note.txt")
    assert sbx.commands.run("cat note.txt").stdout == "persisted\n"


def test_command_timeout(engine: Engine, key: str) -> None:
    sbx = engine.sandbox(key)
    t0 = time.monotonic()
    r = sbx.commands.run("echo started; sleep 30; echo never", timeout=1)
    took = time.monotonic() - t0
    assert took < 10, f"a 1 s command timeout took {took:.1f} s"
    assert r.exit_code == 124 and r.timed_out
    assert "never" not in r.stdout
    assert sbx.commands.run("echo alive").stdout == "alive\n"


def test_connect_same_process(engine: Engine, key: str) -> None:
    sbx = engine.sandbox(key)
    n = len(engine.list(key))
    other = engine.connect(sbx.id, key)
    assert other.id == sbx.id
    assert len(engine.list(key)) == n, "connect must not create a sandbox"
    sbx.commands.run("echo from-first > /tmp/m")
    assert other.commands.run("cat /tmp/m").stdout == "from-first\n"


def test_connect_from_another_process(engine: Engine, key: str) -> None:
    sbx = engine.sandbox(key)
    sbx.commands.run("echo cross-process > /tmp/marker")
    script = textwrap.dedent("""
        import sys
        from ai2in import Sandbox
        sbx = Sandbox.connect(sys.argv[1])
        assert sbx.get_info()["state"] == "running"
        r = sbx.commands.run("cat /tmp/marker; echo ok > /tmp/from_child")
        print(r.stdout, end="")
    """)
    env = dict(os.environ, PYTHONPATH=str(SDK_DIR), AI2IN_API_KEY=key, AI2IN_API_URL=engine.url)
    p = subprocess.run([sys.executable, "-c", script, sbx.id], capture_output=True, text=True,
                       timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "cross-process\n"
    assert sbx.commands.run("cat /tmp/from_child").stdout == "ok\n"


def test_connect_missing(engine: Engine, key: str) -> None:
    with pytest.raises(NotFoundError) as ei:
        engine.connect("sbx_" + "0" * 20, key)
    assert ei.value.status == 404 and ei.value.code == "not_found"


def test_list_filters_and_pages(engine: Engine, fresh_key: str) -> None:
    k = fresh_key
    assert engine.list(k) == []
    ids = [engine.sandbox(k, metadata={"grp": "g", "i": str(i)}).id for i in range(3)]
    got = engine.list(k)
    assert [s["id"] for s in got] == ids, "list is ordered by creation time, oldest first"
    assert all(s["state"] == "running" for s in got)
    assert [s["id"] for s in engine.list(k, metadata={"i": "1"})] == [ids[1]]
    assert [s["id"] for s in engine.list(k, metadata={"grp": "g", "i": "2"})] == [ids[2]]
    assert engine.list(k, metadata={"grp": "other"}) == []
    # Any character in a key (a '"' made the store's JSON path invalid: a 500).
    odd = engine.sandbox(k, metadata={'we"ird': "1", "a.b": "x", "$[0]": "y"}).id
    assert [s["id"] for s in engine.list(k, metadata={'we"ird': "1"})] == [odd]
    assert [s["id"] for s in engine.list(k, metadata={"a.b": "x", "$[0]": "y"})] == [odd]
    assert engine.list(k, metadata={'we"ird': "2"}) == []
    engine.connect(odd, k).kill()
    assert [s["id"] for s in engine.list(k, state="running")] == ids
    assert engine.list(k, state="paused") == []
    # The SDK follows next_token.
    assert [s["id"] for s in engine.list(k, page_size=2)] == ids
    # Raw pagination.
    st, doc, raw = engine.raw("GET", "/v1/sandboxes?limit=2", key=k)
    assert st == 200, raw
    assert [s["id"] for s in doc["sandboxes"]] == ids[:2]
    assert doc["next_token"]
    st, doc2, raw = engine.raw("GET", f"/v1/sandboxes?limit=2&next_token={doc['next_token']}",
                               key=k)
    assert st == 200, raw
    assert [s["id"] for s in doc2["sandboxes"]] == ids[2:]
    assert doc2["next_token"] is None
    # Killed sandboxes leave the list.
    Sandbox.connect(ids[0], api_key=k, api_url=engine.url).kill()
    assert [s["id"] for s in engine.list(k)] == ids[1:]


def test_context_manager_kills(engine: Engine, fresh_key: str) -> None:
    with Sandbox(api_key=fresh_key, api_url=engine.url) as sbx:
        sid = sbx.id
        assert sbx.commands.run("echo in").stdout == "in\n"
    with pytest.raises(NotFoundError):
        engine.connect(sid, fresh_key)
    with pytest.raises(ZeroDivisionError):
        with Sandbox(api_key=fresh_key, api_url=engine.url) as sbx2:
            sid2 = sbx2.id
            1 / 0
    with pytest.raises(NotFoundError):
        engine.connect(sid2, fresh_key)
    assert engine.list(fresh_key) == []


def test_create_classmethod(engine: Engine, fresh_key: str) -> None:
    sbx = Sandbox.create(api_key=fresh_key, api_url=engine.url, metadata={"via": "create"})
    try:
        assert sbx.get_info()["metadata"] == {"via": "create"}
    finally:
        assert sbx.kill() is True


def test_kill(engine: Engine, key: str) -> None:
    sbx = engine.sandbox(key)
    other = engine.connect(sbx.id, key)
    assert sbx.kill() is True
    assert sbx.kill() is False
    assert other.kill() is False
    assert not sbx.is_running()
    with pytest.raises(NotFoundError):
        sbx.get_info()
    with pytest.raises(NotFoundError):
        sbx.commands.run("true")
    assert sbx.id not in [s["id"] for s in engine.list(key)]
    st, doc, raw = engine.raw("DELETE", f"/v1/sandboxes/{sbx.id}", key=key)
    assert st == 404 and doc["error"]["code"] == "not_found", raw
    assert "killed" in doc["error"]["message"], \
        f"a second kill should say the sandbox was already killed: {raw!r}"


def test_kill_never_existing(engine: Engine, key: str) -> None:
    st, doc, raw = engine.raw("DELETE", "/v1/sandboxes/sbx_" + "a" * 20, key=key)
    assert st == 404 and doc["error"]["code"] == "not_found", raw


def test_async_sandbox(engine: Engine, fresh_key: str) -> None:
    import asyncio

    from ai2in import AsyncSandbox

    async def main() -> str:
        async with await AsyncSandbox.create(api_key=fresh_key, api_url=engine.url) as sbx:
            r1, r2 = await asyncio.gather(sbx.commands.run("sleep 1; echo a"),
                                          sbx.commands.run("sleep 1; echo b"))
            assert (r1.stdout, r2.stdout) == ("a\n", "b\n")
            assert (await sbx.get_info())["state"] == "running"
            return sbx.id

    t0 = time.monotonic()
    sid = asyncio.run(main())
    assert time.monotonic() - t0 < 10
    with pytest.raises(NotFoundError):
        engine.connect(sid, fresh_key)
