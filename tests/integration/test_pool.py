"""The warm pool (--pool base=N): a create takes a sandbox started ahead and makes it the
team's. What a user gets must be indistinguishable from a cold create: a fresh id, nothing of
anyone before, the create's envs, metadata, timeout and limits; pooled sandboxes are nobody's
(never listed, never reachable) and a stop or a kill -9 leaves none behind."""

from __future__ import annotations

import glob
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator, List

import pytest
from conftest import TEST_RUNTIME, Engine, cgroup_dirs, mounts_under, start_engine, wait_for
from test_database import postgres  # noqa: F401 (the fixture: one throwaway PostgreSQL per module)

# The pool is runc's (its limits change in place: engine/sandbox/pool.c): an engine whose
# default runtime is runsc refuses --pool at start.
pytestmark = pytest.mark.skipif(TEST_RUNTIME == "runsc", reason="the warm pool needs runc (issue 17)")

POOL = 2


def pool_stats(e: Engine) -> Dict[str, Any]:
    status, doc, raw = e.raw("GET", "/v1/health")
    assert status == 200, raw
    assert isinstance(doc["pool"], dict), doc
    return doc["pool"]["base"]


def wait_full(e: Engine, n: int = POOL) -> Dict[str, Any]:
    return wait_for(lambda: (s := pool_stats(e))["ready"] >= n and s, 180,
                    f"the pool to hold {n} ready sandboxes ({e.log_tail(5)})", interval=0.2)


def sandbox_ids_on_host(e: Engine) -> List[str]:
    d = os.path.join(e.run_dir, "sandboxes")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


@pytest.fixture(scope="module")
def pool_engine() -> Iterator[Engine]:
    e = start_engine(["--pool", f"base={POOL}", "--max-running", "60"])
    yield e
    e.teardown()


def test_health_without_pool_says_null(engine: Engine) -> None:
    status, doc, _ = engine.raw("GET", "/v1/health")
    assert status == 200 and doc["pool"] is None


def test_bad_pool_setting_stops_the_start() -> None:
    e = Engine(["--pool", "base=lots"])
    try:
        with pytest.raises(BaseException):
            e.start()
        assert "pool: the count of base must be 0 to 256" in e.log_tail()
    finally:
        e.teardown()


def test_pool_from_the_config_file() -> None:
    e = Engine()
    try:
        with open(os.path.join(e.root, "ai2ind.conf"), "w") as f:
            f.write("pool = base=1\n")
        e.start()
        assert pool_stats(e)["size"] == 1
        wait_full(e, 1)
    finally:
        e.teardown()


def test_pooled_create_is_fresh_and_clean(pool_engine: Engine) -> None:
    e = pool_engine
    k = e.make_key("pool-clean")
    wait_full(e)
    pooled_before = sandbox_ids_on_host(e)
    hits = pool_stats(e)["hits"]
    s1 = e.sandbox(k)
    assert pool_stats(e)["hits"] == hits + 1
    assert s1.id in pooled_before  # it was one of the pool's, started ahead
    # The kernel ran nothing before its user: the first execution is the first.
    first = s1.run_code("secret = 41; secret + 1")
    assert first.text == "42" and first.execution_count == 1
    s1.commands.run("echo mine > /tmp/mark && setsid nohup sleep 1000 >/dev/null 2>&1 </dev/null &")
    assert s1.kill() is True
    wait_full(e)
    s2 = e.sandbox(k)
    assert pool_stats(e)["hits"] == hits + 2
    assert s2.id != s1.id
    assert s2.commands.run("test -e /tmp/mark").exit_code == 1
    assert s2.commands.run("pgrep -x sleep").exit_code == 1
    ex = s2.run_code("'secret' in globals()")
    assert ex.text == "False" and ex.execution_count == 1
    assert [s["id"] for s in e.list(k)] == [s2.id]
    s2.kill()


def test_hand_out_applies_envs_metadata_timeout_and_memory(pool_engine: Engine) -> None:
    e = pool_engine
    k = e.make_key("pool-apply")
    wait_full(e)
    hits = pool_stats(e)["hits"]
    s = e.sandbox(k, envs={"POOLED_X": "yes"}, metadata={"who": "pool"}, timeout=120, memory_mb=256)
    assert pool_stats(e)["hits"] == hits + 1, "the create did not come from the pool"
    assert s.commands.run("echo $POOLED_X").stdout == "yes\n"
    assert s.run_code("import os; os.environ.get('POOLED_X')").text == "'yes'"
    info = s.get_info()
    assert info["metadata"] == {"who": "pool"} and info["timeout"] == 120 and info["deadline"]
    assert info["memory_mb"] == 256 and info["end_reason"] == "timeout"
    limit = glob.glob(f"/sys/fs/cgroup/memory/{e.cgroup_parent}/{s.id}/memory.limit_in_bytes")
    assert limit and int(open(limit[0]).read()) == 256 * 1024 * 1024
    # Under the limit a process lives; over it, it dies (the OOM killer, not the pool's 512).
    ok = s.commands.run("python3 -c \"b = bytearray(100 << 20); print('ok')\"", timeout=60)
    assert ok.stdout == "ok\n"
    over = s.commands.run("python3 -c \"b = bytearray(400 << 20); print('survived')\"", timeout=60)
    assert over.exit_code != 0 and "survived" not in over.stdout
    s.kill()


