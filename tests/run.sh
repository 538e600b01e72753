#!/usr/bin/env bash
# Runs every test of slr-governor: unit tests, the store contract suite on
# SQLite and Postgres, and the end-to-end suite against the real binary.
#
#   ./tests/run.sh                 # everything
#   ./tests/run.sh -E 'test(grpcurl)'   # extra arguments go to cargo nextest
#
# Needs: Rust with cargo-nextest (falls back to cargo test), Python 3 with
# venv, Node.js 20 with npm, root for apt-get (Chromium, installed once), and
# a Postgres the tests may create databases in, at DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

# What the tests need beyond Rust: grpcurl and moto, in a local venv.
venv="$root/tests/.venv"
stamp="$venv/.requirements.sha256"
want="$(cat tests/requirements.txt tests/deploy/requirements.txt | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/grpcurl" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing test tools into tests/.venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
  echo "$want" > "$stamp"
fi
export SLRGOV_TEST_GRPCURL="$venv/bin/grpcurl"
export PATH="$venv/bin:$PATH"

# Postgres must answer before the suites start.
echo "==> waiting for Postgres at ${DATABASE_URL%%\?*}"
for attempt in $(seq 1 30); do
  if python3 - "$DATABASE_URL" <<'PY' 2>/dev/null
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
socket.create_connection((u.hostname or "127.0.0.1", u.port or 5432), timeout=1).close()
PY
  then break; fi
  [ "$attempt" = 30 ] && { echo "Postgres is not reachable at $DATABASE_URL" >&2; exit 1; }
  sleep 1
done

# The example portal's browser test (tests/e2e/tests/e2e/portal.rs) needs
# Debian's Chromium, the page's node_modules and a build of the page; each
# step runs only when its result is missing or stale.
echo "==> preparing the example portal (examples/portal)"
bash tests/portal/setup.sh

# The end-to-end suite starts the real binary: build it in the test
# profile, with the IAM fault layer (SLRGOV_TEST_IAM_FAULTS) that only test
# builds carry. The same features for the build and the run, so that the
# run does not rebuild the binary without them.
features=(--features slr-governor/test-faults)
echo "==> building"
cargo build --workspace --all-targets --locked "${features[@]}"

echo "==> testing"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "${features[@]}" "$@"
else
  cargo test --workspace --locked --no-fail-fast "${features[@]}" "$@"
fi
