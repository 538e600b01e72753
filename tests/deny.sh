#!/usr/bin/env bash
# cargo deny over the workspace (deny.toml): licenses, bans (duplicate
# versions are warnings, wildcards are errors) and sources, always; the
# RustSec advisories when the advisory database can be had.
#
#   ./tests/deny.sh
#
# cargo-deny is installed, pinned, into tests/.tools. The advisory
# database is a git repository on GitHub: where it cannot be fetched (this
# project's machines and CI reach only the package registries), a copy
# already in $CARGO_HOME/advisory-dbs is used as it is, and without one the
# advisories are reported as not checked. SLRGOV_DENY_ADVISORIES=required
# makes that an error.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

tools="$root/tests/.tools"
deny_version="0.20.2"
stamp="$tools/.cargo-deny.version"
if [ ! -x "$tools/bin/cargo-deny" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$deny_version" ]; then
  # About 2¼ minutes cold on the 2-core machine (3½ beside another build).
  echo "==> installing cargo-deny $deny_version into tests/.tools (a few minutes, once)"
  cargo install --locked --quiet "cargo-deny@$deny_version" --root "$tools" --force
  echo "$deny_version" > "$stamp"
fi
deny=("$tools/bin/cargo-deny" --color never)

echo "==> cargo deny: licenses, bans, sources"
"${deny[@]}" --locked check --hide-inclusion-graph licenses bans sources

echo "==> cargo deny: advisories"
dbs="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
if timeout 120 "${deny[@]}" fetch db >/dev/null 2>&1; then
  "${deny[@]}" --locked --offline check advisories
elif compgen -G "$dbs/advisory-db-*/crates" >/dev/null; then
  echo "the advisory database could not be fetched; using the copy in $dbs"
  "${deny[@]}" --locked --offline check advisories
elif [ "${SLRGOV_DENY_ADVISORIES:-}" = required ]; then
  echo "advisories: the RustSec advisory database could not be fetched, and there is no copy in $dbs" >&2
  exit 1
else
  echo "advisories NOT CHECKED: the RustSec advisory database (a GitHub repository) cannot be"
  echo "fetched from here and there is no copy in $dbs; run tests/deny.sh where GitHub is reachable"
fi
