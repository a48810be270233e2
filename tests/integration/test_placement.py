"""Placement of creates over the nodes (issue 14, slice 4).

Three engines on one throwaway PostgreSQL (test_nodes.py's set-up) with placement `spread`
and a cluster secret: a create sent to any node is made by the node with the most room of two
drawn at random. A node at its capacity (--node-capacity) gets none, a cordoned one gets none
(and a cordoned node that receives a create still places it elsewhere), a node that cannot be
reached is passed over for another; the team's running cap holds cluster-wide under 30
concurrent creates spread over the three nodes. Drain: a node's paused sandboxes move to the
others (`ai2ind node drain`), resume there with every file intact (checksums, links, modes, a
deleted template file), and leave nothing on the drained node; one paused with its memory
stays; the receiving end refuses anyone but the owner with the secret, and a wrong digest.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import threading
import time
from typing import Dict, Iterator, List, Sequence, Tuple

import pytest
from conftest import free_port, wait_until
from test_database import PgEngine, Postgres, postgres  # noqa: F401 (postgres: the fixture, one server per module)
from test_forwarding import SECRET, secret_file
from test_nodes import node_engine

Nodes = Tuple[PgEngine, PgEngine, PgEngine]


@contextlib.contextmanager
def three_nodes(url: str, extra: Sequence[Sequence[str]] = ((), (), ())) -> Iterator[Nodes]:
    pools = random.sample(range(1, 255), 3)
    with secret_file(SECRET) as path:
        nodes = [node_engine(url, f"node-{n}", pools[i], placement="spread") for i, n in enumerate("abc")]
        for e, more in zip(nodes, extra):
            e.extra_args += ["--cluster-secret-file", path] + list(more)
        try:
            for e in nodes:
                e.start()
            yield nodes[0], nodes[1], nodes[2]
        finally:
            for e in reversed(nodes):
                e.teardown()


def share_key(nodes: Sequence[PgEngine], team: str) -> str:
    key = nodes[0].make_key(team)
    for e in nodes[1:]:
        e.keys[key] = team
    return key


def create_via(e: PgEngine, key: str) -> Tuple[int, dict]:
    status, doc, raw = e.raw("POST", "/v1/sandboxes", body={"template": "base"}, key=key, timeout=120)
    assert doc is not None, raw
    if status == 201:
        e.created.append((doc["id"], key))
    return status, doc


def made_on(e: PgEngine, key: str) -> str:
    status, doc = create_via(e, key)
    assert status == 201, doc
    return doc["node"]


def set_state(e: PgEngine, verb: str, name: str) -> None:
    p = e.cli("node", verb, name)
    assert p.returncode == 0, p.stderr


def test_spread_by_capacity_and_cordon(postgres: Postgres) -> None:
    caps = (["--node-capacity", "20"], ["--node-capacity", "20"], ["--node-capacity", "2"])
    with three_nodes(postgres.url, caps) as (a, b, c):
        key = share_key((a, b, c), "placed")

        # Only C is active: creates sent to A (cordoned itself) and B go to C, up to its
        # capacity of 2.
        set_state(a, "cordon", "node-a")
        set_state(a, "cordon", "node-b")
        assert [made_on(a, key), made_on(b, key)] == ["node-c", "node-c"]
        set_state(a, "uncordon", "node-a")
        set_state(a, "uncordon", "node-b")

        # C is full: 12 creates through all three nodes land on A and B, both of them.
        where = collections.Counter(made_on((a, b, c)[i % 3], key) for i in range(12))
        print(f"\n12 creates through A, B, C with C full: {dict(where)}")
        assert where["node-c"] == 0, where
        assert where["node-a"] >= 3 and where["node-b"] >= 3, where

        # B cordoned: it gets none, also of the creates sent to it.
        set_state(c, "cordon", "node-b")
        where = collections.Counter(made_on((a, b, c)[i % 3], key) for i in range(6))
        assert where == {"node-a": 6}, where
        set_state(c, "uncordon", "node-b")

        # Every node lists them all, each with its node; the figures are in `node list`.
        listed = collections.Counter(s["node"] for s in b.list(key))
        assert listed["node-c"] == 2 and sum(listed.values()) == 20, listed
        rows = {r.split()[0]: r for r in a.cli("node", "list").stdout.splitlines()[1:]}
        assert set(rows) >= {"node-a", "node-b", "node-c"}, rows


def test_unreachable_node_is_passed_over(postgres: Postgres) -> None:
    """C advertises a URL nobody listens on: it looks active, but creates placed there fall
    back to another node, and every create succeeds."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    with three_nodes(postgres.url, ((), (), ("--advertise", nowhere))) as (a, b, c):
        key = share_key((a, b, c), "fallback")
        where = collections.Counter(made_on((a, b)[i % 2], key) for i in range(8))
        assert where["node-c"] == 0 and sum(where.values()) == 8, where
        logs = a.log_tail(400) + b.log_tail(400)
        # C has no sandbox, so it is the better of any draw it is in: it was tried.
        assert "placement: node node-c did not take a create" in logs, logs


