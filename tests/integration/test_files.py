"""Files through the SDK against the real engine: reading and writing (text, bytes, streams,
1 GiB without the engine's memory growing), listing, info, mkdir, rename, remove, and that
no path (`..`, symlinks) ever reaches the host."""

from __future__ import annotations

import hashlib
import io
import os
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest
from conftest import Engine, RssSampler, sanitizer_build, wait_for

from ai2in import (ConflictError, EntryInfo, InvalidArgumentError, NotFoundError, RateLimitError,
                   Sandbox, SandboxError, WriteEntry)

HOME = "/home/sandbox"


def test_write_and_read_text_and_bytes(sbx: Sandbox) -> None:
    info = sbx.files.write(f"{HOME}/a.txt", "hello")
    assert isinstance(info, EntryInfo)
    assert (info.path, info.name, info.type, info.size) == (f"{HOME}/a.txt", "a.txt", "file", 5)
    assert sbx.files.read(f"{HOME}/a.txt") == "hello"
    assert sbx.commands.run(f"cat {HOME}/a.txt").stdout == "hello"
    every_byte = bytes(range(256)) * 3
    sbx.files.write(f"{HOME}/b.bin", every_byte)
    assert sbx.files.read(f"{HOME}/b.bin", format="bytes") == every_byte
    assert sbx.commands.run(f"sha256sum {HOME}/b.bin").stdout.split()[0] == \
        hashlib.sha256(every_byte).hexdigest()
    sbx.files.write(f"{HOME}/u.txt", "héllo ✓ 𝄞\n")
    assert sbx.files.read(f"{HOME}/u.txt") == "héllo ✓ 𝄞\n"
    sbx.files.write(f"{HOME}/empty", b"")
    assert sbx.files.read(f"{HOME}/empty", format="bytes") == b""
    sbx.files.write(f"{HOME}/a.txt", "replaced")  # over an existing file
    assert sbx.files.read(f"{HOME}/a.txt") == "replaced"


def test_write_creates_parents_and_sets_owner(sbx: Sandbox) -> None:
    info = sbx.files.write(f"{HOME}/deep/er/f.txt", "x", user="sandbox")
    assert info.owner == "sandbox"
    assert sbx.commands.run(f"stat -c %U {HOME}/deep/er/f.txt").stdout == "sandbox\n"
    assert sbx.files.get_info(f"{HOME}/deep").type == "dir"
    assert sbx.files.write("/tmp/r.txt", "x").owner == "root"


def test_write_from_file_object_and_generator(sbx: Sandbox, tmp_path: Path) -> None:
    blob = os.urandom(3 * 1024 * 1024 + 17)
    p = tmp_path / "blob"
    p.write_bytes(blob)
    with open(p, "rb") as f:
        assert sbx.files.write(f"{HOME}/from-file", f).size == len(blob)
    sbx.files.write(f"{HOME}/from-gen", (blob[i:i + 100_000]
                                         for i in range(0, len(blob), 100_000)))
    sbx.files.write(f"{HOME}/from-bytesio", io.BytesIO(blob))
    want = hashlib.sha256(blob).hexdigest()
    r = sbx.commands.run(f"cd {HOME} && sha256sum from-file from-gen from-bytesio")
    assert [line.split()[0] for line in r.stdout.splitlines()] == [want] * 3
    got = hashlib.sha256()
    n = 0
    with sbx.files.read(f"{HOME}/from-gen", format="stream") as chunks:
        for chunk in chunks:
            assert isinstance(chunk, bytes)
            got.update(chunk)
            n += 1
    assert got.hexdigest() == want and n > 1


def test_failed_upload_keeps_the_old_content(sbx: Sandbox) -> None:
    sbx.files.write(f"{HOME}/keep/keep.txt", "old content")

    def broken() -> Iterator[bytes]:
        yield b"new content, half of it" * 1000
        raise RuntimeError("the source failed")

    with pytest.raises(RuntimeError, match="the source failed"):
        sbx.files.write(f"{HOME}/keep/keep.txt", broken())
    assert sbx.files.read(f"{HOME}/keep/keep.txt") == "old content"

    def left() -> bool:
        return sbx.commands.run(f"ls -A {HOME}/keep").stdout.split() == ["keep.txt"]
    wait_for(left, 5, "the partial upload's temporary file to be removed")


