#!/usr/bin/env bash
# Everything `make test` needs for the JS SDK, from a fresh clone: installs the locked dev
# dependencies, builds dist/ (ESM, CommonJS, .d.ts), type-checks, then runs the node:test
# suite: offline tests, the real-engine tests (one ai2ind per test file, started and torn
# down by the tests; needs root), the product page's snippets verbatim, and the package check
# (npm pack → a consumer project installs the tarball → tsc --noEmit on the seed's calls).
#
# Environment: AI2IND (engine binary, default <repo>/build/bin/ai2ind),
# AI2IN_TEST_TEMPLATE_DIR (default /var/lib/ai2in/templates), AI2IN_TEST_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "sdk/js: node and npm are needed (Node.js >= 18)" >&2
  exit 1
fi
repo="$(cd ../.. && pwd)"
export AI2IND="${AI2IND:-$repo/build/bin/ai2ind}"
case "$AI2IND" in /*) ;; *) AI2IND="$repo/$AI2IND" ;; esac

echo "== JS SDK: npm ci"
npm ci --no-audit --no-fund --loglevel=error
echo "== JS SDK: build"
npm run --silent build
echo "== JS SDK: typecheck"
npm run --silent typecheck
echo "== JS SDK: tests (engine $AI2IND)"
# Two test files at once (each has its own engine); the flag exists from Node 20.10 on.
concurrency=()
if node --help | grep -q -- --test-concurrency; then concurrency=(--test-concurrency=2); fi
node --test "${concurrency[@]}" test/*.test.mjs
