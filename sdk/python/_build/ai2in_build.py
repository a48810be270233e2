"""A PEP 517 build backend in the Python standard library only, for the ai2in SDK.

Why not setuptools: on Debian 12 the SDK is installed into a virtual environment (the system
Python refuses `pip install`, PEP 668), and a fresh venv cannot build with setuptools offline:
build isolation would download it, and the venv's own setuptools 66 needs the `wheel`
package, which a venv does not have. This backend needs nothing, so
`pip install ./sdk/python` works in any venv, with or without a package index.

It builds a pure-Python wheel of the `ai2in` package (with `py.typed`) and an sdist, with the
metadata from pyproject.toml's [project] table.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "ai2in"


def _project() -> Dict[str, Any]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib  # Python 3.11+
        return dict(tomllib.loads(text)["project"])
    except ImportError:  # 3.9, 3.10: the few keys used, from the [project] table
        table = text.split("[project]", 1)[1].split("\n[", 1)[0]
        out: Dict[str, Any] = {}
        for key in ("name", "version", "description", "requires-python"):
            m = re.search(rf'^{key}\s*=\s*"([^"]*)"', table, re.M)
            if m:
                out[key] = m.group(1)
        out["classifiers"] = re.findall(r'^\s*"([^"]+ :: [^"]+)",?$', table, re.M)
        return out


def _metadata(p: Dict[str, Any]) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {p['name']}", f"Version: {p['version']}"]
    if p.get("description"):
        lines.append(f"Summary: {p['description']}")
    if p.get("requires-python"):
        lines.append(f"Requires-Python: {p['requires-python']}")
    lines.append("License: Apache-2.0")
    lines += [f"Classifier: {c}" for c in p.get("classifiers", [])]
    readme = ROOT / "README.md"
    if readme.is_file():
        lines.append("Description-Content-Type: text/markdown")
        return "\n".join(lines) + "\n\n" + readme.read_text(encoding="utf-8")
    return "\n".join(lines) + "\n"


def _package_files() -> List[Path]:
    return sorted(f for f in (ROOT / PACKAGE).rglob("*")
                  if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc")


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _dist_info(p: Dict[str, Any]) -> Tuple[str, Dict[str, bytes]]:
    name = f"{p['name']}-{p['version']}.dist-info"
    return name, {
        f"{name}/METADATA": _metadata(p).encode(),
        f"{name}/WHEEL": b"Wheel-Version: 1.0\nGenerator: ai2in_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{name}/top_level.txt": f"{PACKAGE}\n".encode(),
    }


def _write_zip(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


# ---- PEP 517 hooks ------------------------------------------------------------------------


def get_requires_for_build_wheel(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str,
                                     config_settings: Optional[Dict[str, Any]] = None) -> str:
    name, files = _dist_info(_project())
    for path, data in files.items():
        out = Path(metadata_directory) / path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    return name


def build_wheel(wheel_directory: str, config_settings: Optional[Dict[str, Any]] = None,
                metadata_directory: Optional[str] = None) -> str:
    p = _project()
    wheel_name = f"{p['name']}-{p['version']}-py3-none-any.whl"
    dist_info, meta = _dist_info(p)
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w") as zf:
        for f in _package_files():
            arc = f.relative_to(ROOT).as_posix()
            data = f.read_bytes()
            _write_zip(zf, arc, data)
            record.append(_record_line(arc, data))
        for arc, data in meta.items():
            _write_zip(zf, arc, data)
            record.append(_record_line(arc, data))
        record.append(f"{dist_info}/RECORD,,")
        _write_zip(zf, f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode())
    return wheel_name


def build_sdist(sdist_directory: str, config_settings: Optional[Dict[str, Any]] = None) -> str:
    p = _project()
    base = f"{p['name']}-{p['version']}"
    files = [ROOT / "pyproject.toml", ROOT / "README.md", Path(__file__)] + _package_files()
    with tarfile.open(os.path.join(sdist_directory, base + ".tar.gz"), "w:gz") as tf:
        for f in files:
            tf.add(f, arcname=f"{base}/{f.relative_to(ROOT).as_posix()}")
        pkg_info = _metadata(p).encode()
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size, info.mtime, info.mode = len(pkg_info), int(time.time()), 0o644
        tf.addfile(info, io.BytesIO(pkg_info))
    return base + ".tar.gz"