def test_write_files_list_exists_info(sbx: Sandbox) -> None:
    infos = sbx.files.write_files([
        WriteEntry(f"{HOME}/w/one.txt", "1"),
        {"path": f"{HOME}/w/sub/two.txt", "data": b"22"},
        (f"{HOME}/w/sub/deeper/three.txt", "333"),
    ])
    assert [i.size for i in infos] == [1, 2, 3]
    one = sbx.files.list(f"{HOME}/w")
    assert [(e.name, e.type) for e in one] == [("one.txt", "file"), ("sub", "dir")]
    two = sbx.files.list(f"{HOME}/w", depth=2)
    assert [e.path for e in two] == [f"{HOME}/w/one.txt", f"{HOME}/w/sub",
                                     f"{HOME}/w/sub/deeper", f"{HOME}/w/sub/two.txt"]
    assert sbx.files.exists(f"{HOME}/w/sub/two.txt") is True
    assert sbx.files.exists(f"{HOME}/w/nope") is False
    sbx.commands.run(f"chmod 640 {HOME}/w/one.txt; ln -s one.txt {HOME}/w/link")
    info = sbx.files.get_info(f"{HOME}/w/one.txt")
    assert (info.type, info.size, info.mode, info.permissions) == ("file", 1, 0o640,
                                                                   "-rw-r-----")
    assert (info.owner, info.group) == ("root", "root") and info.symlink_target is None
    assert info.modified_time and info.modified_time.startswith("20")
    link = sbx.files.get_info(f"{HOME}/w/link")
    assert link.type == "symlink" and link.symlink_target == "one.txt"
    assert sbx.files.get_info(f"{HOME}/w").type == "dir"


def test_make_dir_rename_remove(sbx: Sandbox) -> None:
    assert sbx.files.make_dir(f"{HOME}/m/a/b") is True
    assert sbx.files.make_dir(f"{HOME}/m/a/b") is False
    sbx.files.write(f"{HOME}/m/file", "f")
    with pytest.raises(ConflictError):
        sbx.files.make_dir(f"{HOME}/m/file")
    moved = sbx.files.rename(f"{HOME}/m/file", f"{HOME}/m/a/moved")
    assert moved.path == f"{HOME}/m/a/moved" and moved.size == 1
    assert not sbx.files.exists(f"{HOME}/m/file")
    sbx.files.write(f"{HOME}/m/other", "o")
    sbx.files.rename(f"{HOME}/m/other", f"{HOME}/m/a/moved")  # replaces the file there
    assert sbx.files.read(f"{HOME}/m/a/moved") == "o"
    with pytest.raises(NotFoundError):
        sbx.files.rename(f"{HOME}/m/nothing", f"{HOME}/m/x")
    sbx.files.remove(f"{HOME}/m/a/moved")
    assert not sbx.files.exists(f"{HOME}/m/a/moved")
    sbx.files.write(f"{HOME}/m/a/b/c/d.txt", "deep")
    sbx.files.remove(f"{HOME}/m")  # a whole tree
    assert not sbx.files.exists(f"{HOME}/m")
    with pytest.raises(NotFoundError):
        sbx.files.remove(f"{HOME}/m")
    with pytest.raises(InvalidArgumentError):
        sbx.files.remove("/")
    assert sbx.commands.run("ls /etc/hostname").exit_code == 0


def test_relative_paths_resolve_against_home(sbx: Sandbox) -> None:
    info = sbx.files.write("rel/r.txt", "relative")
    assert info.path == f"{HOME}/rel/r.txt"
    assert sbx.commands.run(f"cat {HOME}/rel/r.txt").stdout == "relative"
    assert sbx.files.read("rel/r.txt") == "relative"
    assert [e.name for e in sbx.files.list("rel")] == ["r.txt"]
    assert sbx.files.make_dir("reldir") is True and sbx.files.exists(f"{HOME}/reldir")


