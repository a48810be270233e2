"""Fixtures of the integration tests: they start the REAL engine (ai2ind) and talk to it
through the Python SDK (and raw http.client for malformed input).

Every test daemon gets its own temporary state and run directories, a free port, its own
bridge, address pool and cgroup parent, so it never touches a real engine on the machine.

Environment:
    AI2IND                   engine binary (default build/bin/ai2ind; CI also runs build-san)
    AI2IN_TEST_TEMPLATE_DIR  template directory holding base/ (default /var/lib/ai2in/templates)
    AI2IN_TEST_KEEP=1        keep each daemon's temporary directory (log, state) after the run

The tests are skipped only when not run as root; a missing engine binary or template is a
failure, not a skip.
"""

from __future__ import annotations

import base64
import glob
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import string
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
SDK_DIR = REPO / "sdk" / "python"
sys.path.insert(0, str(SDK_DIR))

from ai2in import NotFoundError, Sandbox  # noqa: E402

DEFAULT_TEMPLATE_DIR = "/var/lib/ai2in/templates"
START_TIMEOUT = 30.0
# AI2IN_TEST_RUNTIME=runsc runs the engines of a test session with that default runtime
# (scripts/test.sh runs the runtime-neutral files again on gVisor this way).
TEST_RUNTIME = os.environ.get("AI2IN_TEST_RUNTIME", "")
STOP_TIMEOUT = 20.0

# Engines alive now, so that a failing test's report can show their logs.
_LIVE: List["Engine"] = []
# Every engine made, so that the directories of those never started (a test that only runs
# `serve` to see it fail, or borrows an engine's arguments) go at the end of the session.
_MADE: List["Engine"] = []


def engine_binary() -> Path:
    return Path(os.environ.get("AI2IND") or REPO / "build" / "bin" / "ai2ind")


def template_dir() -> str:
    return os.environ.get("AI2IN_TEST_TEMPLATE_DIR") or DEFAULT_TEMPLATE_DIR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rand_suffix(n: int = 4) -> str:
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def mounts_under(prefix: str) -> List[str]:
    """Mount points at or below prefix, from /proc/self/mountinfo."""
    out = []
    prefix = prefix.rstrip("/")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target == prefix or target.startswith(prefix + "/"):
                out.append(target)
    return out


def _help_text(binary: Path) -> str:
    try:
        p = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=10)
        return p.stdout + p.stderr
    except (OSError, subprocess.TimeoutExpired):
        return ""


