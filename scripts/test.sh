#!/usr/bin/env bash
# `make test` (and CI): installs what is missing, builds the normal and sanitizer builds,
# runs the C unit tests of both, a short run of every fuzzer (scripts/fuzz.sh; set
# AI2IN_FUZZ_SECONDS for longer) and the Python SDK's offline tests, makes sure the base
# template exists, runs the JS SDK's tests (against the real engine), then the pytest
# integration suite against the real engine, once with the sanitizer build and once with the
# normal one, the runtime-neutral part of it again on gVisor (runsc), and the isolation suite
# (tests/security).
set -euo pipefail
cd "$(dirname "$0")/.."
# The engines the tests start turn IPv4 forwarding on (sandboxes' egress): give the host back
# its own setting whatever happens.
ip_forward=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || true)
restore_ip_forward() { [ -z "$ip_forward" ] || echo "$ip_forward" > /proc/sys/net/ipv4/ip_forward 2>/dev/null || true; }
trap restore_ip_forward EXIT
scripts/install-deps.sh --test --gvisor
scripts/check-deps.py   # install-deps.sh lists every library linked and program run
make -j"$(nproc)" all unit
make -j"$(nproc)" SANITIZE=1 all unit
echo "== fuzzing (libFuzzer + ASan/UBSan: seed corpora, then ${AI2IN_FUZZ_SECONDS:-30} s per target)"
scripts/fuzz.sh "${AI2IN_FUZZ_SECONDS:-30}"
build/bin/ai2ind template build base
/usr/bin/python3 -m pip install --quiet --no-build-isolation --no-deps --break-system-packages ./sdk/python >/dev/null 2>&1 \
  || /usr/bin/python3 -m pip install --quiet --no-build-isolation --no-deps ./sdk/python
echo "== Python SDK unit tests (offline), the dependency check's tests"
/usr/bin/python3 -m pytest -q -p no:cacheprovider sdk/python/tests tests/tools
echo "== JS SDK (npm ci, build, typecheck, node --test against the real engine, packed-tarball consumer check)"
sdk/js/scripts/test.sh
echo "== integration tests (sanitizer build)"
AI2IND=build-san/bin/ai2ind /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration
echo "== integration tests"
/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration
echo "== integration tests on gVisor (every sandbox on runsc: the files whose behaviour must not depend on the runtime)"
# (test_commands.py is not in it yet: two of its timing tests are flaky on gVisor, see issue 16.)
AI2IN_TEST_RUNTIME=runsc /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration/test_files.py \
  tests/integration/test_code.py tests/integration/test_pty.py
echo "== isolation suite (probes from inside real sandboxes)"
/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/security