def test_paths_never_leave_the_sandbox(sbx: Sandbox) -> None:
    own = sbx.commands.run("cat /etc/hostname").stdout
    with open("/etc/hostname") as f:
        host = f.read()
    assert own != host, "test needs the sandbox's hostname to differ from the host's"
    assert sbx.files.read("/../../etc/hostname") == own
    assert sbx.files.read("../../../../etc/hostname") == own
    # A symlink to / inside the sandbox is the sandbox's /, never the host's.
    sbx.commands.run(f"ln -s / {HOME}/root; ln -s /etc/hostname {HOME}/hn")
    assert sbx.files.read(f"{HOME}/root/etc/hostname") == own
    assert sbx.files.read(f"{HOME}/hn") == own
    marker = f"ai2in-escape-{uuid.uuid4().hex}"
    sbx.files.write(f"{HOME}/root/tmp/{marker}", "inside")
    sbx.files.write(f"/../../../tmp/{marker}-dots", "inside")
    assert not os.path.exists(f"/tmp/{marker}") and not os.path.exists(f"/tmp/{marker}-dots")
    assert sbx.commands.run(f"cat /tmp/{marker} /tmp/{marker}-dots").stdout == "insideinside"
    assert sbx.files.get_info(f"{HOME}/root").type == "symlink"


def test_nul_in_a_path_is_rejected(sbx: Sandbox) -> None:
    sbx.files.write(f"{HOME}/a", "must stay")
    with pytest.raises(InvalidArgumentError) as ei:
        sbx.files.read(f"{HOME}/a\0b")
    assert "nul" in str(ei.value).lower()
    with pytest.raises(InvalidArgumentError):
        sbx.files.write(f"{HOME}/a\0b", "x")  # never a write to /home/sandbox/a
    with pytest.raises(InvalidArgumentError):
        sbx.files.make_dir(f"{HOME}/d\0e")
    with pytest.raises(InvalidArgumentError):
        sbx.files.get_info(f"{HOME}\0/a")
    with pytest.raises(InvalidArgumentError):
        sbx.files.remove(f"{HOME}/a\0b")  # never a removal of /home/sandbox/a
    assert sbx.files.read(f"{HOME}/a") == "must stay"


def test_list_an_empty_directory(sbx: Sandbox) -> None:
    """An empty directory lists as [] (the agent once sorted a NULL array for it, which the
    sanitizer build's agent trapped on: the sandbox died)."""
    sbx.commands.run(f"mkdir -p {HOME}/empty")
    assert sbx.files.list(f"{HOME}/empty") == []
    assert sbx.files.list(f"{HOME}/empty", depth=3) == []
    assert sbx.commands.run("echo alive").stdout == "alive\n"


def test_bad_paths_get_clear_errors(sbx: Sandbox) -> None:
    with pytest.raises(InvalidArgumentError) as ei:
        sbx.files.read(HOME)
    assert "director" in str(ei.value).lower()
    with pytest.raises(NotFoundError) as ne:
        sbx.files.read(f"{HOME}/missing.txt")
    assert ne.value.status == 404 and "missing.txt" in str(ne.value)
    with pytest.raises(NotFoundError):
        sbx.files.get_info(f"{HOME}/missing.txt")
    with pytest.raises(NotFoundError):
        sbx.files.list(f"{HOME}/missing")
    with pytest.raises(InvalidArgumentError):
        sbx.files.read("")
    with pytest.raises(InvalidArgumentError):
        sbx.files.read("/" + "a" * 5000)
    sbx.files.write(f"{HOME}/plain", "p")
    with pytest.raises(InvalidArgumentError):
        sbx.files.list(f"{HOME}/plain")
    with pytest.raises(InvalidArgumentError) as ei:
        sbx.files.list(HOME, depth=17)
    assert "depth" in str(ei.value)
    with pytest.raises(InvalidArgumentError):
        sbx.files.write(HOME, "a directory is there")
    with pytest.raises(InvalidArgumentError):
        sbx.files.write(f"{HOME}/plain/child", "a parent is a file")
    with pytest.raises(InvalidArgumentError) as ei:
        sbx.files.write(f"{HOME}/x", "x", user="nobody-such")
    assert "user" in str(ei.value)


