"""Shared code of the by-hand benchmarks (bench/lifecycle, bench/commands).

A private engine (`Engine`: its own state and run dirs, port, bridge, address pool and cgroup
parent), a raw runc baseline on the same template rootfs (`Runc`), the cleanup that removes
everything both leave behind, and small statistics helpers. Python 3 standard library only
(plus the SDK from sdk/python). Every name a run creates derives from `BenchConfig.name`, so
that two benchmarks with different names can run side by side.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "sdk" / "python"))

from ai2in import NotFoundError, Sandbox  # noqa: E402

AI2IND = REPO / "build" / "bin" / "ai2ind"
TEMPLATE_DIR = "/var/lib/ai2in/templates"
TEMPLATE = "base"
LOWER = f"{TEMPLATE_DIR}/{TEMPLATE}/rootfs"
UID_BASE = 1000000
UID_COUNT = 65536
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
RUNC = shutil.which("runc") or "runc"
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


@dataclass(frozen=True)
class BenchConfig:
    """What makes a benchmark's engine and baseline private.

    name: the bench bridge, the engine's cgroup parent and the prefix of the baseline's
        container ids; the baseline's cgroup parent is name + "-runc". At most 15 characters
        (a network interface name).
    net_pool: the engine's sandbox address pool.
    max_running: the engine's --max-running.
    ai2ind: the engine binary (the agent is found beside it).
    """

    name: str
    net_pool: str
    max_running: int
    ai2ind: Path = AI2IND

    @property
    def bridge(self) -> str:
        return self.name

    @property
    def cgroup_parent(self) -> str:  # the engine's sandboxes
        return self.name

    @property
    def runc_cgroup_parent(self) -> str:  # the baseline's containers
        return self.name + "-runc"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- statistics ----------------------------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summary(values: Sequence[float]) -> Dict[str, float]:
    return {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99),
            "min": min(values) if values else float("nan"),
            "max": max(values) if values else float("nan")}


def ms(s: float) -> str:
    return f"{s * 1000:8.1f}"


def timed(fn: Callable[[], Any]) -> Tuple[float, Any]:
    t0 = time.perf_counter()
    r = fn()
    return time.perf_counter() - t0, r


# -- preflight -----------------------------------------------------------------------------

def check_prereqs(ap: argparse.ArgumentParser, cfg: BenchConfig) -> None:
    """Root, the engine binary, the template, runc, and no bench bridge of the same name."""
    if os.geteuid() != 0:
        ap.error("run as root: it starts ai2ind and runc containers")
    if not os.access(cfg.ai2ind, os.X_OK):
        build = cfg.ai2ind.parent.parent
        how = (f"make -C {REPO}" if cfg.ai2ind == AI2IND else
               f"make -C {REPO} BUILD={os.path.relpath(build, REPO)}")
        ap.error(f"{cfg.ai2ind} is missing: run `{how}`")
    if not os.path.isdir(LOWER):
        ap.error(f"template rootfs {LOWER} is missing: build it with `{cfg.ai2ind} "
                 f"--template-dir {TEMPLATE_DIR} template build {TEMPLATE}`")
    if not shutil.which(RUNC):
        ap.error("runc is not in PATH")
    if os.path.exists(f"/sys/class/net/{cfg.bridge}"):
        ap.error(f"bridge {cfg.bridge} exists: another bench run (or a leftover)? "
                 f"remove it with `ip link del {cfg.bridge}`")


# -- the engine ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> Dict[str, str]:
    # The engine must not pick up settings meant for a real one.
    return {k: v for k, v in os.environ.items() if not k.startswith("AI2IN_")}


class Engine:
    def __init__(self, tmp: str, cfg: BenchConfig, extra_args: Sequence[str] = ()) -> None:
        """extra_args: more settings (flags), such as --pool base=4."""
        self.tmp = tmp
        self.cfg = cfg
        self.extra_args = list(extra_args)
        self.state_dir = os.path.join(tmp, "state")
        self.run_dir = os.path.join(tmp, "run")
        self.conf = os.path.join(tmp, "ai2ind.conf")  # empty: never read /etc/ai2in/ai2ind.conf
        self.log_path = os.path.join(tmp, "ai2ind.log")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Its own preview port too: the default 127.0.0.1:7301 belongs to `make run`'s engine.
        self.preview_port = free_port()
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.key: Optional[str] = None
        self.live: Dict[str, None] = {}  # ids of sandboxes created and not (yet) killed
        self.lock = threading.Lock()

    def command(self, *args: str) -> List[str]:
        """ai2ind with this engine's settings, then args (a subcommand)."""
        cfg = self.cfg
        return [str(cfg.ai2ind), "--config", self.conf, "--state-dir", self.state_dir,
                "--run-dir", self.run_dir, "--template-dir", TEMPLATE_DIR,
                "--listen", f"127.0.0.1:{self.port}", "--preview-listen", f"127.0.0.1:{self.preview_port}",
                "--bridge", cfg.bridge,
                "--net-pool", cfg.net_pool, "--cgroup-parent", cfg.cgroup_parent,
                "--max-running", str(cfg.max_running), *self.extra_args, *args]

    def start(self) -> None:
        # The engine turns IPv4 forwarding on (its sandboxes' egress): cleanup() gives the
        # host back its own setting.
        with open(IP_FORWARD) as f:
            self.ip_forward = f.read().strip()
        os.makedirs(self.state_dir)
        os.makedirs(self.run_dir)
        Path(self.conf).touch()
        cmd = self.command("serve")
        logf = open(self.log_path, "ab")
        # Own session: a Ctrl-C in the terminal reaches only us, and we kill the sandboxes
        # through the API before stopping the engine.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT, env=clean_env(),
                                     start_new_session=True)
        logf.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ai2ind exited with {self.proc.returncode} while starting:\n"
                                   + self.log_tail())
            if self.healthy():
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"ai2ind did not answer GET /v1/health within "
                                   f"{START_TIMEOUT:g} s:\n" + self.log_tail())
            time.sleep(0.05)
        p = subprocess.run(self.command("keys", "create", "--team", "bench"),
                           capture_output=True, text=True, timeout=30, env=clean_env())
        lines = p.stdout.splitlines()
        if p.returncode != 0 or not lines or not lines[0].strip():
            raise RuntimeError(f"ai2ind keys create failed ({p.returncode}): {p.stderr.strip()}")
        self.key = lines[0].strip()

    def healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/v1/health")
                return conn.getresponse().status == 200
            finally:
                conn.close()
        except OSError:
            return False

    def log_tail(self, n: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def create(self, **kwargs: Any) -> Sandbox:
        sbx = Sandbox(api_key=self.key, api_url=self.url, **kwargs)
        with self.lock:
            self.live[sbx.id] = None
        return sbx

    def kill(self, sbx: Sandbox) -> None:
        sbx.kill()
        with self.lock:
            self.live.pop(sbx.id, None)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill_all(self) -> List[str]:
        """Kills through the API every sandbox the bench key can see or created."""
        problems: List[str] = []
        if not self.running() or self.key is None:
            return problems
        ids = dict(self.live)
        try:
            for s in Sandbox.list(api_key=self.key, api_url=self.url,
                                  state=["creating", "running", "paused", "error"]):
                ids[s["id"]] = None
        except Exception as e:  # noqa: BLE001 - cleanup reports, never raises
            problems.append(f"list sandboxes: {e}")
        for sid in ids:
            try:
                Sandbox.connect(sid, api_key=self.key, api_url=self.url).kill()
            except NotFoundError:
                pass
            except Exception as e:  # noqa: BLE001
                problems.append(f"kill {sid}: {e}")
        self.live.clear()
        return problems

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"ai2ind did not exit within {STOP_TIMEOUT:g} s of SIGTERM: SIGKILL")
            self.proc.kill()
            self.proc.wait()


