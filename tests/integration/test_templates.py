"""Template versions (issue 13): a new version of a template (`ai2ind template import`, which
`template build --force` shares) never pulls the root file system from under a sandbox. Running
and paused sandboxes keep the version they were created on, across resumes and engine
restarts; new ones get the new version; an old version is removed once no sandbox that is not
killed records it (at the next import or engine start), and not before; bad imports fail fast,
say why, and change nothing; `template list` shows the versions and their sandboxes.

Each test has a template directory of its own under /var/tmp (the file system of
/var/lib/ai2in/templates): versions are hard-linked copies of the real `base` (`cp -al`: no
space, seconds) with a marker file at / that says which one a sandbox sees. Nothing under
/var/lib/ai2in/templates is changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
from conftest import Engine, mounts_under, start_engine, template_dir

from ai2in import ConflictError, Sandbox

UID_BASE = 1000000
MARKER = "/ai2in-template-marker"


class Templates:
    """A private template directory (`dir`) and a staging directory (`stage`) beside it,
    on the file system of the real template directory, whose `base` they hard-link."""

    def __init__(self) -> None:
        self.real = os.path.join(template_dir(), "base")
        if not os.path.isdir(os.path.join(self.real, "rootfs")):
            pytest.fail(f"template {self.real} is missing", pytrace=False)
        self.root = tempfile.mkdtemp(prefix="ai2in-tpl-", dir="/var/tmp")
        # Passable by the sandboxes' root (the engine's own dirs are 0711 for the same reason).
        os.chmod(self.root, 0o755)
        if os.stat(self.root).st_dev != os.stat(self.real).st_dev:
            shutil.rmtree(self.root)
            pytest.skip("/var/tmp is not on the file system of the template directory: "
                        "versions cannot be hard-linked copies")
        self.dir = os.path.join(self.root, "templates")
        self.stage = os.path.join(self.root, "stage")
        os.mkdir(self.dir, 0o755)
        os.mkdir(self.stage, 0o755)
        self.tmpfs: List[str] = []

    def copy(self, dest: str, marker: str) -> str:
        """A hard-linked copy of the real base's rootfs at dest, with MARKER saying marker
        (a new file: the real template's files are shared, never written)."""
        subprocess.run(["cp", "-al", os.path.join(self.real, "rootfs"), dest], check=True)
        path = dest + MARKER
        with open(path, "w") as f:
            f.write(marker + "\n")
        os.chown(path, UID_BASE, UID_BASE)
        os.chmod(path, 0o644)
        return dest

    def staged(self, marker: str) -> str:
        """A new version, ready for `template import`."""
        return self.copy(os.path.join(self.stage, marker), marker)

    def legacy(self, marker: str) -> None:
        """`base` as a template made before versions: a real directory."""
        base = os.path.join(self.dir, "base")
        os.mkdir(base, 0o755)
        self.copy(os.path.join(base, "rootfs"), marker)
        shutil.copy(os.path.join(self.real, "template.json"), base)

    def current(self) -> str:
        link = os.path.join(self.dir, "base")
        return os.path.basename(os.readlink(link)) if os.path.islink(link) else ""

    def versions(self) -> List[str]:
        """Versions kept aside (not counting the current one unless it lives there)."""
        d = os.path.join(self.dir, ".versions", "base")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def snapshot(self) -> List[Tuple[str, str]]:
        """What an import may change: the entries of the template directory, two levels
        deep, with link targets, and the staging directory."""
        out = []
        for top in (self.dir, os.path.join(self.dir, ".versions"),
                    os.path.join(self.dir, ".versions", "base"), self.stage):
            if os.path.isdir(top):
                for name in sorted(os.listdir(top)):
                    p = os.path.join(top, name)
                    out.append((p, os.readlink(p) if os.path.islink(p) else ""))
        return out

    def mount_tmpfs(self, path: str) -> None:
        os.mkdir(path)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", path], check=True)
        self.tmpfs.append(path)

    def cleanup(self) -> None:
        for path in self.tmpfs:
            subprocess.run(["umount", path], check=False)
        if mounts_under(self.root):
            raise AssertionError(f"{self.root} kept: still mounted: {mounts_under(self.root)}")
        shutil.rmtree(self.root)


@pytest.fixture
def tpl() -> Iterator[Templates]:
    t = Templates()
    yield t
    t.cleanup()


def import_version(e: Engine, tpl: Templates, marker: str) -> str:
    """Imports a new version of base marked marker; returns its version id."""
    before = tpl.current()
    p = e.cli("template", "import", "base", tpl.staged(marker))
    assert p.returncode == 0, f"import failed: {p.stderr}"
    v = tpl.current()
    assert v and v != before and v in p.stdout, p.stdout
    assert not os.path.exists(os.path.join(tpl.stage, marker)), "the imported directory was not moved"
    return v


@pytest.fixture
def eng(tpl: Templates) -> Iterator[Engine]:
    """An engine on tpl's directory, started on version v1 of base."""
    e = Engine(templates=tpl.dir)
    try:
        import_version(e, tpl, "v1")
        e.start()
        yield e
    finally:
        e.teardown()


def marker(sbx: Sandbox) -> str:
    r = sbx.commands.run(f"cat {MARKER}")
    assert r.exit_code == 0, r.stderr
    return r.stdout.strip()


def works(sbx: Sandbox, want_marker: str, note: str) -> None:
    """Files, commands and code, using the template's own files (python3, numpy, coreutils)."""
    assert marker(sbx) == want_marker, note
    assert sbx.files.read(f"/home/sandbox/{note}.txt") == note
    sbx.files.write(f"/home/sandbox/{note}-2.txt", "again")
    assert sbx.commands.run(f"cat /home/sandbox/{note}-2.txt").stdout == "again"
    r = sbx.commands.run("ls /usr/bin | wc -l && python3 -c 'import pandas; print(pandas.__name__)'")
    assert r.exit_code == 0 and int(r.stdout.split()[0]) > 100 and "pandas" in r.stdout, r
    ex = sbx.run_code("import numpy as np\nint(np.arange(5).sum())")
    assert ex.error is None and ex.text == "10", ex


def new_sandbox(e: Engine, key: str, note: str) -> Sandbox:
    s = e.sandbox(key)
    s.files.write(f"/home/sandbox/{note}.txt", note)
    return s


def template_list(e: Engine) -> Dict[str, Tuple[int, bool]]:
    """`template list` for base: version -> (sandboxes, current)."""
    p = e.cli("template", "list")
    assert p.returncode == 0, p.stderr
    out = {}
    for line in p.stdout.splitlines()[1:]:
        f = line.split()
        if f and f[0] == "base":
            out[f[1]] = (int(f[5] if f[3] != "-" else f[4]), line.endswith("current"))
    return out


# -- the tests -------------------------------------------------------------------------------


def test_live_sandboxes_keep_their_version(tpl: Templates, eng: Engine) -> None:
    """(1) A running and a paused sandbox on v1 keep working after v2 is imported (while the
    engine runs); the paused one resumes on v1; a new sandbox gets v2."""
    key = eng.make_key("tpl")
    v1 = tpl.current()
    running, paused = new_sandbox(eng, key, "running"), new_sandbox(eng, key, "paused")
    assert running.get_info()["template_version"] == v1
    paused.pause()

    v2 = import_version(eng, tpl, "v2")
    assert v1 in tpl.versions(), "v1 was removed while sandboxes use it"

    works(running, "v1", "running")
    paused.resume()
    works(paused, "v1", "paused")
    assert paused.get_info()["template_version"] == v1
    fresh = new_sandbox(eng, key, "fresh")
    assert fresh.get_info()["template_version"] == v2
    works(fresh, "v2", "fresh")
    # A pause and resume more: still v1 (the version is the sandbox's, not the template's).
    running.pause()
    running.resume()
    works(running, "v1", "running")


def test_old_version_removed_only_when_unused(tpl: Templates, eng: Engine) -> None:
    """(2) v1 stays while any sandbox not killed records it, and goes at the next import or
    engine start after the last is killed; a version nobody ever used goes at once."""
    key = eng.make_key("tpl")
    v1 = tpl.current()
    running, paused = new_sandbox(eng, key, "running"), new_sandbox(eng, key, "paused")
    paused.pause()
    v2 = import_version(eng, tpl, "v2")
    assert tpl.versions() == sorted([v1, v2])

    running.kill()
    v3 = import_version(eng, tpl, "v3")
    # v2 was never used and is no longer current: gone. v1 is kept for the paused one.
    assert tpl.versions() == sorted([v1, v3]), "an unused version was kept, or a used one removed"
    paused.resume()
    works(paused, "v1", "paused")

    paused.kill()
    assert v1 in tpl.versions(), "kill itself removes nothing (GC happens at import or start)"
    eng.restart()
    assert tpl.versions() == [v3], "v1 outlived its last sandbox across an engine start"
    assert "removing version " + v1 in eng.log_tail(200)
    works(new_sandbox(eng, key, "after"), "v3", "after")


def test_restart_in_between(tpl: Templates, eng: Engine) -> None:
    """(3) v2 imported while the engine is stopped: at the next start the running sandbox is
    re-adopted on v1, the paused one resumes on v1, v1 is kept; new sandboxes get v2."""
    key = eng.make_key("tpl")
    v1 = tpl.current()
    running, paused = new_sandbox(eng, key, "running"), new_sandbox(eng, key, "paused")
    paused.pause()
    eng.stop()
    v2 = import_version(eng, tpl, "v2")
    eng.start()
    assert v1 in tpl.versions(), "the engine's start removed a version that sandboxes use"
    works(running, "v1", "running")
    paused.resume()
    works(paused, "v1", "paused")
    fresh = new_sandbox(eng, key, "fresh")
    assert fresh.get_info()["template_version"] == v2
    works(fresh, "v2", "fresh")
    eng.restart()  # and once more with all three live
    assert v1 in tpl.versions()
    works(running, "v1", "running")
    works(paused, "v1", "paused")
    running.kill()
    paused.kill()
    eng.restart()
    assert tpl.versions() == [v2]
    works(fresh, "v2", "fresh")


def test_bad_imports_fail_fast_and_change_nothing(tpl: Templates, eng: Engine) -> None:
    """(4) Each bad import is refused at once with a message that says what is wrong, and
    leaves the template directory and the source as they were."""
    v1 = tpl.current()
    good = tpl.staged("good")  # a fine version, for the bad names
    not_dir = os.path.join(tpl.stage, "a-file")
    open(not_dir, "w").close()
    root_owned = os.path.join(tpl.stage, "root-owned")
    os.mkdir(root_owned)
    tpl.mount_tmpfs(os.path.join(tpl.stage, "tmpfs"))
    elsewhere = os.path.join(tpl.stage, "tmpfs", "rootfs")
    os.mkdir(elsewhere)
    os.chown(elsewhere, UID_BASE, UID_BASE)
    inside = os.path.join(tpl.dir, ".versions", "base", v1, "rootfs")
    cases = [
        ("base", os.path.join(tpl.stage, "missing"), "No such file or directory"),
        ("base", not_dir, "not a directory"),
        ("base", root_owned, f"owned by 0:0, and a template's root must be owned by the sandboxes' root, {UID_BASE}"),
        ("base", elsewhere, "another file system"),
        ("base", inside, "inside the template directory"),
        ("Base", good, "template name 'Base' is invalid"),
        ("../base", good, "is invalid"),
        (".versions", good, "is invalid"),
        ("-x", good, "is invalid"),
        ("x" * 64, good, "is invalid"),
    ]
    before = tpl.snapshot()
    for name, src, want in cases:
        t0 = time.monotonic()
        p = eng.cli("template", "import", name, src)
        took = time.monotonic() - t0
        assert p.returncode != 0, f"import {name} {src} succeeded"
        assert want in p.stderr, f"import {name} {src}: {p.stderr!r}"
        assert took < 10, f"import {name} {src} took {took:.1f} s to fail"
        assert tpl.snapshot() == before, f"import {name} {src} changed something"
    assert tpl.current() == v1 and os.path.isdir(good)

    # Another state dir: its sandboxes would not be counted, so the versions are not its.
    other = tempfile.mkdtemp(prefix="ai2in-tpl-state-", dir="/var/tmp")
    try:
        p = subprocess.run([str(eng.binary), "--state-dir", other, "--template-dir", tpl.dir,
                            "template", "import", "base", good],
                           capture_output=True, text=True, timeout=60, env=eng.env())
        assert p.returncode != 0
        assert f"belong to the engine whose state dir is {os.path.realpath(eng.state_dir)}" in p.stderr, p.stderr
        assert tpl.snapshot() == before
    finally:
        shutil.rmtree(other)

    # The engine is unaffected and the good directory still imports.
    key = eng.make_key("tpl")
    s = new_sandbox(eng, key, "after")
    works(s, "v1", "after")
    v2 = import_version(eng, tpl, "good")
    assert tpl.versions() == sorted([v1, v2])


def test_list_shows_versions_and_users(tpl: Templates, eng: Engine) -> None:
    """(5) `template list` shows each version, which is current, and how many sandboxes (not
    killed) use it."""
    key = eng.make_key("tpl")
    v1 = tpl.current()
    assert template_list(eng) == {v1: (0, True)}
    a, b = new_sandbox(eng, key, "a"), new_sandbox(eng, key, "b")
    b.pause()
    v2 = import_version(eng, tpl, "v2")
    c = new_sandbox(eng, key, "c")
    assert template_list(eng) == {v1: (2, False), v2: (1, True)}
    a.kill()
    assert template_list(eng) == {v1: (1, False), v2: (1, True)}
    b.kill()
    c.kill()
    assert template_list(eng) == {v1: (0, False), v2: (0, True)}


def test_gone_version_is_an_error(tpl: Templates, eng: Engine) -> None:
    """A sandbox whose version was removed by hand does not silently start on another: resume
    says the version is gone, and the sandbox stays paused (and can be killed)."""
    key = eng.make_key("tpl")
    v1 = tpl.current()
    s = new_sandbox(eng, key, "s")
    s.pause()
    import_version(eng, tpl, "v2")
    shutil.rmtree(os.path.join(tpl.dir, ".versions", "base", v1))
    with pytest.raises(ConflictError) as exc:
        s.resume()
    msg = str(exc.value)
    assert f"version {v1} of template 'base' is gone" in msg and "cannot start on another version" in msg, msg
    assert s.get_info()["state"] == "paused"
    assert template_list(eng)[v1] == (1, False)  # shown as gone, with its sandbox
    assert s.kill()


def test_legacy_template_keeps_working(tpl: Templates) -> None:
    """A template made before versions (a real directory, version "") keeps working: its
    sandboxes record no version, stay on it when the first version is imported (it moves
    among the versions as `legacy`), and it goes once they are killed."""
    tpl.legacy("legacy")
    e = start_engine(templates=tpl.dir)
    try:
        key = e.make_key("tpl")
        running, paused = new_sandbox(e, key, "running"), new_sandbox(e, key, "paused")
        assert running.get_info()["template_version"] is None
        paused.pause()
        v1 = import_version(e, tpl, "v1")
        assert tpl.versions() == sorted([v1, "legacy"])
        works(running, "legacy", "running")
        paused.resume()
        works(paused, "legacy", "paused")
        fresh = new_sandbox(e, key, "fresh")
        works(fresh, "v1", "fresh")
        assert template_list(e) == {"legacy": (2, False), v1: (1, True)}
        running.kill()
        paused.kill()
        e.restart()
        assert tpl.versions() == [v1]
    finally:
        e.teardown()


def test_creates_during_an_import(tpl: Templates, eng: Engine) -> None:
    """No moment of an import leaves base without a root (for the engine or anyone reading
    the path), and every sandbox created meanwhile runs on the version it records."""
    key = eng.make_key("tpl")
    made: List[Sandbox] = []
    errors: List[str] = []
    missing: List[float] = []
    stop = threading.Event()
    rootfs = os.path.join(tpl.dir, "base", "rootfs", "usr")

    def creator() -> None:
        while not stop.is_set() and len(made) < 8:  # under the team's running cap
            try:
                made.append(eng.sandbox(key))
            except Exception as ex:  # noqa: BLE001 - reported below
                errors.append(str(ex))

    def watcher() -> None:
        while not stop.is_set():
            if not os.path.isdir(rootfs):
                missing.append(time.monotonic())
            time.sleep(0.0005)

    threads = [threading.Thread(target=creator), threading.Thread(target=watcher)]
    for t in threads:
        t.start()
    try:
        for m in ("v2", "v3"):
            import_version(eng, tpl, m)
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert not missing, f"{tpl.dir}/base/rootfs was missing {len(missing)} times"
    assert made
    names = {"": "legacy"}
    for s in made:
        v = s.get_info()["template_version"]
        with open(os.path.join(tpl.dir, ".versions", "base", v, "rootfs") + MARKER) as f:
            names[v] = f.read().strip()
        assert marker(s) == names[v], f"{s.id} records {v} but sees {marker(s)}"


def test_running_sandboxes_of_other_engines(tpl: Templates, eng: Engine) -> None:
    """An engine with a state dir of its own sharing the directory (the tests, the benches)
    neither removes versions at its start nor has its running sandboxes' version removed by
    the owner's import: their overlay mounts count as uses."""
    v1 = tpl.current()
    other = start_engine(templates=tpl.dir)
    try:
        key = other.make_key("other")
        s = new_sandbox(other, key, "s")
        v2 = import_version(eng, tpl, "v2")
        assert v1 in tpl.versions(), "the owner removed a version another engine's sandbox runs on"
        works(s, "v1", "s")
        s.kill()
        other.restart()  # not the owner: leaves v1 alone
        assert v1 in tpl.versions()
        v3 = import_version(eng, tpl, "v3")
        assert tpl.versions() == [v3], "v1 and v2 should be gone once nothing uses them"
        assert v2 not in tpl.versions()
    finally:
        other.teardown()