def files_raw(engine: Engine, key: str, sbx: Sandbox, method: str, route: str,
              query: Dict[str, str]) -> Tuple[int, Any, bytes]:
    """A request to …/files{route} with a query the SDK does not send (user on reads)."""
    target = f"/v1/sandboxes/{sbx.id}/files{route}?{urllib.parse.urlencode(query)}"
    return engine.raw(method, target, key=key)


def test_user_writes_get_the_users_permissions(sbx: Sandbox) -> None:
    info = sbx.files.write(f"{HOME}/mine/f.txt", "mine", user="sandbox")
    assert (info.owner, info.group) == ("sandbox", "sandbox")
    assert sbx.commands.run(f"stat -c %U:%G {HOME}/mine {HOME}/mine/f.txt").stdout == \
        "sandbox:sandbox\nsandbox:sandbox\n"
    assert sbx.files.make_dir(f"{HOME}/mine/d", user="sandbox") is True
    moved = sbx.files.rename(f"{HOME}/mine/f.txt", f"{HOME}/mine/d/g.txt", user="sandbox")
    assert moved.owner == "sandbox"
    # Where the user may not write, neither may a call made as the user.
    with pytest.raises(SandboxError) as ei:
        sbx.files.write("/etc/foo", "x", user="sandbox")
    assert (ei.value.status, ei.value.code) == (403, "permission_denied")
    assert "/etc/foo" in ei.value.message and "as user sandbox" in ei.value.message
    with pytest.raises(SandboxError) as ei:
        sbx.files.make_dir("/etc/newdir", user="sandbox")
    assert ei.value.status == 403
    with pytest.raises(SandboxError) as ei:
        sbx.files.rename(f"{HOME}/mine/d/g.txt", "/etc/g.txt", user="sandbox")
    assert ei.value.status == 403
    r = sbx.commands.run("ls /etc/foo /etc/newdir /etc/g.txt")
    assert r.exit_code != 0 and r.stdout == "", r
    # Root (the default) still writes anywhere.
    assert sbx.files.write("/etc/foo", "x").owner == "root"


def test_a_planted_symlink_gets_a_user_no_further(sbx: Sandbox) -> None:
    """Code running as sandbox plants links in its home; a call made as sandbox must not
    follow them into what only root may change."""
    assert sbx.commands.run("echo original > /etc/x && chmod 644 /etc/x").exit_code == 0
    r = sbx.commands.run(f"ln -s /etc/x {HOME}/report.txt && ln -s /etc {HOME}/etcdir",
                         user="sandbox")
    assert r.exit_code == 0, r
    with pytest.raises(SandboxError) as ei:
        sbx.files.write(f"{HOME}/report.txt", "owned", user="sandbox")
    assert ei.value.status == 403, ei.value
    with pytest.raises(SandboxError) as ei:
        sbx.files.write(f"{HOME}/etcdir/x", "owned", user="sandbox")
    assert ei.value.status == 403, ei.value
    with pytest.raises(SandboxError) as ei:
        sbx.files.make_dir(f"{HOME}/etcdir/sub", user="sandbox")
    assert ei.value.status == 403, ei.value
    sbx.files.write(f"{HOME}/other", "other", user="sandbox")
    with pytest.raises(SandboxError) as ei:
        sbx.files.rename(f"{HOME}/other", f"{HOME}/etcdir/x", user="sandbox")
    assert ei.value.status == 403, ei.value
    r = sbx.commands.run("cat /etc/x; stat -c %U:%a /etc/x; ls /etc/sub")
    assert r.stdout == "original\nroot:644\n", r
    assert sbx.commands.run("ls -A /etc | grep -c ai2in-upload").stdout == "0\n"
    # The link itself is the user's to replace: written as the user, through the link.
    sbx.commands.run(f"rm {HOME}/report.txt && ln -s {HOME}/real.txt {HOME}/report.txt",
                     user="sandbox")
    sbx.files.write(f"{HOME}/report.txt", "through", user="sandbox")
    r = sbx.commands.run(f"cat {HOME}/real.txt; stat -c %U {HOME}/real.txt")
    assert r.stdout == "throughsandbox\n", r