def test_create_the_pool_cannot_serve_is_made_cold(pool_engine: Engine) -> None:
    e = pool_engine
    k = e.make_key("pool-unsuited")
    wait_full(e)
    before = pool_stats(e)
    s = e.sandbox(k, allow_internet_access=False)
    after = pool_stats(e)
    assert after["unsuited"] == before["unsuited"] + 1 and after["hits"] == before["hits"]
    assert s.id not in sandbox_ids_on_host(e) or s.get_info()["network"]["allow_internet_access"] is False
    assert s.commands.run("echo cold").stdout == "cold\n"
    s.kill()


def test_pooled_sandboxes_are_nobodys(pool_engine: Engine) -> None:
    e = pool_engine
    k = e.make_key("pool-nobody")
    wait_full(e)
    pooled = sandbox_ids_on_host(e)
    assert len(pooled) >= POOL
    assert e.list(k) == []
    for sid in pooled:
        status, _, raw = e.raw("GET", f"/v1/sandboxes/{sid}", key=k)
        assert status == 404, raw
        status, _, _ = e.raw("POST", f"/v1/sandboxes/{sid}/processes", {"cmd": "id"}, key=k)
        assert status == 404
    # Nor through the preview proxy.
    import http.client
    for sid in pooled:
        c = http.client.HTTPConnection("127.0.0.1", e.preview_port, timeout=10)
        c.request("GET", "/", headers={"Host": f"8888-{sid}.{e.domain}"})
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status in (404, 502, 503) and r.status != 200


def test_burst_larger_than_the_pool_all_succeed(pool_engine: Engine) -> None:
    e = pool_engine
    k = e.make_key("pool-burst")
    wait_full(e)
    before = pool_stats(e)

    def one(i: int) -> str:
        s = e.sandbox(k, metadata={"i": str(i)})
        out = s.commands.run("echo up").stdout
        assert out == "up\n"
        return s.id

    with ThreadPoolExecutor(10) as ex:
        ids = list(ex.map(one, range(50)))
    assert len(set(ids)) == 50
    after = pool_stats(e)
    served = (after["hits"] - before["hits"]) + (after["misses"] - before["misses"])
    assert served == 50 and after["hits"] - before["hits"] >= POOL
    assert len(e.list(k)) == 50
    with ThreadPoolExecutor(10) as ex:
        list(ex.map(lambda sid: e.raw("DELETE", f"/v1/sandboxes/{sid}", key=k), ids))


def test_create_over_the_cap_leaves_the_pool_as_it_was() -> None:
    e = start_engine(["--pool", "base=2", "--max-running", "1"])
    try:
        k = e.make_key("pool-cap")
        wait_full(e)
        s = e.sandbox(k)
        wait_full(e)
        before, pooled = pool_stats(e), sandbox_ids_on_host(e)
        for _ in range(5):
            status, doc, raw = e.raw("POST", "/v1/sandboxes", {}, key=k)
            assert status == 429 and doc["error"]["code"] == "limit_exceeded", raw
        after = pool_stats(e)
        # The same pooled sandboxes, none torn down or started for the refused creates.
        assert sandbox_ids_on_host(e) == pooled and after["ready"] == 2 and after["starting"] == 0
        assert after["hits"] == before["hits"] and after["refill_ms_last"] == before["refill_ms_last"]
        s.kill()
        s2 = e.sandbox(k, envs={"A": "b"})
        assert s2.id in pooled and s2.commands.run("echo $A").stdout == "b\n"
        assert e.list(k)[0]["metadata"] == {} and not e.list(k)[0]["secure"]
    finally:
        e.teardown()


