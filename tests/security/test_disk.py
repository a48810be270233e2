"""A sandbox's disk: what it writes is bounded by its disk_mb, kept across pause, resume and
engine restarts, and gone from the host when it is killed, whatever shape it has (issue 13).

Each sandbox's files live in a subvolume of the engine's disk volume (STATE/disk, a btrfs in
the sparse image STATE/disk.img) whose quota group is limited to its disk_mb. Probes write
from inside real sandboxes of an engine whose limits are small (64 MiB by default, 256 MiB at
most) so that they stay quick and gentle on a shared disk. Against an engine without disk
limits the writes reach their ceiling (4x the limit) and the tests fail.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from typing import Any, Dict, Iterator, List

import pytest
from ai2in import InvalidArgumentError, Sandbox
from it import Engine, engine_binary, mounts_under, rand_suffix, start_engine, wait_until

DISK_MB = 64
MAX_DISK_MB = 256
MIB = 1 << 20

LIMITS = {"--default-disk-mb": DISK_MB, "--max-disk-mb": MAX_DISK_MB, "--disk-image-mb": 2048}

# Writes MiB after MiB of incompressible bytes to a file until the kernel refuses one or the
# ceiling is reached; prints how far it got and why it stopped, as JSON.
FILL = r'''
import errno, json, os, sys
path, ceiling = sys.argv[1], int(sys.argv[2])
chunk, n, why, fd = os.urandom(1 << 20), 0, None, -1
try:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    while n < ceiling:
        os.write(fd, chunk)
        n += 1
    os.fsync(fd)
except OSError as e:
    why = "%s: %s" % (errno.errorcode.get(e.errno, e.errno), e.strerror)
if fd >= 0:
    os.close(fd)
print(json.dumps({"mib": n, "why": why}))
'''


def engine_args() -> List[str]:
    """The limits as flags, those the engine under test knows (one without disk limits starts
    with its defaults, and the probes show what they reach there)."""
    text = subprocess.run([str(engine_binary()), "--help"], capture_output=True, text=True,
                          timeout=10).stdout
    args: List[str] = []
    for flag, value in LIMITS.items():
        if flag in text:
            args += [flag, str(value)]
    return args


@pytest.fixture(scope="module")
def eng() -> Iterator[Engine]:
    e = start_engine(engine_args())
    yield e
    e.teardown()


@pytest.fixture(scope="module")
def team(eng: Engine) -> str:
    return eng.make_key("disk-" + rand_suffix(6))


def fill(sbx: Sandbox, path: str, ceiling_mib: int) -> Dict[str, Any]:
    # The script on the command line: a full disk has no room for it as a file.
    r = sbx.commands.run(f"python3 -c {shlex.quote(FILL)} {path} {ceiling_mib}", timeout=120)
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return json.loads(r.stdout)


def host_bytes(root: str) -> int:
    """What the engine's directory takes on the host's file system: allocated blocks, sparse
    images counted by what they hold, not their size."""
    os.sync()
    total = 0
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(dirpath, d))]
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def assert_stopped_near_limit(got: Dict[str, Any], limit_mib: int) -> None:
    assert got["why"] is not None, \
        f"wrote {got['mib']} MiB with a disk limit of {limit_mib} MiB and was never refused"
    assert "EDQUOT" in got["why"] or "ENOSPC" in got["why"], got
    assert limit_mib - 16 <= got["mib"] <= limit_mib, got


def test_a_sandbox_cannot_write_past_its_disk_limit_and_the_host_keeps_its_space(
        eng: Engine, team: str) -> None:
    sbx = eng.sandbox(team)  # the engine's default-disk-mb
    assert sbx.get_info().get("disk_mb") == DISK_MB
    before = host_bytes(eng.root)
    got = fill(sbx, "/home/sandbox/fill", 4 * DISK_MB)
    grew = host_bytes(eng.root) - before
    assert_stopped_near_limit(got, DISK_MB)
    assert grew <= (DISK_MB + 24) * MIB, \
        f"the engine's files grew by {grew / MIB:.0f} MiB on the host for a {DISK_MB} MiB sandbox"
    # What a user sees: the shell's message, and the usage the API reports.
    r = sbx.commands.run("echo more >> /home/sandbox/fill")
    assert r.exit_code != 0 and "Disk quota exceeded" in r.stderr, (r.exit_code, r.stderr)
    info = sbx.get_info()
    assert DISK_MB - 16 <= info["disk_used_mb"] <= DISK_MB + 1, info
    # A neighbour is unaffected while this one is full.
    other = eng.sandbox(team)
    assert fill(other, "/tmp/mine", 32) == {"mib": 32, "why": None}
    # Deleting makes room again.
    assert sbx.commands.run("rm /home/sandbox/fill").exit_code == 0
    assert fill(sbx, "/tmp/again", 32) == {"mib": 32, "why": None}
    other.kill()
    sbx.kill()


def test_many_small_files_are_bounded_too(eng: Engine, team: str) -> None:
    # Inodes, directory entries and names take metadata, which the limit counts: a sandbox
    # cannot fill the volume with empty files either.
    sbx = eng.sandbox(team, disk_mb=16)
    r = sbx.commands.run("python3 -c \"import os\nos.makedirs('/tmp/m', exist_ok=True)\nn = 0\n"
                         "try:\n    while n < 400000:\n        open('/tmp/m/%07d-a-rather-long-name-to-take-room' % n, 'w').close(); n += 1\n"
                         "except OSError as e:\n    print(n, e.strerror)\nelse:\n    print(n, 'none')\"",
                         timeout=300)
    n, why = r.stdout.split(" ", 1)
    assert why.strip() in ("Disk quota exceeded", "No space left on device"), r.stdout
    assert int(n) < 400000, r.stdout
    sbx.kill()


def test_the_limit_holds_after_pause_resume_and_an_engine_restart(eng: Engine, team: str) -> None:
    sbx = eng.sandbox(team, disk_mb=DISK_MB)
    assert sbx.get_info()["disk_mb"] == DISK_MB
    assert_stopped_near_limit(fill(sbx, "/home/sandbox/fill", 4 * DISK_MB), DISK_MB)
    sbx.pause()
    sbx = eng.connect(sbx.id, team)
    sbx.resume()
    assert sbx.commands.run("test -s /home/sandbox/fill").exit_code == 0, "its files are kept"
    got = fill(sbx, "/home/sandbox/more", 4 * DISK_MB)
    assert got["mib"] <= 1 and got["why"], f"after pause and resume: {got}"
    assert sbx.commands.run("rm -f /home/sandbox/fill /home/sandbox/more").exit_code == 0
    assert_stopped_near_limit(fill(sbx, "/home/sandbox/fill", 4 * DISK_MB), DISK_MB)

    eng.restart()
    sbx = eng.connect(sbx.id, team)
    assert sbx.get_info()["state"] == "running", "re-adopted"
    got = fill(sbx, "/home/sandbox/more", 4 * DISK_MB)
    assert got["mib"] <= 1 and got["why"], f"after an engine restart: {got}"
    sbx.pause()
    eng.restart()
    sbx = eng.connect(sbx.id, team)
    sbx.resume()
    got = fill(sbx, "/home/sandbox/more", 4 * DISK_MB)
    assert got["mib"] <= 1 and got["why"], f"paused across an engine restart: {got}"
    assert sbx.get_info()["disk_mb"] == DISK_MB
    sbx.kill()


def test_kill_gives_the_space_back(eng: Engine, team: str) -> None:
    volume = os.path.join(eng.state_dir, "disk")
    sbx = eng.sandbox(team)
    got = fill(sbx, "/home/sandbox/fill", 48)
    assert got == {"mib": 48, "why": None}
    assert sbx.get_info()["disk_used_mb"] >= 48
    layer = os.path.join(volume, sbx.id)
    assert os.path.isdir(layer), f"{layer}: the sandbox's files are not on the disk volume"

    def free() -> int:
        v = os.statvfs(volume)
        return v.f_bavail * v.f_frsize

    full = free()
    sbx.kill()
    assert not os.path.exists(layer)
    # btrfs drops a deleted subvolume in the background, at its next commits.
    assert wait_until(lambda: free() >= full + 40 * MIB, 90, interval=1), \
        f"the volume's free space went from {full / MIB:.0f} MiB to {free() / MIB:.0f} MiB after kill"


def test_disk_mb_past_the_engines_cap_is_a_400_naming_it(eng: Engine, team: str) -> None:
    status, doc, raw = eng.raw("POST", "/v1/sandboxes", {"disk_mb": MAX_DISK_MB + 1}, key=team)
    assert status == 400, raw
    msg = doc["error"]["message"]
    assert "max-disk-mb" in msg and str(MAX_DISK_MB) in msg, msg
    for bad in (8, 0.5, "64", -1):
        status, doc, raw = eng.raw("POST", "/v1/sandboxes", {"disk_mb": bad}, key=team)
        assert status == 400 and "disk_mb" in doc["error"]["message"], (bad, raw)
    with pytest.raises(InvalidArgumentError, match="max-disk-mb"):
        eng.sandbox(team, disk_mb=MAX_DISK_MB * 2)


def test_the_volume_goes_with_net_remove_and_leaves_no_loop_device(eng: Engine) -> None:
    e = start_engine(engine_args())
    try:
        k = e.make_key("vol")
        e.sandbox(k).kill()
        image = os.path.join(e.state_dir, "disk.img")
        assert mounts_under(os.path.join(e.state_dir, "disk")), "the disk volume is not mounted"
        assert image in loop_backing_files()
    finally:
        e.teardown()
    assert not mounts_under(e.root)
    assert wait_until(lambda: image not in loop_backing_files(), 10), loop_backing_files()


def loop_backing_files() -> List[str]:
    out = []
    for dev in os.listdir("/sys/block"):
        try:
            with open(f"/sys/block/{dev}/loop/backing_file") as f:
                out.append(f.read().strip().removesuffix(" (deleted)"))
        except OSError:
            pass
    return out


def test_kill_removes_a_tree_5000_levels_deep(eng: Engine, team: str) -> None:
    sbx = eng.sandbox(team)
    r = sbx.commands.run("python3 -c \"import os\nfor i in range(5000):\n    os.mkdir('d'); open('f', 'w').close(); os.chdir('d')\n"
                         "print(len(os.getcwd()))\"", cwd="/home/sandbox")
    assert r.exit_code == 0 and int(r.stdout) > 10000, (r.stdout, r.stderr)
    host_dir = os.path.join(eng.state_dir, "sandboxes", sbx.id)
    layer = os.path.join(eng.state_dir, "disk", sbx.id)
    assert os.path.isdir(host_dir)
    sbx.kill()
    assert wait_until(lambda: not os.path.exists(host_dir) and not os.path.exists(layer), 30), \
        f"{host_dir} or {layer} is still on the host after kill:\n{eng.log_tail(20)}"


def test_an_engine_without_the_disk_volume_runs_unlimited_and_says_so(eng: Engine) -> None:
    # disk-volume off: for hosts without btrfs or loop devices. New sandboxes write to the
    # state file system without a limit and say so; a limit asked for is a 400 naming the
    # setting; a sandbox whose files are on the volume cannot resume until it is back on
    # (a 503 saying why), and nothing of it is lost.
    e = start_engine(engine_args())
    try:
        k = e.make_key("off")
        limited = e.sandbox(k)
        assert limited.commands.run("echo kept > /home/sandbox/f").exit_code == 0
        limited.pause()
        e.stop()
        e.start(engine_args() + ["--disk-volume", "off"])

        sbx = e.sandbox(k)
        info = sbx.get_info()
        assert info["disk_mb"] is None and info["disk_used_mb"] is None, info
        assert fill(sbx, "/tmp/big", DISK_MB + 16) == {"mib": DISK_MB + 16, "why": None}
        status, doc, raw = e.raw("POST", "/v1/sandboxes", {"disk_mb": DISK_MB}, key=k)
        assert status == 400 and "disk-volume" in doc["error"]["message"], raw
        status, doc, raw = e.raw("POST", f"/v1/sandboxes/{limited.id}/resume", {}, key=k)
        assert status == 503 and "disk-volume" in doc["error"]["message"], raw
        assert e.connect(limited.id, k).get_info()["state"] == "paused"
        sbx.kill()

        e.stop()
        e.start(engine_args())
        again = e.connect(limited.id, k)
        again.resume()
        assert again.commands.run("cat /home/sandbox/f").stdout == "kept\n"
        assert again.get_info()["disk_mb"] == DISK_MB
        again.kill()
    finally:
        e.teardown()


def test_a_bad_disk_volume_setting_is_refused_at_start() -> None:
    p = subprocess.run([str(engine_binary()), "--disk-volume", "maybe", "serve"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode != 0 and "disk-volume must be on or off" in p.stderr, p.stderr