# -- the raw runc baseline -----------------------------------------------------------------

def runc_config(rootfs: str, cid: str, cgroup_parent: str) -> Dict[str, Any]:
    """A minimal config like the engine's (engine/sandbox/bundle.c): same namespaces and id
    mapping, /proc, /dev, /dev/pts, /dev/shm and a read-only rbind of /sys; no seccomp,
    capabilities, masked paths, resources or rlimits; runc creates the netns itself."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/sleep", "infinity"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
        },
        "root": {"path": rootfs, "readonly": False},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "none", "source": "/sys",
             "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": UID_BASE, "size": UID_COUNT}],
            "gidMappings": [{"containerID": 0, "hostID": UID_BASE, "size": UID_COUNT}],
            "namespaces": [{"type": t} for t in
                           ("pid", "ipc", "uts", "mount", "user", "network")],
            "cgroupsPath": f"/{cgroup_parent}/{cid}",
        },
    }


class Runc:
    def __init__(self, tmp: str, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.base = os.path.join(tmp, "runc")
        self.root = os.path.join(tmp, "runcroot")
        os.makedirs(self.base, mode=0o711)
        os.makedirs(self.root, mode=0o700)
        self.seq = 0
        self.live: Dict[str, str] = {}  # container id -> bundle dir
        self.lock = threading.Lock()

    def bundle(self) -> Tuple[str, str]:
        """A fresh bundle: overlay on the template (new upper/work), config.json."""
        with self.lock:
            self.seq += 1
            cid = f"{self.cfg.name}-{os.getpid()}-{self.seq}"
        b = os.path.join(self.base, cid)
        for d in ("upper", "work", "rootfs"):
            os.makedirs(os.path.join(b, d), mode=0o700)
        os.chown(os.path.join(b, "upper"), UID_BASE, UID_BASE)
        os.chmod(os.path.join(b, "upper"), 0o755)
        os.chmod(b, 0o711)
        rootfs = os.path.join(b, "rootfs")
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"nodev,lowerdir={LOWER},upperdir={b}/upper,workdir={b}/work", rootfs],
                       check=True, capture_output=True, timeout=30)
        with open(os.path.join(b, "config.json"), "w") as f:
            json.dump(runc_config(rootfs, cid, self.cfg.runc_cgroup_parent), f)
        return cid, b

    def drop_bundle(self, b: str) -> None:
        rootfs = os.path.join(b, "rootfs")
        if os.path.ismount(rootfs):
            subprocess.run(["umount", rootfs], capture_output=True, timeout=30)
        if not os.path.ismount(rootfs):
            shutil.rmtree(b, ignore_errors=True)

    def _cmd(self, *args: str) -> List[str]:
        return [RUNC, "--root", self.root, *args]

    def run_d(self, cid: str, b: str, stderr: Any = subprocess.DEVNULL) -> None:
        with self.lock:
            self.live[cid] = b
        rc = subprocess.run(self._cmd("run", "-d", "--bundle", b, cid), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=stderr).returncode
        if rc != 0:
            raise RuntimeError(f"runc run -d {cid} exited with {rc}")

    def exec(self, cid: str, *argv: str) -> None:
        p = subprocess.run(self._cmd("exec", cid, *argv), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise RuntimeError(f"runc exec {cid} {' '.join(argv)} exited with {p.returncode}: "
                               f"{p.stderr.decode(errors='replace').strip()}")

    def exec_true(self, cid: str) -> None:
        self.exec(cid, "/bin/true")

    def delete(self, cid: str) -> None:
        p = subprocess.run(self._cmd("delete", "-f", cid), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise RuntimeError(f"runc delete -f {cid} exited with {p.returncode}: "
                               f"{p.stderr.decode(errors='replace').strip()}")
        with self.lock:
            self.live.pop(cid, None)

    def start_checked(self, tmp: str) -> Tuple[str, str]:
        """A new bundle and a running container; runc's stderr goes to a file so that a
        broken bundle says why."""
        cid, b = self.bundle()
        errpath = os.path.join(tmp, "runc-smoke.err")
        try:
            with open(errpath, "wb") as err:
                try:
                    self.run_d(cid, b, stderr=err)
                except RuntimeError as e:
                    raise RuntimeError(
                        f"{e}: {Path(errpath).read_text(errors='replace').strip()}")
        except BaseException:
            self.cleanup_one(cid)
            raise
        return cid, b

    def smoke(self, tmp: str) -> None:
        """Untimed warm-up: run -d, exec /bin/true, delete -f."""
        cid, _ = self.start_checked(tmp)
        try:
            self.exec_true(cid)
            self.delete(cid)
        finally:
            self.cleanup_one(cid)

    def cleanup_one(self, cid: str) -> None:
        with self.lock:
            b = self.live.pop(cid, None)
        if b is not None:
            subprocess.run(self._cmd("delete", "-f", cid), capture_output=True, timeout=60)
        self.drop_bundle(b or os.path.join(self.base, cid))

    def cleanup(self) -> None:
        ids = set(self.live)
        try:
            out = subprocess.run(self._cmd("list", "-q"), capture_output=True, text=True,
                                 timeout=60).stdout
            ids.update(x for x in out.split() if x)
        except (OSError, subprocess.SubprocessError):
            pass
        for cid in ids:
            subprocess.run(self._cmd("delete", "-f", cid), capture_output=True, timeout=60)
            self.live.pop(cid, None)
        for b in glob.glob(os.path.join(self.base, "*")):
            self.drop_bundle(b)


# -- cleanup -------------------------------------------------------------------------------

def mounts_under(prefix: str) -> List[str]:
    out = []
    prefix = prefix.rstrip("/")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target == prefix or target.startswith(prefix + "/"):
                out.append(target)
    return out


def cgroup_dirs(parent: str) -> List[str]:
    out: List[str] = []
    for top in glob.glob(f"/sys/fs/cgroup/{parent}") + glob.glob(f"/sys/fs/cgroup/*/{parent}"):
        for dirpath, _dirs, _files in os.walk(top):
            out.append(dirpath)
    return out


def cleanup(tmp: str, cfg: BenchConfig, eng: Optional[Engine], rc: Optional[Runc], keep: bool,
            workers: Iterable[threading.Thread] = ()) -> None:
    """Removes everything a run made; reports problems, never raises. `workers`: threads
    that may still have requests in flight (interrupted during a concurrent phase): they are
    awaited first so that the sandboxes they create are known and killed."""
    problems: List[str] = []
    deadline = time.monotonic() + 60
    for t in workers:
        t.join(max(0.0, deadline - time.monotonic()))
    if eng is not None:
        problems += eng.kill_all()
        eng.stop()
        if getattr(eng, "ip_forward", None):
            try:
                with open(IP_FORWARD, "w") as f:
                    f.write(eng.ip_forward + "\n")
            except OSError as e:
                problems.append(f"net.ipv4.ip_forward not restored: {e.strerror}")
        # Containers the engine left behind (its runc root lives in our run dir).
        for state in glob.glob(os.path.join(eng.run_dir, "**", "state.json"), recursive=True):
            cdir = os.path.dirname(state)
            problems.append(f"engine container {os.path.basename(cdir)} left: deleted")
            subprocess.run([RUNC, "--root", os.path.dirname(cdir), "delete", "--force",
                            os.path.basename(cdir)], capture_output=True, timeout=60)
    if rc is not None:
        rc.cleanup()
    for m in sorted(mounts_under(tmp), key=len, reverse=True):
        if subprocess.run(["umount", m], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", m], capture_output=True, timeout=30)
    if eng is not None:  # the bridge and the engine's two host INPUT rules for it
        subprocess.run(eng.command("net", "remove", "--force"), capture_output=True, timeout=60,
                       env=clean_env())
    for parent in (cfg.cgroup_parent, cfg.runc_cgroup_parent):
        for d in sorted(cgroup_dirs(parent), key=len, reverse=True):
            try:
                os.rmdir(d)
            except OSError as e:
                problems.append(f"cgroup {d} left: {e.strerror}")
    if problems:
        log("cleanup: " + "; ".join(problems))
    if keep:
        log(f"kept {tmp}")
    elif mounts_under(tmp):
        log(f"{tmp} kept: it still has mounts")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def positive(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return v
