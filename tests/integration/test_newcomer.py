"""A newcomer's first hour (issue 12), as the README says it, against the real engine:
the Python SDK installed into a fresh venv exactly as README.md shows (Debian 12's own
Python refuses pip, and there is no package index), the README's first example run as
written, and a preview URL opened from every ordinary HTTP client of the engine's machine
— Python's urllib and requests, Node's fetch, curl, wget — with the domain and scheme the
engine itself advertises (no domain= and no AI2IN_DOMAIN)."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from ai2in import Sandbox
from conftest import REPO, Engine, wait_for

README = (REPO / "README.md").read_text()


def readme_block_after(marker: str) -> str:
    """The first ```sh block after marker in README.md."""
    rest = README.split(marker, 1)[1]
    return re.search(r"```sh\n(.*?)```", rest, re.S).group(1)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the SDK installed by the README's own command line."""
    block = readme_block_after("make an API key for a team and use it")
    install = next(line for line in block.splitlines() if "pip install" in line)
    home = tmp_path_factory.mktemp("home")
    # The README's line, with ~ meaning a throwaway home; nothing else changed.
    cmd = install.split("#")[0].strip().replace("~", str(home))
    p = subprocess.run(["bash", "-c", cmd], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert p.returncode == 0, f"{cmd}\n{p.stdout}\n{p.stderr}"
    return home / ".venvs" / "ai2in"


def test_readme_install_and_first_example(engine: Engine, module_key: str, venv: Path) -> None:
    block = readme_block_after("make an API key for a team and use it")
    example = next(line for line in block.splitlines() if line.startswith("python3 -c"))
    env = {**os.environ, "AI2IN_API_KEY": module_key, "AI2IN_API_URL": engine.url,
           "PATH": f"{venv}/bin:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    p = subprocess.run(["bash", "-c", example], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Linux "), p.stdout
    # The venv's own copy of the SDK ran, not the checkout's.
    where = subprocess.run([f"{venv}/bin/python", "-c", "import ai2in; print(ai2in.__file__)"],
                           capture_output=True, text=True, env=env, cwd="/")
    assert where.stdout.startswith(str(venv)), where.stdout


@pytest.fixture(scope="module")
def page(engine: Engine, module_key: str, monkeypatch_module: None) -> Iterator[Sandbox]:
    sbx = Sandbox(api_key=module_key, api_url=engine.url)  # no domain: the engine says
    sbx.files.write("/tmp/www/hello.txt", "hello, newcomer")
    sbx.commands.run("python3 -m http.server 8000", background=True, cwd="/tmp/www").disconnect()
    url = sbx.get_url(8000) + "hello.txt"
    wait_for(lambda: _get(url) == "hello, newcomer", 20, f"GET {url}")
    yield sbx
    sbx.kill()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[None]:
    saved = os.environ.pop("AI2IN_DOMAIN", None)
    yield
    if saved is not None:
        os.environ["AI2IN_DOMAIN"] = saved


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode()
    except OSError:
        return ""


def test_engine_advertises_its_preview_proxy(engine: Engine, page: Sandbox) -> None:
    info = page.get_info()
    assert info["preview"] == {"scheme": "http", "domain": f"localhost:{engine.preview_port}"}
    assert page.get_host(8000) == f"8000-{page.id.replace('_', '-')}.localhost:{engine.preview_port}"
    assert page.get_url(8000) == f"http://{page.get_host(8000)}/"


def test_urllib_as_the_issue_wrote_it(page: Sandbox) -> None:
    with urllib.request.urlopen("http://" + page.get_host(8000) + "/hello.txt", timeout=10) as r:
        assert r.read() == b"hello, newcomer"


def test_requests(page: Sandbox) -> None:
    p = subprocess.run(["/usr/bin/python3", "-c",
                        "import requests, sys; r = requests.get(sys.argv[1], timeout=10); print(r.status_code, r.text)",
                        page.get_url(8000) + "hello.txt"], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "200 hello, newcomer", p.stderr


def test_node_fetch(page: Sandbox) -> None:
    p = subprocess.run(["node", "-e", "fetch(process.argv[1]).then(r => r.text()).then(t => console.log(t))",
                        page.get_url(8000) + "hello.txt"], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "hello, newcomer", p.stderr


def test_node_fetch_without_trying_the_next_address(page: Sandbox) -> None:
    """Node 18's fetch (Debian 12's nodejs) tries only the first address of a name, and
    *.localhost resolves to ::1 first: the proxy listens on [::1] too."""
    p = subprocess.run(["node", "--no-network-family-autoselection", "-e",
                        "fetch(process.argv[1]).then(r => r.text()).then(t => console.log(t))",
                        page.get_url(8000) + "hello.txt"], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "hello, newcomer", p.stderr


@pytest.mark.parametrize("argv", [["curl", "-sS", "--max-time", "10"], ["wget", "-qO-", "--timeout=10"]])
def test_curl_and_wget(page: Sandbox, argv: list) -> None:
    p = subprocess.run(argv + [page.get_url(8000) + "hello.txt"], capture_output=True, text=True, timeout=60)
    assert p.stdout == "hello, newcomer", p.stderr
