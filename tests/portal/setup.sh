#!/usr/bin/env bash
# Everything the browser test of the example portal (tests/e2e/tests/e2e/portal.rs)
# needs: Debian's Chromium, node_modules of examples/portal, and a build of the
# page (buf generate + typecheck + esbuild into examples/portal/dist).
# Idempotent, and quick when nothing changed: each step runs only when its
# result is missing or older than what it is made from.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
portal="$root/examples/portal"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "tests/portal/setup.sh: node and npm are needed (Node.js 20 or newer)" >&2
  exit 1
fi

# The browser. Playwright cannot download its own here; the test drives
# Debian's through executablePath.
if [ ! -x /usr/bin/chromium ]; then
  echo "portal: installing chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q chromium >/dev/null
  }
fi

cd "$portal"

# node_modules: npm ci when npm's record of the installed tree is missing or
# older than the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "portal: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

# The page: rebuilt when any of its sources or the protos is newer than it.
stale=yes
if [ -f dist/portal.js ] && [ -f dist/index.html ]; then
  newer="$(find src index.html style.css package.json package-lock.json buf.gen.yaml tsconfig.json \
    "$root/proto" -path src/gen -prune -o -type f -newer dist/portal.js -print -quit)"
  [ -z "$newer" ] && stale=no
fi
if [ "$stale" = yes ]; then
  echo "portal: npm run build"
  npm run --silent build
fi
echo "portal: ready ($(/usr/bin/chromium --version 2>/dev/null | head -1), node $(node --version))"
