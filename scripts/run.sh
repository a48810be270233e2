#!/usr/bin/env bash
# `make run`: makes sure the base template exists (building it with visible progress the
# first time) and starts the engine in the foreground. Extra settings: AI2IN_* variables or
# /etc/ai2in/ai2ind.conf (see `build/bin/ai2ind --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "make run: needs root (namespaces, mounts, cgroups)" >&2; exit 1; fi
scripts/install-deps.sh
bin=build/bin/ai2ind
$bin template build base
echo
echo "Starting ai2ind (it prints how to make an API key once it is ready; Ctrl-C stops it)."
echo
exec $bin serve