class Engine:
    """One ai2ind daemon with its own directories, port, bridge, address pool and cgroups."""

    def __init__(self, extra_args: Sequence[str] = (), templates: Optional[str] = None) -> None:
        """templates: a template directory of the test's own (default: template_dir())."""
        self.binary = engine_binary()
        if not self.binary.is_file() or not os.access(self.binary, os.X_OK):
            pytest.fail(f"engine binary {self.binary} is missing: run `make` in {REPO} "
                        "(or set AI2IND to the binary to test)", pytrace=False)
        self.template_dir = templates or template_dir()
        # Not under pytest's 0700 tmp dirs: the sandboxes' shifted root must be able to
        # traverse the path to their root filesystem.
        self.root = tempfile.mkdtemp(prefix="ai2in-it-", dir="/var/tmp")
        _MADE.append(self)
        os.chmod(self.root, 0o755)
        self.state_dir = os.path.join(self.root, "state")
        self.run_dir = os.path.join(self.root, "run")
        os.makedirs(self.state_dir)
        os.makedirs(self.run_dir)
        self.log_path = os.path.join(self.root, "ai2ind.log")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.preview_port = free_port()
        # What get_host() should use for this engine's preview proxy.
        self.domain = f"localhost:{self.preview_port}"
        sfx = rand_suffix()
        self.bridge = "ai2t" + sfx
        self.net_pool = f"10.78.{random.randint(1, 254)}.0/24"
        self.cgroup_parent = "ai2t-" + sfx
        self.extra_args: List[str] = list(extra_args)
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.keys: Dict[str, str] = {}
        self.created: List[Tuple[str, str]] = []  # (sandbox id, api key)
        self._log_file: Optional[Any] = None
        help_text = _help_text(self.binary)
        self._config_file_flag = "--config-file" in help_text or "--config" in help_text
        self._config_flag = "--config-file" if "--config-file" in help_text else "--config"

    # -- process -----------------------------------------------------------------------------

    def base_args(self) -> List[str]:
        args = [
            "--state-dir", self.state_dir,
            "--template-dir", self.template_dir,
            "--run-dir", self.run_dir,
            "--listen", f"127.0.0.1:{self.port}",
            "--preview-listen", f"127.0.0.1:{self.preview_port}",
            "--bridge", self.bridge,
            "--net-pool", self.net_pool,
            "--cgroup-parent", self.cgroup_parent,
        ]
        if TEST_RUNTIME:  # the runtime matrix (scripts/test.sh): every sandbox on that runtime
            args += ["--runtime", TEST_RUNTIME]
        if self._config_file_flag:  # never read the host's /etc/ai2in/ai2ind.conf
            empty = os.path.join(self.root, "ai2ind.conf")
            Path(empty).touch()
            args = [self._config_flag, empty] + args
        return args

    def env(self) -> Dict[str, str]:
        # The daemon must not pick up settings meant for a real engine.
        return {k: v for k, v in os.environ.items() if not k.startswith("AI2IN_")}

    def start(self, extra_args: Optional[Sequence[str]] = None) -> "Engine":
        """Starts `ai2ind serve` and waits until /v1/health answers 200."""
        if extra_args is not None:
            self.extra_args = list(extra_args)
        tdir = self.template_dir
        if not os.path.isdir(os.path.join(tdir, "base")):
            pytest.fail(f"template {tdir}/base is missing: build it with `ai2ind --template-dir "
                        f"{tdir} template build base` (or set AI2IN_TEST_TEMPLATE_DIR)",
                        pytrace=False)
        assert self.proc is None or self.proc.poll() is not None, "engine already running"
        if self.proc is None:
            self.net_pool = free_net_pool(self.net_pool)
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n==== start {time.strftime('%H:%M:%S')} ====\n".encode())
        self._log_file.flush()
        cmd = [str(self.binary)] + self.base_args() + self.extra_args + ["serve"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, env=self.env())
        if self not in _LIVE:
            _LIVE.append(self)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"ai2ind exited with {self.proc.returncode} while starting "
                            f"({' '.join(cmd)}):\n{self.log_tail()}", pytrace=False)
            if self.healthy():
                return self
            time.sleep(0.05)
        pytest.fail(f"ai2ind did not answer GET /v1/health within {START_TIMEOUT:g} s:\n"
                    f"{self.log_tail()}", pytrace=False)

    def healthy(self) -> bool:
        try:
            status, doc, _ = self.raw("GET", "/v1/health", key=None, timeout=2)
            return status == 200 and isinstance(doc, dict) and doc.get("status") == "ok"
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> Optional[int]:
        """Sends sig and waits for the daemon to exit; returns its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                if self._log_file:
                    self._log_file.write(
                        f"\n==== did not exit within {STOP_TIMEOUT:g}s of signal {sig}; "
                        "SIGKILLed ====\n".encode())
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode

    def restart(self, sig: int = signal.SIGTERM) -> "Engine":
        """Stops (with sig) and starts again on the same state and run directories."""
        self.stop(sig)
        return self.start()

    def log_tail(self, n: int = 60) -> str:
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def layer_dir(self, sandbox_id: str) -> str:
        """The host directory holding a sandbox's upper/ and work/: its layer on the disk volume
        (STATE/disk/<id>), or STATE/sandboxes/<id> for an engine without the volume."""
        layer = os.path.join(self.state_dir, "disk", sandbox_id)
        return layer if os.path.isdir(layer) else os.path.join(self.state_dir, "sandboxes", sandbox_id)

    # -- API helpers -------------------------------------------------------------------------

    def make_key(self, team: str) -> str:
        """Creates an API key for team (with `ai2ind keys create`, beside the running daemon)."""
        p = subprocess.run([str(self.binary)] + self.base_args() + ["keys", "create", "--team",
                                                                       team],
                           capture_output=True, text=True, timeout=30, env=self.env())
        assert p.returncode == 0, f"ai2ind keys create failed ({p.returncode}): {p.stderr}"
        key = p.stdout.splitlines()[0].strip() if p.stdout else ""
        assert key.startswith("ai2in_live_"), f"unexpected key output: {p.stdout!r}"
        self.keys[key] = team
        return key

    def cli(self, *args: str, timeout: float = 120) -> "subprocess.CompletedProcess[str]":
        """Runs an ai2ind subcommand (`template import ...`) with this engine's settings, as
        an operator would beside the running daemon."""
        return subprocess.run([str(self.binary)] + self.base_args() + list(args), capture_output=True,
                              text=True, timeout=timeout, env=self.env())

    def sandbox(self, key: str, **kwargs: Any) -> Sandbox:
        """Creates a sandbox with the SDK and remembers it for teardown."""
        kwargs.setdefault("domain", self.domain)
        sbx = Sandbox(api_key=key, api_url=self.url, **kwargs)
        self.created.append((sbx.id, key))
        return sbx

    def connect(self, sandbox_id: str, key: str) -> Sandbox:
        return Sandbox.connect(sandbox_id, api_key=key, api_url=self.url, domain=self.domain)

    def list(self, key: str, **kwargs: Any) -> List[Dict[str, Any]]:
        return Sandbox.list(api_key=key, api_url=self.url, **kwargs)

    def raw(self, method: str, path: str, body: Any = None, key: Optional[str] = None,
            headers: Optional[Dict[str, str]] = None, timeout: float = 30
            ) -> Tuple[int, Any, bytes]:
        """One request with http.client; body may be bytes (sent as is) or a JSON value.
        Returns (status, parsed JSON or None, raw body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            h = dict(headers or {})
            if key is not None:
                h.setdefault("X-API-Key", key)
            data: Optional[bytes]
            if body is None:
                data = None
            elif isinstance(body, bytes):
                data = body
            else:
                data = json.dumps(body).encode()
            if data is not None:
                h.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = None
        return resp.status, doc, raw

    def kill_all(self) -> List[str]:
        """Kills, through the API, every sandbox this engine's keys can see and every one
        the tests created; returns the errors met."""
        errors = []
        seen = set()
        for key in list(self.keys):
            try:
                for s in self.list(key, state=["running", "paused"]):
                    self.created.append((s["id"], key))
            except Exception as e:  # noqa: BLE001 - teardown reports, never raises
                errors.append(f"list for team {self.keys[key]}: {e}")
        for sid, key in self.created:
            if sid in seen:
                continue
            seen.add(sid)
            try:
                status, doc, raw = self.raw("DELETE", f"/v1/sandboxes/{sid}", key=key)
                if status not in (200, 404):
                    errors.append(f"DELETE {sid}: {status} {raw[:200]!r}")
            except OSError as e:
                errors.append(f"DELETE {sid}: {e}")
        return errors

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # -- teardown ----------------------------------------------------------------------------

    def teardown(self) -> None:
        """Kills every sandbox through the API, stops the daemon, then removes what is left
        of this daemon's private resources (only names and paths unique to it)."""
        problems: List[str] = []
        if not self.running and (self.created or self.keys):
            try:  # a test stopped it: start it again so the API can kill what is left
                self.start()
            except BaseException as e:  # noqa: BLE001
                problems.append(f"restart for cleanup failed: {e}")
        if self.running:
            problems += self.kill_all()
        self.stop()
        if self in _LIVE:
            _LIVE.remove(self)
        findings = self.sanitizer_findings()
        problems += self._scrub()
        if problems:
            sys.stderr.write(f"\n[ai2in tests] teardown of engine {self.root}: "
                             + "; ".join(problems) + "\n")
        if findings:
            pytest.fail("ai2ind reported sanitizer errors:\n" + "\n".join(findings),
                        pytrace=False)

    def sanitizer_findings(self) -> List[str]:
        """ASan / LSan / UBSan reports in the log (the build-san binary prints them)."""
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []
        out = []
        for i, line in enumerate(lines):
            if "ERROR: AddressSanitizer" in line or "ERROR: LeakSanitizer" in line or \
                    "runtime error:" in line:
                out.extend(lines[i:i + 15])
        return out

    def _scrub(self) -> List[str]:
        notes = []
        # Containers still alive under a runc root inside our run dir.
        for state in glob.glob(os.path.join(self.run_dir, "**", "state.json"), recursive=True):
            cdir = os.path.dirname(state)
            croot, cid = os.path.dirname(cdir), os.path.basename(cdir)
            notes.append(f"container {cid} left in {croot}")
            subprocess.run(["runc", "--root", croot, "delete", "--force", cid],
                           capture_output=True, timeout=30)
        # The bridge and the engine's host firewall rules and chain for it (left behind, every run
        # would add rules, and each packet into the host, loopback included, walks them all),
        # and its disk volume's mount, whose loop device goes with it.
        p = subprocess.run([str(self.binary)] + self.base_args() + ["net", "remove", "--force"],
                           capture_output=True, text=True, timeout=60, env=self.env())
        if p.returncode != 0:
            notes.append(f"ai2ind net remove failed: {p.stderr.strip()}")
        for m in sorted(mounts_under(self.root), key=len, reverse=True):
            notes.append(f"mount {m} left")
            subprocess.run(["umount", "-l", m], capture_output=True, timeout=30)
        for dev, backing in loop_devices_under(self.root):
            notes.append(f"loop device {dev} ({backing}) left")
            subprocess.run(["losetup", "-d", dev], capture_output=True, timeout=30)
        for d in sorted(cgroup_dirs(self.cgroup_parent), key=len, reverse=True):
            try:
                os.rmdir(d)
            except OSError as e:
                notes.append(f"cgroup {d} left: {e}")
        if os.environ.get("AI2IN_TEST_KEEP") == "1":
            return notes
        if mounts_under(self.root):
            notes.append(f"{self.root} kept: still has mounts")
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        return notes


def loop_devices_under(prefix: str) -> List[Tuple[str, str]]:
    """(device, backing file) of every loop device backed by a file at or below prefix."""
    out = []
    prefix = prefix.rstrip("/") + "/"
    for name in sorted(os.listdir("/sys/block")):
        try:
            with open(f"/sys/block/{name}/loop/backing_file") as f:
                backing = f.read().strip()
        except OSError:
            continue
        if backing.startswith(prefix):
            out.append((f"/dev/{name}", backing))
    return out


def cgroup_dirs(parent: str) -> List[str]:
    """Every cgroup directory at or below a cgroup parent named parent, in every hierarchy."""
    out: List[str] = []
    tops = glob.glob(f"/sys/fs/cgroup/{parent}") + glob.glob(f"/sys/fs/cgroup/*/{parent}")
    for top in tops:
        for dirpath, _dirs, _files in os.walk(top):
            out.append(dirpath)
    return out


def free_net_pool(pool: str) -> str:
    """pool, or another 10.78.X.0/24 if an interface of the host (another engine's bridge)
    has an address in it already: two engines on one pool would both want its gateway
    address, where each one's DNS forwarder listens (the second could not start)."""
    used = set(re.findall(r"inet 10\.78\.(\d+)\.", subprocess.run(
        ["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout))
    if pool.split(".")[2] not in used:
        return pool
    return f"10.78.{random.choice([x for x in range(1, 255) if str(x) not in used])}.0/24"


def start_engine(extra_args: Sequence[str] = (), templates: Optional[str] = None) -> Engine:
    e = Engine(extra_args, templates)
    try:
        return e.start()
    except BaseException:
        e.teardown()
        raise


# -- pytest wiring -------------------------------------------------------------------------


IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long-running test (still run in CI)")
    # Engines turn IPv4 forwarding on (their sandboxes' egress needs it); the suites give the
    # host back as they found it.
    try:
        with open(IP_FORWARD) as f:
            config.stash[_ip_forward_key] = f.read().strip()
    except OSError:
        pass


def pytest_unconfigure(config: pytest.Config) -> None:
    for e in _MADE:
        if e.proc is None and os.path.isdir(e.root) and not glob.glob(os.path.join(e.root, "state", "*")):
            shutil.rmtree(e.root, ignore_errors=True)
    value = config.stash.get(_ip_forward_key, None)
    if value is None or os.geteuid() != 0:
        return
    try:
        with open(IP_FORWARD, "w") as f:
            f.write(value + "\n")
    except OSError:
        pass


_ip_forward_key = pytest.StashKey[str]()


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="integration tests need root: they start ai2ind, which "
                                   "creates containers, mounts, cgroups and network devices")
    here = str(Path(__file__).parent)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for e in _LIVE:
            rep.sections.append((f"ai2ind log ({e.log_path})", e.log_tail(80)))


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """The shared engine with default settings."""
    e = start_engine()
    yield e
    e.teardown()


@pytest.fixture(scope="session")
def key(engine: Engine) -> str:
    """A key of team "alpha" on the shared engine."""
    return engine.make_key("alpha")


@pytest.fixture
def fresh_key(engine: Engine) -> str:
    """A key of a new team, so the test sees only its own sandboxes."""
    return engine.make_key("t-" + rand_suffix(8))


def wait_until(pred: Any, timeout: float, interval: float = 0.1) -> bool:
    """Polls pred() until it is true or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def gone(sbx: Sandbox) -> bool:
    try:
        sbx.get_info()
        return False
    except NotFoundError:
        return True


# -- helpers for the processes, PTY and files tests ---------------------------------------------


def vm_rss_kb(pid: int) -> int:
    """The resident set size of a host process, in KiB (VmRSS of /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


class RssSampler:
    """Samples a process's VmRSS on a thread while a `with` block runs; `.peak_kb` and
    `.base_kb` (the value when the block started) tell how much it grew."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.base_kb = 0
        self.peak_kb = 0
        self._stop = False
        self._thread: Optional[Any] = None

    def _run(self) -> None:
        while not self._stop:
            try:
                self.peak_kb = max(self.peak_kb, vm_rss_kb(self.pid))
            except (OSError, AssertionError):
                return
            time.sleep(self.interval)

    def __enter__(self) -> "RssSampler":
        import threading

        self.base_kb = self.peak_kb = vm_rss_kb(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak_kb - self.base_kb) / 1024


def wait_for(pred: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Polls pred() until it returns a truthy value (returned) or fails the test after
    timeout seconds, naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}", pytrace=False)
        time.sleep(interval)


@pytest.fixture(scope="module")
def module_key(engine: Engine) -> str:
    """A key of a team of the test module's own, so its sandboxes never meet another
    module's running cap."""
    return engine.make_key("m-" + rand_suffix(8))


@pytest.fixture
def sbx(engine: Engine, module_key: str) -> Iterator[Sandbox]:
    """A new sandbox for one test, killed after it."""
    s = engine.sandbox(module_key)
    yield s
    try:
        s.kill()
    except Exception as e:  # noqa: BLE001 - teardown reports, never hides the test's result
        sys.stderr.write(f"\n[ai2in tests] killing {s.id} after the test: {e}\n")


def sanitizer_build() -> bool:
    """True when the engine under test is an ASan build (CI runs the suite once with each
    build; the heaviest tests run only in the normal build's pass)."""
    try:
        with open(engine_binary(), "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# -- helpers for the code tests (run_code, contexts) ------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def strip_ansi(s: str) -> str:
    """s without ANSI escape sequences (IPython colours its tracebacks)."""
    return _ANSI.sub("", s)


def png_size(b64: str) -> Tuple[int, int]:
    """(width, height) of a base64 PNG, from its IHDR chunk; fails the test if it is not one."""
    data = base64.b64decode(b64)
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"not a PNG: {data[:16]!r}"
    assert data[12:16] == b"IHDR", f"PNG without IHDR first: {data[:32]!r}"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)
