#!/usr/bin/env python3
"""Checks that scripts/install-deps.sh installs everything the build links and the engine runs.

A fresh Debian 12 machine gets exactly the packages install-deps.sh lists (with their
Depends, without Recommends). This script reads the other side from the sources:
  - every -lNAME of the Makefile: the library file the linker would take (the .a for the
    statically linked agent, else the .so) and the package that ships it;
  - every program the engine runs: the first string of each argv array in engine/**/*.c
    (`char *argv[] = {"ip", …}`) and the default OCI runtime of engine/config.c;
  - the compilers the Makefile calls (CC, FUZZ_CC);
and fails, naming each one, when its package is neither listed nor pulled in by a listed
package's Depends. Run by `make test` right after install-deps.sh.

Usage: scripts/check-deps.py [--install-script PATH]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set

ROOT = Path(__file__).resolve().parent.parent


def listed_packages(script: Path) -> Set[str]:
    text = script.read_text()
    pkgs: Set[str] = set()
    for array in ("packages", "test_packages"):  # a test run installs both
        m = re.search(rf"^{array}=\((.*?)^\)", text, re.S | re.M)
        if not m:
            sys.exit(f"check-deps: no {array}=( … ) array in {script}")
        pkgs |= set(re.sub(r"#.*", "", m.group(1)).split())
    for extra in re.findall(r"packages\+=\(([^)]*)\)", text):  # conditional ones (nodejs npm)
        pkgs |= {w for w in extra.split() if not w.startswith('"$')}
    return pkgs


def installed_depends() -> Dict[str, Set[str]]:
    """Package → the packages its Depends and Pre-Depends name (every alternative; a virtual
    name is mapped to the installed packages that provide it)."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${Provides}\t${Depends}, ${Pre-Depends}\n"],
                         capture_output=True, text=True, check=True).stdout
    deps: Dict[str, Set[str]] = {}
    providers: Dict[str, Set[str]] = {}

    def names(field: str) -> List[str]:
        return [re.sub(r"[\s(].*|:.*", "", alt.strip()) for part in field.split(",")
                for alt in part.split("|") if alt.strip()]

    for line in out.splitlines():
        pkg, provides, depends = (line.split("\t") + ["", ""])[:3]
        deps[pkg] = set(names(depends))
        for v in names(provides):
            providers.setdefault(v, set()).add(pkg)
    return {p: {q for d in ds for q in ({d} | providers.get(d, set()))} for p, ds in deps.items()}


def closure(roots: Set[str], deps: Dict[str, Set[str]]) -> Set[str]:
    seen, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo.extend(deps.get(p, ()))
    return seen


def owner(path: str) -> Optional[str]:
    """The package that ships path (following symlinks, e.g. /usr/bin/cc → gcc-12)."""
    candidates = [path, os.path.realpath(path)]
    # merged /usr: dpkg may know /usr/sbin/ip as /sbin/ip or /bin/ip
    base = os.path.basename(path)
    candidates += [f"/{d}/{base}" for d in ("bin", "sbin", "usr/bin", "usr/sbin")]
    for p in dict.fromkeys(candidates):
        r = subprocess.run(["dpkg-query", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0].split(",")[0].strip()
    return None


def makefile_libs() -> Dict[str, bool]:
    """-lNAME of the Makefile → whether it is linked statically (the agent's libraries)."""
    text = (ROOT / "Makefile").read_text()
    static: Set[str] = set()
    for var in ("AGENT_LIBS", "ZMQ_STATIC_LIBS"):
        m = re.search(rf"^{var}\s*:?=(.*)$", text, re.M)
        static |= set(re.findall(r"-l([\w+.-]+)", m.group(1))) if m else set()
    return {lib: lib in static for lib in sorted(set(re.findall(r"(?<![\w-])-l([\w+.-]+)", text)))}


def library_file(lib: str, static: bool) -> Optional[str]:
    cc = shutil.which("cc") or "gcc"
    for suffix in ((".a",) if static else (".so", ".a")):
        p = subprocess.run([cc, f"-print-file-name=lib{lib}{suffix}"], capture_output=True, text=True).stdout.strip()
        if os.path.isabs(p) and os.path.exists(p):
            return os.path.normpath(p)
    return None


def engine_programs() -> Set[str]:
    progs: Set[str] = set()
    for f in glob.glob(str(ROOT / "engine" / "**" / "*.c"), recursive=True):
        progs |= set(re.findall(r"\*\s*\w+\[\]\s*=\s*\{\s*\"([a-z][\w.+-]*)\"", Path(f).read_text()))
    m = re.search(r'S\("runtime",\s*runtime,\s*"([^"]+)"', (ROOT / "engine" / "config.c").read_text())
    if m:
        progs.add(m.group(1))
    return progs


def makefile_compilers() -> Set[str]:
    text = (ROOT / "Makefile").read_text()
    return {m.group(2) for m in re.finditer(r"^(CC|FUZZ_CC)\s*[?:]?=\s*(\S+)", text, re.M)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--install-script", type=Path, default=ROOT / "scripts" / "install-deps.sh")
    args = ap.parse_args()

    listed = listed_packages(args.install_script)
    provided = closure(listed, installed_depends())
    problems: List[str] = []

    def need(what: str, path: Optional[str], hint: str) -> None:
        if path is None:
            problems.append(f"{what}: not found on this machine ({hint})")
            return
        pkg = owner(path)
        if pkg is None:
            problems.append(f"{what}: {path} belongs to no Debian package")
        elif pkg not in provided:
            problems.append(f"{what}: {path} comes from package {pkg}, which {args.install_script.name} "
                            f"does not install (add {pkg})")

    for lib, static in makefile_libs().items():
        need(f"library -l{lib}{' (static)' if static else ''}", library_file(lib, static),
             "install its -dev package and list it in install-deps.sh")
    for prog in sorted(engine_programs() | makefile_compilers()):
        need(f"program {prog}", shutil.which(prog), "install its package and list it in install-deps.sh")

    if problems:
        print("check-deps: install-deps.sh misses what the build or the engine needs:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    print(f"check-deps: {len(makefile_libs())} libraries and {len(engine_programs() | makefile_compilers())} "
          f"programs all come from the {len(listed)} packages of install-deps.sh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