def test_reads_lists_removes_and_watches_honour_user(engine: Engine, module_key: str,
                                                     sbx: Sandbox) -> None:
    r = sbx.commands.run("mkdir -p /srv && mkdir -m 700 /srv/private && "
                         "echo secret > /srv/private/s && chmod 644 /srv/private/s && "
                         "echo root-only > /srv/root-only && chmod 600 /srv/root-only")
    assert r.exit_code == 0, r

    def call(method: str, route: str, **query: str) -> Tuple[int, Any, bytes]:
        return files_raw(engine, module_key, sbx, method, route, query)

    for method, route, path in [
        ("GET", "", "/srv/root-only"),
        ("GET", "", "/srv/private/s"),
        ("GET", "/info", "/srv/private/s"),
        ("GET", "/list", "/srv/private"),
        ("GET", "/watch", "/srv/private"),
        ("DELETE", "", "/srv/root-only"),
        ("DELETE", "", "/srv/private/s"),
    ]:
        status, doc, raw = call(method, route, path=path, user="sandbox")
        assert status == 403, (method, route, path, status, raw)
        assert doc["error"]["code"] == "permission_denied", doc
        assert "as user sandbox" in doc["error"]["message"], doc
        # As root (the default, or named) the same works.
        if method == "GET" and route != "/watch":
            assert call(method, route, path=path, user="root")[0] == 200
    status, doc, raw = call("GET", "", path="/etc/hostname", user="sandbox")
    assert status == 200 and raw == sbx.commands.run("cat /etc/hostname").stdout.encode()
    status, doc, _ = call("GET", "/list", path="/srv", user="sandbox")
    assert status == 200 and sorted(e["name"] for e in doc["entries"]) == ["private", "root-only"]
    status, doc, _ = call("GET", "/info", path="/srv/x", user="nobody-such")
    assert status == 400 and "nobody-such" in doc["error"]["message"]
    r = sbx.commands.run("cat /srv/root-only /srv/private/s")
    assert r.stdout == "root-only\nsecret\n", r
    sbx.files.write(f"{HOME}/gone.txt", "x", user="sandbox")
    assert call("DELETE", "", path=f"{HOME}/gone.txt", user="sandbox")[0] == 200
    assert not sbx.files.exists(f"{HOME}/gone.txt")


def test_account_files_that_are_fifos_do_not_hang_the_agent(sbx: Sandbox) -> None:
    r = sbx.commands.run("mv /etc/passwd /etc/passwd.real && mkfifo /etc/passwd")
    assert r.exit_code == 0, r
    t0 = time.monotonic()
    with pytest.raises(SandboxError) as ei:
        sbx.files.write(f"{HOME}/f", "x", user="sandbox")
    assert ei.value.status == 500 and "not a regular file" in ei.value.message, ei.value
    with pytest.raises(SandboxError) as ei:
        sbx.commands.run("true", user="sandbox")
    assert "not a regular file" in ei.value.message, ei.value
    # Root needs no account files: the sandbox can be repaired.
    assert sbx.files.write(f"{HOME}/f", "x").owner == "0"  # no names to show
    sbx.files.rename("/etc/passwd.real", "/etc/passwd")
    assert time.monotonic() - t0 < 20
    assert sbx.files.write(f"{HOME}/f", "x", user="sandbox").owner == "sandbox"


