#!/usr/bin/env bash
# Makes every program on this machine resolve *.localhost to loopback (RFC 6761), so that a
# preview URL such as http://8000-sbx_….localhost:7301/ opens from Python's urllib, Node's
# fetch, wget and everything else that asks glibc, not only from curl and Chromium (which
# resolve *.localhost themselves).
#
# The standard way: systemd's NSS module `myhostname` (Debian package libnss-myhostname) in
# the hosts line of /etc/nsswitch.conf, after `files`, so /etc/hosts still wins and DNS still
# answers every other name. The package's own scripts add it on install and take it out on
# removal; this script records what it did in STATE so that `disable` undoes exactly that and
# never removes a package or entry the machine had before.
#
#   scripts/localhost-names.sh enable    install/enable (idempotent; run by install-deps.sh)
#   scripts/localhost-names.sh disable   undo what enable did
#   scripts/localhost-names.sh status    exit 0 when *.localhost resolves to loopback
set -euo pipefail

STATE=${AI2IN_LOCALHOST_NAMES_STATE:-/var/lib/ai2in/localhost-names.done}
NSS=/etc/nsswitch.conf
PROBE=ai2in-probe.localhost

resolves() {
  getent ahosts "$PROBE" 2>/dev/null | awk '{print $1}' | grep -qE '^(127\.0\.0\.1|::1)$'
}

has_entry() {
  grep -qE '^hosts:[^#]*\smyhostname(\s|$|\[)' "$NSS"
}

installed() {
  dpkg-query -W -f='${Status}' libnss-myhostname 2>/dev/null | grep -q "install ok installed"
}

enable() {
  if resolves; then
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "localhost-names: *.localhost does not resolve here; run as root: sudo $0 enable" >&2
    return 1
  fi
  mkdir -p "$(dirname "$STATE")"
  if ! installed; then
    echo "localhost-names: installing libnss-myhostname so that *.localhost resolves to loopback for every program"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libnss-myhostname >/dev/null
    echo package >>"$STATE"
  fi
  if ! has_entry; then
    # After `files` (or first): /etc/hosts keeps precedence, DNS still answers the rest.
    if grep -qE '^hosts:.*\sfiles(\s|$)' "$NSS"; then
      sed -E -i '/^hosts:/ s/(\sfiles)(\s|$)/\1 myhostname\2/' "$NSS"
    else
      sed -E -i '/^hosts:/ s/^hosts:(\s*)/hosts:\1myhostname /' "$NSS"
    fi
    echo nsswitch >>"$STATE"
  fi
  if ! resolves; then
    echo "localhost-names: *.localhost still does not resolve; check the hosts line of $NSS:" >&2
    grep '^hosts:' "$NSS" >&2 || true
    return 1
  fi
  echo "localhost-names: *.localhost now resolves to loopback ($(grep '^hosts:' "$NSS" | tr -s ' ')); undo: $0 disable"
}

disable() {
  if [ ! -f "$STATE" ]; then
    echo "localhost-names: nothing to undo (this script changed nothing here)"
    return 0
  fi
  if grep -qx nsswitch "$STATE"; then
    sed -E -i '/^hosts:/ s/\smyhostname(\s|$)/\1/' "$NSS"
  fi
  if grep -qx package "$STATE" && installed; then
    DEBIAN_FRONTEND=noninteractive apt-get remove -y -q libnss-myhostname >/dev/null
  fi
  rm -f "$STATE"
  echo "localhost-names: undone ($(grep '^hosts:' "$NSS" | tr -s ' '))"
}

case "${1:-}" in
  enable) enable ;;
  disable) disable ;;
  status) resolves ;;
  *) echo "usage: $0 enable|disable|status" >&2; exit 2 ;;
esac