def leftovers(e: Engine, ids: List[str], live: int) -> Dict[str, List[str]]:
    """What is left on the host of the sandboxes ids (live: how many others run on it)."""
    mounts = mounts_under(e.state_dir) + mounts_under(e.run_dir)
    ports = os.listdir(f"/sys/class/net/{e.bridge}/brif") if os.path.isdir(
        f"/sys/class/net/{e.bridge}/brif") else []
    return {
        # runc's state at RUN/runc/<id> (never a recursive walk: RUN holds sysfs mounts).
        "containers": [sid for sid in ids if os.path.exists(os.path.join(e.run_dir, "runc", sid))],
        "mounts": [m for m in mounts if any(sid in m for sid in ids)],
        "cgroups": [d for d in cgroup_dirs(e.cgroup_parent) if os.path.basename(d) in ids],
        "dirs": [sid for sid in ids if os.path.exists(os.path.join(e.state_dir, "sandboxes", sid))
                 or os.path.exists(os.path.join(e.run_dir, "sandboxes", sid))
                 or os.path.exists(os.path.join(e.state_dir, "disk", sid))],
        "bridge ports": ports if len(ports) != live else [],
    }


def no_leftovers(found: Dict[str, List[str]]) -> bool:
    return not any(found.values())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["graceful", "kill9"])
def test_restart_with_a_full_pool_leaves_no_orphans(sig: int) -> None:
    e = start_engine(["--pool", "base=3"])
    try:
        k = e.make_key("pool-restart")
        kept = e.sandbox(k)  # a team's sandbox survives, as without a pool
        wait_full(e, 3)
        pooled = [sid for sid in sandbox_ids_on_host(e) if sid != kept.id]
        assert len(pooled) >= 3
        e.stop(sig)
        if sig == signal.SIGTERM:  # a stop removes them itself
            assert no_leftovers(found := leftovers(e, pooled, 1)), found
        e.start(["--pool", "off"])  # after kill -9, reconcile at the next start
        assert no_leftovers(found := leftovers(e, pooled, 1)), found
        assert [s["id"] for s in e.list(k)] == [kept.id]
        assert kept.commands.run("echo kept").stdout == "kept\n"
        assert len(os.listdir(f"/sys/class/net/{e.bridge}/brif")) == 1
    finally:
        e.teardown()


def test_cluster_pool_is_node_local_and_counted_nowhere(postgres: Any) -> None:
    """Two nodes on one PostgreSQL, placement spread: node A keeps a pool, B none and is
    cordoned, so a create sent to B is placed on A and relayed there, where A's pool serves
    it. Pooled sandboxes are in no node's running count and no team's list."""
    import random

    from test_forwarding import SECRET, secret_file
    from test_nodes import node_engine

    pools = random.sample(range(1, 255), 2)
    with secret_file(SECRET) as path:
        a = node_engine(postgres.url, "node-a", pools[0], placement="spread")
        b = node_engine(postgres.url, "node-b", pools[1], placement="spread")
        a.extra_args += ["--cluster-secret-file", path, "--pool", "base=2"]
        b.extra_args += ["--cluster-secret-file", path]
        try:
            a.start()
            b.start()
            wait_full(a)
            assert b.cli("node", "cordon", "node-b").returncode == 0

            def running(e: Engine) -> Dict[str, int]:  # NAME STATE LEASE RUNNING CAP CPUS MEM URL
                p = e.cli("node", "list")
                assert p.returncode == 0, p.stderr
                return {r.split()[0]: int(r.split()[-5]) for r in p.stdout.splitlines()[1:]}

            # Heartbeats (a third of the lease) refresh the counts: pooled ones are in none.
            time.sleep(2)
            assert running(b) == {"node-a": 0, "node-b": 0}
            key = a.make_key("pool-cluster")
            b.keys[key] = "pool-cluster"
            hits = pool_stats(a)["hits"]
            status, doc, raw = b.raw("POST", "/v1/sandboxes", body={"template": "base"}, key=key, timeout=120)
            assert status == 201, raw
            a.created.append((doc["id"], key))
            assert doc["node"] == "node-a" and pool_stats(a)["hits"] == hits + 1
            assert [s["id"] for s in b.list(key)] == [doc["id"]]
            wait_for(lambda: running(b)["node-a"] == 1, 30, "node-a's running count to be 1")
        finally:
            b.teardown()
            a.teardown()


def test_stop_while_the_pool_fills_leaves_nothing() -> None:
    """A stop during refill ends the warm-ups in flight (a loaded host stretches them to
    many seconds) and removes what they started."""
    e = start_engine(["--pool", "base=4"])
    try:
        wait_for(lambda: pool_stats(e)["starting"] > 0, 30, "a refill start")
        t0 = time.monotonic()
        assert e.stop(signal.SIGTERM) == 0, e.log_tail()
        assert time.monotonic() - t0 < 15, "the stop waited for the refill"
        assert sandbox_ids_on_host(e) == [], sandbox_ids_on_host(e)
        assert os.listdir(os.path.join(e.state_dir, "sandboxes")) == []
        assert not [d for d in cgroup_dirs(e.cgroup_parent) if "sbx_" in d]
    finally:
        e.teardown()