def test_watch_streams_are_capped(sbx: Sandbox) -> None:
    watches = []
    try:
        for _ in range(16):
            watches.append(sbx.files.watch_dir(HOME))
        with pytest.raises(RateLimitError) as ei:
            sbx.files.watch_dir(HOME)
        assert "16 watch streams" in ei.value.message
        sbx.files.write(f"{HOME}/seen", "x")
        wait_for(lambda: watches[0].get_new_events(), 10, "an event on the first watch")
        watches.pop().stop()

        def another() -> bool:  # the slot is free once the agent sees the stream close
            try:
                watches.append(sbx.files.watch_dir(HOME))
                return True
            except RateLimitError:
                return False
        wait_for(another, 10, "a watch after one was stopped")
    finally:
        for w in watches:
            w.stop()


def test_large_upload_to_a_bad_target_gets_the_agents_error(sbx: Sandbox) -> None:
    # The agent answers before reading the body; the engine must pass that answer on
    # rather than report the body it could not finish sending.
    block = b"z" * (1024 * 1024)
    with pytest.raises(InvalidArgumentError, match="director"):
        sbx.files.write(HOME, (block for _ in range(256)))  # chunked
    with pytest.raises(InvalidArgumentError, match="director"):
        sbx.files.write(HOME, block * 128)  # with Content-Length
    sbx.files.write(f"{HOME}/plain", "p")
    with pytest.raises(InvalidArgumentError, match="not a directory"):
        sbx.files.write(f"{HOME}/plain/child", (block for _ in range(256)))
    assert sbx.get_info()["state"] == "running"


def test_files_need_a_running_sandbox(engine: Engine, module_key: str) -> None:
    s = engine.sandbox(module_key)
    s.kill()
    with pytest.raises(NotFoundError):
        s.files.read("/etc/hostname")


GIB = 1024 * 1024 * 1024


@pytest.mark.slow
@pytest.mark.skipif(sanitizer_build(), reason="1 GiB each way runs once, in the normal "
                    "build's pass (and ASan's quarantine would blur the memory figure)")
def test_one_gib_streams_both_ways_in_flat_memory(engine: Engine, sbx: Sandbox) -> None:
    block = os.urandom(1024 * 1024)

    def source() -> Iterator[bytes]:
        for i in range(GIB // len(block)):
            yield i.to_bytes(8, "little") + block[8:]

    want = hashlib.sha256()
    for chunk in source():
        want.update(chunk)
    with RssSampler(engine.pid()) as up:
        info = sbx.files.write(f"{HOME}/big.bin", source())
    assert info.size == GIB
    r = sbx.commands.run(f"sha256sum {HOME}/big.bin", timeout=120)
    assert r.stdout.split()[0] == want.hexdigest()
    got = hashlib.sha256()
    n = 0
    with RssSampler(engine.pid()) as down:
        for chunk in sbx.files.read(f"{HOME}/big.bin", format="stream"):
            got.update(chunk)
            n += len(chunk)
    assert n == GIB and got.hexdigest() == want.hexdigest()
    assert up.growth_mb < 64 and down.growth_mb < 64, \
        f"engine RSS grew by {up.growth_mb:.0f} MiB (upload), {down.growth_mb:.0f} MiB " \
        "(download)"
    sbx.files.remove(f"{HOME}/big.bin")


def test_sdk_reads_and_lists_as_a_user(engine: Engine, key: str) -> None:
    sbx = engine.sandbox(key)
    sbx.files.write("/root/secret.txt", "root only")
    sbx.commands.run("chmod 700 /root")
    with pytest.raises(SandboxError) as err:
        sbx.files.read("/root/secret.txt", user="sandbox")
    assert err.value.status == 403 and "sandbox" in str(err.value), str(err.value)
    assert sbx.files.read("/root/secret.txt") == "root only"
    sbx.files.write("/home/sandbox/mine.txt", "hi", user="sandbox")
    names = [e.name for e in sbx.files.list("/home/sandbox", user="sandbox")]
    assert "mine.txt" in names
    assert sbx.files.exists("/home/sandbox/mine.txt", user="sandbox")
    sbx.files.remove("/home/sandbox/mine.txt", user="sandbox")
    assert not sbx.files.exists("/home/sandbox/mine.txt")
