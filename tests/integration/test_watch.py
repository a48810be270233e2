"""Directory watches through the SDK against the real engine: create, write, rename and
remove events, recursion into directories made later, and the errors."""

from __future__ import annotations

from typing import List, Optional, Tuple

import pytest
from conftest import wait_for

from ai2in import FilesystemEvent, InvalidArgumentError, NotFoundError, Sandbox
from ai2in.files import WatchHandle

HOME = "/home/sandbox"


def collect(w: WatchHandle, want: List[Tuple[str, str]], timeout: float = 10,
            got: Optional[List[FilesystemEvent]] = None) -> List[FilesystemEvent]:
    """Gathers events (into got, if given) until every (type, path) of want has been seen,
    in that order; returns all gathered."""
    got = [] if got is None else got

    def done() -> bool:
        got.extend(w.get_new_events())
        seen = [(e.type, e.path) for e in got]
        it = iter(seen)
        return all(x in it for x in want)  # want is a subsequence of seen
    wait_for(done, timeout, f"events {want}; got {[(e.type, e.path) for e in got]}")
    return got


def test_create_write_rename_remove(sbx: Sandbox) -> None:
    sbx.files.make_dir(f"{HOME}/wd")
    seen: List[FilesystemEvent] = []
    w = sbx.files.watch_dir(f"{HOME}/wd", on_event=seen.append)
    try:
        sbx.commands.run(f"cd {HOME}/wd && touch a && echo x >> a && mv a b && rm b")
        got = collect(w, [("create", f"{HOME}/wd/a"), ("write", f"{HOME}/wd/a"),
                          ("rename", f"{HOME}/wd/a"), ("remove", f"{HOME}/wd/b")])
        rename = [e for e in got if e.type == "rename"][0]
        assert rename.new_path == f"{HOME}/wd/b" and rename.name == "a"
        assert seen[:len(got)] == got  # the callback saw the same events, in order
    finally:
        w.stop()


def test_chmod_and_merged_writes(sbx: Sandbox) -> None:
    sbx.files.make_dir(f"{HOME}/wm")
    w = sbx.files.watch_dir(f"{HOME}/wm")
    try:
        sbx.commands.run(f"cd {HOME}/wm && for i in $(seq 100); do echo $i >> a; done; "
                         "chmod 600 a")
        got = collect(w, [("create", f"{HOME}/wm/a"), ("write", f"{HOME}/wm/a"),
                          ("chmod", f"{HOME}/wm/a")])
        writes = [e for e in got if e.type == "write"]
        assert 1 <= len(writes) < 100, f"100 appends in a row gave {len(writes)} write events"
    finally:
        w.stop()


def test_sdk_writes_are_seen_and_moves_across_the_tree(sbx: Sandbox) -> None:
    sbx.files.make_dir(f"{HOME}/wd")
    sbx.files.write("/tmp/outside.txt", "o")
    w = sbx.files.watch_dir(f"{HOME}/wd")
    try:
        sbx.files.write(f"{HOME}/wd/f.txt", "via the API")
        sbx.commands.run(f"mv /tmp/outside.txt {HOME}/wd/in.txt")
        sbx.commands.run(f"mv {HOME}/wd/in.txt /tmp/gone.txt")
        collect(w, [("create", f"{HOME}/wd/in.txt"), ("remove", f"{HOME}/wd/in.txt")])
        # The API's write (a temporary file renamed over the target) shows up under the
        # target's name.
        got: List[FilesystemEvent] = []

        def mentions_g() -> bool:
            got.extend(w.get_new_events())
            return any(f"{HOME}/wd/g.txt" in (e.path, e.new_path) for e in got)
        sbx.files.write(f"{HOME}/wd/g.txt", "second")
        wait_for(mentions_g, 10, "an event naming g.txt")
    finally:
        w.stop()


def test_recursive_watch_follows_new_directories(sbx: Sandbox) -> None:
    sbx.files.make_dir(f"{HOME}/rw/old")
    w = sbx.files.watch_dir(f"{HOME}/rw", recursive=True)
    flat = sbx.files.watch_dir(f"{HOME}/rw")
    try:
        sbx.commands.run(f"echo 1 > {HOME}/rw/old/one")
        sbx.commands.run(f"mkdir {HOME}/rw/new")
        got: List[FilesystemEvent] = []
        collect(w, [("create", f"{HOME}/rw/new")], got=got)
        sbx.commands.run(f"echo 2 > {HOME}/rw/new/two")
        collect(w, [("create", f"{HOME}/rw/old/one"), ("create", f"{HOME}/rw/new"),
                    ("create", f"{HOME}/rw/new/two")], got=got)
        flat_events = collect(flat, [("create", f"{HOME}/rw/new")]) + flat.get_new_events()
        paths = [e.path for e in flat_events]
        assert all(p.count("/") == f"{HOME}/rw/x".count("/") for p in paths), paths
    finally:
        w.stop()
        flat.stop()


def test_stop_ends_the_watch(sbx: Sandbox) -> None:
    w = sbx.files.watch_dir(HOME)
    w.stop()
    assert not w.running
    sbx.files.write(f"{HOME}/after-stop", "x")
    assert w.get_new_events() == []


def test_watch_errors(sbx: Sandbox) -> None:
    with pytest.raises(NotFoundError):
        sbx.files.watch_dir(f"{HOME}/no-such-dir")
    sbx.files.write(f"{HOME}/plain", "p")
    with pytest.raises(InvalidArgumentError):
        sbx.files.watch_dir(f"{HOME}/plain")
