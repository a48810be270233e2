#!/usr/bin/env bash
# Installs the Debian packages AI2IN needs. Idempotent: does nothing when all are present.
# Needs root (apt-get).
#
#   scripts/install-deps.sh          to build and run the engine (make, make run)
#   scripts/install-deps.sh --test   and to test it too (make test, make fuzz, unit tests)
#   scripts/install-deps.sh --gvisor and gVisor's runsc, for sandboxes with runtime "gvisor"
#                                    (combines with --test; see install_runsc below)
set -euo pipefail

# Build and run: the compiler, the libraries the engine and the agent link (libpq: the
# PostgreSQL store, whose server is needed only by whoever runs the database; libipset: the
# sandboxes' address sets), and the programs the engine runs (runc, mmdebstrap with gpg for
# its keyrings, ip, iptables, ipset, mkfs.btrfs for the sandboxes' disk volume).
packages=(
  gcc make pkg-config
  libmicrohttpd-dev libjansson-dev libsqlite3-dev libpq-dev libssl-dev libipset-dev
  libzmq3-dev libsodium-dev libpgm-dev libnorm-dev libxml2-dev libicu-dev zlib1g-dev liblzma-dev
  libbsd-dev libmd-dev
  runc mmdebstrap gpg iproute2 iptables ipset util-linux btrfs-progs
  python3 python3-venv
)

# Tests: unit tests (cmocka), fuzzers (clang, libFuzzer), the integration suites (pytest and
# the HTTP clients they open preview URLs with), the benchmarks (wrk), the JS SDK (node), and
# a PostgreSQL server the store's tests start a throwaway instance of (scripts/test-postgres.sh),
# and the openssl CLI test_tls.py makes its certificates with.
test_packages=(
  libcmocka-dev postgresql openssl
  clang libclang-rt-14-dev
  python3-pytest python3-setuptools python3-pip
  curl wget wrk python3-requests
  chromium
)

# gVisor: bookworm's runsc (2022-12-19) rejects the AT_NO_AUTOMOUNT flag coreutils passes to
# statx (ls, stat and cp fail inside) and has no systrap platform; bookworm-backports' has
# both. The backports suite is added the standard Debian way (a deb822 sources file) and
# pinned so that runsc, and only runsc, comes from it (every other package stays at
# backports' default priority, 100: never installed from there unless asked by name).
RUNSC_MIN=0.0~20240729
BACKPORTS_SOURCES=/etc/apt/sources.list.d/ai2in-bookworm-backports.sources
BACKPORTS_PIN=/etc/apt/preferences.d/ai2in-runsc
want_runsc=no
runsc_ok() {
  local v
  v=$(dpkg-query -W -f='${Status} ${Version}' runsc 2>/dev/null) || return 1
  [[ $v == "install ok installed "* ]] && dpkg --compare-versions "${v##* }" ge "$RUNSC_MIN"
}
install_runsc() {
  runsc_ok && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: runsc >= $RUNSC_MIN (bookworm-backports) is missing; as root: sudo $0 --gvisor" >&2
    return 1
  fi
  echo "install-deps: installing runsc from bookworm-backports (pinned: only runsc comes from there)"
  printf '%s\n' "Types: deb" "URIs: http://deb.debian.org/debian" "Suites: bookworm-backports" "Components: main" \
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" >"$BACKPORTS_SOURCES"
  printf '%s\n' "# AI2IN (scripts/install-deps.sh --gvisor): runsc from bookworm-backports, nothing else." \
    "Package: runsc" "Pin: release n=bookworm-backports" "Pin-Priority: 990" >"$BACKPORTS_PIN"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends runsc
  runsc_ok || { echo "install-deps: runsc from bookworm-backports is older than $RUNSC_MIN" >&2; return 1; }
}

for arg in "$@"; do
  case "$arg" in
  --test)
    packages+=("${test_packages[@]}")
    # Node.js >= 18 and npm for the JS SDK: whatever node the machine has (e.g. NodeSource's,
    # which bundles npm and conflicts with Debian's npm package), else Debian's.
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
      packages+=(nodejs npm)
    fi
    ;;
  --gvisor) want_runsc=yes ;;
  *)
    echo "usage: $0 [--test] [--gvisor]" >&2
    exit 2
    ;;
  esac
done
if [ "$want_runsc" = yes ]; then
  install_runsc
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Preview URLs (http://{port}-{id}.localhost:7301/) from every program, not only curl and
# Chromium: *.localhost resolved by glibc (libnss-myhostname; undo: localhost-names.sh disable).
localhost_names() {
  if [ "$(id -u)" = 0 ]; then
    "$(dirname "$0")/localhost-names.sh" enable
  elif ! "$(dirname "$0")/localhost-names.sh" status; then
    echo "install-deps: note: *.localhost does not resolve for all programs; as root: $(dirname "$0")/localhost-names.sh enable" >&2
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  localhost_names
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing Debian packages: ${missing[*]}" >&2
  echo "install-deps: install them as root: sudo $0   (or run make as root)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# Installing Debian's postgresql makes and starts a cluster (15/main on port 5432); the tests
# start throwaway servers of their own, and nothing of ours may be left running.
if printf '%s\n' "${missing[@]}" | grep -qx postgresql && command -v pg_lsclusters >/dev/null; then
  pg_lsclusters -h | awk '$4 == "online" { print $1, $2 }' | while read -r version cluster; do
    echo "install-deps: stopping the PostgreSQL cluster $version/$cluster the package started (the tests run their own)"
    pg_ctlcluster "$version" "$cluster" stop || true
  done
fi
localhost_names
