"""Two engines on one PostgreSQL (issue 14, slice 2: nodes and ownership).

A throwaway PostgreSQL (test_database.py's) and two engines with their own ports, bridges,
address pools, state and run dirs and node names, and a short lease (3 s). A sandbox made on A
is listed and read from B, and what needs its container B relays to A (previews too); B's restart (its reconcile) and its reaper leave A's sandboxes alone; A killed
with SIGKILL: after its lease, B shows A's running sandbox as `error` "node node-a lost" and
answers 503 "node … is down" for A's paused one; A back: both are as they were and work; a
cordoned node answers create with 503, and takes creates again once uncordoned.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import signal
from typing import Iterator, List, Tuple

import pytest
from conftest import wait_until
from test_database import PgEngine, Postgres, postgres  # noqa: F401 (postgres: the fixture, one server per module)

LEASE = 3  # seconds (the smallest node-lease): renewed every second


def node_engine(url: str, name: str, pool: int, placement: str = "local") -> PgEngine:
    """An engine as node name; placement local by default: these tests (and test_forwarding's)
    need a sandbox made through a node to be that node's (test_placement.py spreads them)."""
    e = PgEngine(url)
    e.net_pool = f"10.78.{pool}.0/24"
    e.extra_args = ["--node-name", name, "--node-lease", str(LEASE), "--placement", placement]
    return e


@contextlib.contextmanager
def started_nodes(url: str, *extra: str) -> Iterator[Tuple[PgEngine, PgEngine]]:
    pools = random.sample(range(1, 255), 2)
    a = node_engine(url, "node-a", pools[0])
    b = node_engine(url, "node-b", pools[1])
    a.extra_args += list(extra)
    b.extra_args += list(extra)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        b.teardown()
        a.teardown()


@pytest.fixture
def two_nodes(postgres: Postgres) -> Iterator[Tuple[PgEngine, PgEngine]]:
    with started_nodes(postgres.url) as nodes:
        yield nodes


def preview_status(e: PgEngine, sid: str) -> Tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", e.preview_port, timeout=10)
    try:
        conn.request("GET", "/", headers={"Host": f"8080-{sid}.{e.domain}"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def state_via(e: PgEngine, sid: str, key: str) -> Tuple[str, str]:
    status, doc, raw = e.raw("GET", f"/v1/sandboxes/{sid}", key=key)
    assert status == 200, raw
    return doc["state"], doc.get("error") or ""


def run_via(e: PgEngine, sid: str, key: str, cmd: str) -> Tuple[int, dict]:
    status, doc, _ = e.raw("POST", f"/v1/sandboxes/{sid}/processes", body={"cmd": cmd}, key=key)
    return status, doc


def node_rows(e: PgEngine) -> List[str]:
    p = e.cli("node", "list")
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()[1:]


def test_two_nodes(two_nodes: Tuple[PgEngine, PgEngine]) -> None:
    a, b = two_nodes
    key = a.make_key("cluster")
    b.keys[key] = "cluster"
    sbx = a.sandbox(key)
    paused = a.sandbox(key)
    assert sbx.commands.run("echo on a").stdout == "on a\n"
    paused.commands.run("echo kept > /home/sandbox/f")
    paused.pause()

    # Listed and read from B, with its node.
    listed = {s["id"]: s for s in b.list(key)}
    assert set(listed) == {sbx.id, paused.id}
    assert listed[sbx.id]["node"] == "node-a"
    assert state_via(b, sbx.id, key) == ("running", "")

    # What needs the container: B relays it to A (test_forwarding.py covers every route).
    status, doc = run_via(b, sbx.id, key, "echo hi")
    assert status == 200, doc
    status, doc, raw = b.raw("POST", f"/v1/sandboxes/{sbx.id}/timeout", body={"timeout": 600}, key=key)
    assert status == 200, raw

    # Previews go through B's proxy to A's: the same answer from both (nothing on the port).
    assert preview_status(b, sbx.id) == preview_status(a, sbx.id)

    rows = node_rows(b)
    assert [r.split()[0] for r in rows] == ["node-a", "node-b"], rows
    assert all(r.split()[1] == "active" for r in rows), rows

    # B's restart (reconcile) and its reaper leave A's sandboxes alone.
    b.restart()
    assert state_via(a, sbx.id, key) == ("running", "")
    assert state_via(a, paused.id, key)[0] == "paused"
    assert sbx.commands.run("echo still").stdout == "still\n"

    # A dies: after its lease, B shows its running sandbox as lost; its paused one is
    # unavailable until it returns.
    a.stop(signal.SIGKILL)
    assert wait_until(lambda: state_via(b, sbx.id, key)[0] == "error", LEASE + 5), state_via(b, sbx.id, key)
    assert state_via(b, sbx.id, key) == ("error", "node node-a lost")
    assert state_via(b, paused.id, key)[0] == "paused"
    status, doc, raw = b.raw("POST", f"/v1/sandboxes/{paused.id}/resume", key=key)
    assert status == 503 and doc["error"]["code"] == "node_down", raw
    assert "node node-a is down" in doc["error"]["message"], raw
    assert any(r.split()[:2] == ["node-a", "down"] for r in node_rows(b)), node_rows(b)

    # A returns: it re-adopts what still runs, and both work again.
    a.start()
    assert state_via(b, sbx.id, key) == ("running", "")
    assert sbx.commands.run("echo back").stdout == "back\n"
    paused.resume()
    assert paused.commands.run("cat /home/sandbox/f").stdout == "kept\n"

    # Cordoned: no creates on A (503 naming why); B still creates; uncordoned: A does again.
    p = b.cli("node", "cordon", "node-a")
    assert p.returncode == 0, p.stderr
    status, doc, raw = a.raw("POST", "/v1/sandboxes", body={"template": "base"}, key=key)
    assert status == 503 and doc["error"]["code"] == "node_cordoned", raw
    assert "node-a is cordoned" in doc["error"]["message"], raw
    on_b = b.sandbox(key)
    assert on_b.get_info()["node"] == "node-b"
    assert b.cli("node", "uncordon", "node-a").returncode == 0
    again = a.sandbox(key)
    assert again.get_info()["node"] == "node-a"
    assert b.cli("node", "cordon", "nobody").returncode != 0

    for s in (sbx, paused, again):
        assert a.raw("DELETE", f"/v1/sandboxes/{s.id}", key=key)[0] == 200
    assert b.raw("DELETE", f"/v1/sandboxes/{on_b.id}", key=key)[0] == 200
    assert b.list(key) == []


def test_cap_is_cluster_wide(postgres: Postgres) -> None:
    """The team's running cap counts the sandboxes of every node: 2 on A, then B refuses."""
    with started_nodes(postgres.url, "--max-running", "2") as (a, b):
        key = a.make_key("capped")
        b.keys[key] = "capped"
        first, second = a.sandbox(key), a.sandbox(key)
        status, doc, raw = b.raw("POST", "/v1/sandboxes", body={"template": "base"}, key=key)
        assert status == 429 and "cap is 2" in doc["error"]["message"], raw
        assert a.raw("DELETE", f"/v1/sandboxes/{first.id}", key=key)[0] == 200
        on_b = b.sandbox(key)
        assert on_b.get_info()["node"] == "node-b"
        assert a.raw("DELETE", f"/v1/sandboxes/{second.id}", key=key)[0] == 200
        assert b.raw("DELETE", f"/v1/sandboxes/{on_b.id}", key=key)[0] == 200