def test_team_cap_cluster_wide_under_concurrency(postgres: Postgres) -> None:
    cap = ["--max-running", "5"]
    with three_nodes(postgres.url, (cap, cap, cap)) as nodes:
        key = share_key(nodes, "capped")
        results: List[Tuple[int, dict]] = []
        lock = threading.Lock()

        def one(i: int) -> None:
            r = create_via(nodes[i % 3], key)
            with lock:
                results.append(r)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        statuses: Dict[int, int] = collections.Counter(s for s, _ in results)
        assert statuses == {201: 5, 429: 25}, [(s, d.get("error")) for s, d in results if s not in (201, 429)]
        assert all("cap is 5" in d["error"]["message"] for s, d in results if s == 429)
        running = nodes[1].list(key, state=["running"])
        assert len(running) == 5, running


HOME = "/home/sandbox"
# Files of every kind a layer holds: data (one big, sparse-free), a tree, a symlink, a hard
# link, modes, an empty directory, and a template file deleted (a whiteout in the upper dir).
WRITE = (f"set -e; cd {HOME}; head -c 4000000 /dev/urandom > big; mkdir -p tree/a/b; echo deep > tree/a/b/f;"
         " ln -s tree/a/b/f link; ln big big.hard; chmod 4750 big; mkdir empty; rm -f /etc/debian_version;"
         " echo changed > /etc/motd")
DIGEST = (f"cd {HOME}; sha256sum big tree/a/b/f link big.hard /etc/motd; stat -c '%n %a %h %F' big empty link;"
          " test -e /etc/debian_version && echo whiteout-lost || echo whiteout-kept")


def test_drain_moves_paused_sandboxes(postgres: Postgres) -> None:
    with three_nodes(postgres.url) as (a, b, c):
        key = share_key((a, b, c), "drained")
        # Made on A: B and C cordoned meanwhile.
        set_state(a, "cordon", "node-b")
        set_state(a, "cordon", "node-c")
        sbxs = [a.sandbox(key) for _ in range(3)]
        frozen = a.sandbox(key)
        set_state(a, "uncordon", "node-b")
        set_state(a, "uncordon", "node-c")
        assert all(s.get_info()["node"] == "node-a" for s in sbxs + [frozen])

        before = {}
        for s in sbxs:
            r = s.commands.run(WRITE, user="root")
            assert r.exit_code == 0, r.stderr
            before[s.id] = s.commands.run(DIGEST, user="root").stdout
            assert "whiteout-kept" in before[s.id]
            s.pause()
        frozen.pause(keep_memory=True)
        layers = {s.id: a.layer_dir(s.id) for s in sbxs}
        assert all(os.path.isdir(p) for p in layers.values())

        t0 = time.monotonic()
        p = a.cli("node", "drain", "node-a", "180", timeout=240)
        took = time.monotonic() - t0
        assert p.returncode == 0, p.stdout + p.stderr + a.log_tail(80)
        out = p.stdout
        print(f"\n`ai2ind node drain node-a` took {took:.1f} s:\n{out}")
        drain_log = [line for line in a.log_tail(300).splitlines() if "drain" in line or "warn" in line]
        print("\n".join(drain_log))
        # Every move succeeded at its first try (a retry hides a broken stream: tar on a pipe).
        assert not [line for line in drain_log if "cannot move" in line], drain_log
        assert "3 paused with their files to move" in out, out
        assert "1 paused with their memory stay" in out, out
        assert "node node-a drained" in out, out
        for s in sbxs:
            assert f"moved {s.id} to node node-" in out, out
        rows = {r.split()[0]: r.split()[1] for r in a.cli("node", "list").stdout.splitlines()[1:]}
        assert rows["node-a"] == "draining", rows

        for s in sbxs:
            node = s.get_info()["node"]
            assert node in ("node-b", "node-c"), node
            owner = b if node == "node-b" else c
            assert os.path.isdir(owner.layer_dir(s.id))
            # Nothing of it is left on A.
            assert not os.path.exists(layers[s.id]), layers[s.id]
            assert not os.path.exists(os.path.join(a.state_dir, "sandboxes", s.id))
            # A resume through the drained node lands on the new owner, every file intact.
            status, doc, raw = a.raw("POST", f"/v1/sandboxes/{s.id}/resume", key=key, timeout=120)
            assert status == 200, raw
            assert s.commands.run(DIGEST, user="root").stdout == before[s.id]
            assert s.get_info()["node"] == node
        # The one paused with its memory stays on A, and resumes there.
        assert frozen.get_info()["node"] == "node-a"
        frozen.resume()
        assert frozen.commands.run("echo alive").stdout == "alive\n"

        # A draining node gets no creates.
        where = collections.Counter(made_on(a, key) for _ in range(3))
        assert where["node-a"] == 0, where
        set_state(a, "uncordon", "node-a")


