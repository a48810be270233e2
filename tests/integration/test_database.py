"""An engine on PostgreSQL (--database): the same lifecycle as on SQLite, through the SDK,
against a throwaway server this module starts (initdb into a temporary directory as the
`postgres` user, a unix socket only, no TCP); it survives an engine restart, and a database
outage gives clear 503s without the engine exiting or the URL's password showing anywhere.

Skipped, saying why, only when the PostgreSQL server (initdb) is not installed.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
from typing import Iterator, List

import pytest
from conftest import Engine, wait_until

PASSWORD = "hunter2-not-shown"  # trust auth ignores it; the engine must never print it


def pg_bindir() -> str:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: [int(x) for x in d.split("/")[-2].split(".") if x.isdigit()])
    return dirs[-1] if dirs and os.access(os.path.join(dirs[-1], "initdb"), os.X_OK) else ""


class Postgres:
    """A PostgreSQL server in a temporary directory, reachable on a unix socket there only."""

    def __init__(self) -> None:
        self.bindir = pg_bindir()
        self.dir = tempfile.mkdtemp(prefix="ai2in-pg-")
        shutil.chown(self.dir, "postgres", "postgres")
        os.chmod(self.dir, 0o700)
        self.data = os.path.join(self.dir, "data")
        self.opts = (f"-c listen_addresses= -c unix_socket_directories={self.dir} -c fsync=off "
                     "-c synchronous_commit=off")
        self.pg("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                "--locale=C.UTF-8", "--no-sync")
        self.start()
        self.pg("createdb", "-h", self.dir, "-U", "postgres", "ai2in")
        self.url = f"postgresql://postgres:{PASSWORD}@localhost/ai2in?host={self.dir}"

    def pg(self, tool: str, *args: str) -> None:
        p = subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(self.bindir, tool)]
                           + list(args), capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, f"{tool} failed: {p.stdout}{p.stderr}"

    def start(self) -> None:
        self.pg("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "server.log"), "-w",
                "-o", self.opts, "start")

    def stop(self, mode: str = "fast") -> None:
        self.pg("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def close(self) -> None:
        try:
            self.stop("immediate")
        except AssertionError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    if not pg_bindir():
        pytest.skip("no PostgreSQL server installed (initdb): apt-get install postgresql")
    pg = Postgres()
    yield pg
    pg.close()


class PgEngine(Engine):
    """An engine whose store is the test's PostgreSQL; `keys create` goes there too."""

    def __init__(self, database: str) -> None:
        super().__init__()
        self.database = database

    def base_args(self) -> List[str]:
        return super().base_args() + ["--database", self.database]


@pytest.fixture
def pg_engine(postgres: Postgres) -> Iterator[PgEngine]:
    e = PgEngine(postgres.url)
    try:
        e.start()
        yield e
    finally:
        e.teardown()


def test_lifecycle_on_postgres(pg_engine: PgEngine) -> None:
    e = pg_engine
    k = e.make_key("pg-team")
    sbx = e.sandbox(k, metadata={"who": "pg"})
    assert sbx.commands.run("echo hi from postgres").stdout == "hi from postgres\n"
    listed = e.list(k)
    assert [s["id"] for s in listed] == [sbx.id] and listed[0]["metadata"] == {"who": "pg"}
    assert [s["id"] for s in e.list(k, metadata={"who": "pg"})] == [sbx.id]
    assert e.list(k, metadata={"who": "other"}) == []
    # The engine's store is PostgreSQL: no SQLite file was made.
    assert not os.path.exists(os.path.join(e.state_dir, "state.db"))

    sbx.commands.run("echo kept > /home/sandbox/f")
    sbx.pause()
    assert sbx.get_info()["state"] == "paused"
    sbx.resume()
    assert sbx.commands.run("cat /home/sandbox/f").stdout == "kept\n"

    # A restarted engine re-adopts what runs, from the rows in PostgreSQL.
    e.stop(signal.SIGKILL)
    e.start()
    again = e.connect(sbx.id, k)
    assert again.get_info()["state"] == "running"
    assert again.commands.run("cat /home/sandbox/f").stdout == "kept\n"
    assert again.kill() is True
    assert e.list(k) == []
    assert PASSWORD not in open(e.log_path, encoding="utf-8", errors="replace").read()


def test_database_outage_gives_503(pg_engine: PgEngine, postgres: Postgres) -> None:
    e = pg_engine
    k = e.make_key("pg-outage")
    sbx = e.sandbox(k)
    postgres.stop()
    try:
        status, doc, raw = e.raw("GET", "/v1/sandboxes", key=k)
        assert status == 503, raw
        assert "the database is unreachable" in doc["error"]["message"], doc
        assert PASSWORD not in raw.decode()
        status, _, raw = e.raw("POST", "/v1/sandboxes", body={"template": "base"}, key=k)
        assert status == 503, raw
        assert e.running, f"ai2ind exited while the database was down:\n{e.log_tail()}"
    finally:
        postgres.start()
    # Back: the same engine serves again, and nothing was lost.
    assert wait_until(lambda: e.raw("GET", "/v1/sandboxes", key=k)[0] == 200, 10)
    assert [s["id"] for s in e.list(k)] == [sbx.id]
    assert sbx.commands.run("echo back").stdout == "back\n"
    assert sbx.kill() is True
    assert PASSWORD not in open(e.log_path, encoding="utf-8", errors="replace").read()


def test_keys_cli_on_postgres(pg_engine: PgEngine) -> None:
    """`ai2ind keys` works on the database too, and a key made there authenticates at once."""
    e = pg_engine
    k = e.make_key("pg-cli")
    p = e.cli("keys", "list")
    assert p.returncode == 0 and "pg-cli" in p.stdout, p.stderr
    key_id = k[len("ai2in_live_"):][:8]
    assert e.raw("GET", "/v1/sandboxes", key=k)[0] == 200
    assert e.cli("keys", "revoke", key_id).returncode == 0
    assert e.raw("GET", "/v1/sandboxes", key=k)[0] == 401