def test_drain_running_pause_move_resume(postgres: Postgres) -> None:
    """`--running pause-move-resume`: a running sandbox is paused, moved and runs again on
    another node with every file; with nowhere to go it stays paused on its node, and moves
    and runs once a node takes it."""
    with three_nodes(postgres.url) as (a, b, c):
        key = share_key((a, b, c), "evacuated")
        try:
            evacuate(a, b, key)
        finally:  # the node rows outlive the engines: the next test finds them active
            for n in ("node-a", "node-b", "node-c"):
                set_state(a, "uncordon", n)


def evacuate(a: PgEngine, b: PgEngine, key: str) -> None:
    set_state(a, "cordon", "node-b")
    set_state(a, "cordon", "node-c")
    s1 = a.sandbox(key)
    set_state(a, "uncordon", "node-b")
    set_state(a, "uncordon", "node-c")
    assert s1.commands.run(WRITE, user="root").exit_code == 0
    before = s1.commands.run(DIGEST, user="root").stdout

    p = a.cli("node", "drain", "node-a", "180", "--running", "pause-move-resume", timeout=240)
    out = p.stdout
    print(f"\n`ai2ind node drain node-a --running pause-move-resume`:\n{out}{p.stderr}")
    assert p.returncode == 0, out + p.stderr + a.log_tail(80)
    assert "1 running to pause, move and resume" in out, out
    assert f"paused {s1.id}, moved it to node node-" in out and "resumed it there" in out, out
    assert "node node-a drained" in out, out
    rows = {r.split()[0]: r.split()[1] for r in a.cli("node", "list").stdout.splitlines()[1:]}
    assert rows["node-a"] == "evacuating", rows
    info = s1.get_info()
    assert info["node"] in ("node-b", "node-c") and info["state"] == "running", info
    assert s1.commands.run(DIGEST, user="root").stdout == before
    assert not os.path.exists(os.path.join(a.state_dir, "sandboxes", s1.id))

    # Nowhere to go (B and C cordoned): paused on A, never lost; the CLI says it is left.
    set_state(a, "uncordon", "node-a")
    set_state(a, "cordon", "node-b")
    set_state(a, "cordon", "node-c")
    s2 = a.sandbox(key)
    assert s2.commands.run(WRITE, user="root").exit_code == 0
    before2 = s2.commands.run(DIGEST, user="root").stdout
    p = a.cli("node", "drain", "node-a", "8", "--running", "pause-move-resume", timeout=60)
    assert p.returncode != 0, p.stdout
    assert "1 sandboxes are still on node node-a" in p.stderr, p.stdout + p.stderr
    assert wait_until(lambda: s2.get_info()["state"] == "paused", 30, 0.5), s2.get_info()
    assert s2.get_info()["node"] == "node-a"
    assert wait_until(lambda: "no active node with room" in a.log_tail(200), 10, 0.5), a.log_tail(40)
    # A node takes it again: the drain goes on without the CLI, and resumes it there.
    set_state(a, "uncordon", "node-b")
    assert wait_until(lambda: s2.get_info()["state"] == "running", 90, 0.5), (s2.get_info(), a.log_tail(40))
    assert s2.get_info()["node"] == "node-b"
    assert s2.commands.run(DIGEST, user="root").stdout == before2

    # Bad input: said at once, nothing changed.
    p = a.cli("node", "drain", "node-a", "--running", "move", timeout=30)
    assert p.returncode != 0 and "pause-move-resume" in p.stderr, p.stderr


def test_layer_route_needs_a_peer(postgres: Postgres) -> None:
    """The receiving end of drain answers only to a node with the secret that owns the sandbox."""
    with three_nodes(postgres.url) as (a, b, c):
        key = share_key((a, b, c), "peer")
        set_state(a, "cordon", "node-b")
        set_state(a, "cordon", "node-c")
        s = a.sandbox(key)
        set_state(a, "uncordon", "node-b")
        set_state(a, "uncordon", "node-c")
        s.pause()
        path = f"/v1/internal/layers/{s.id}"
        status, doc, raw = b.raw("PUT", path, body=b"\0\0\0\0" + bytes(32))
        assert status == 403, raw
        secret = {"X-Ai2in-Cluster-Secret": SECRET}
        status, doc, raw = b.raw("PUT", path, body=b"\0\0\0\0" + bytes(32),
                                 headers={**secret, "X-Ai2in-Forwarded-By": "node-c"})
        assert status == 409 and "node-a's" in doc["error"]["message"], raw
        # As its owner, but a wrong digest: refused, nothing kept.
        status, doc, raw = b.raw("PUT", path, body=b"\0\0\0\x01x\0\0\0\0" + bytes(32),
                                 headers={**secret, "X-Ai2in-Forwarded-By": "node-a"})
        assert status == 400, raw
        assert not os.path.exists(os.path.join(b.state_dir, "disk", s.id))
        assert s.get_info()["node"] == "node-a"
        # The resume after a move: refused without the secret, and for another node's sandbox.
        status, doc, raw = b.raw("POST", path + "/resume")
        assert status == 403, raw
        status, doc, raw = b.raw("POST", path + "/resume", headers={**secret, "X-Ai2in-Forwarded-By": "node-a"})
        assert status == 409 and "node-a's" in doc["error"]["message"], raw
        assert s.get_info()["state"] == "paused"
