#!/usr/bin/env bash
# One IAM rate per account across replicas (issue 16, item 4): N replicas of
# the real server on one fresh Postgres database, in front of moto, with an
# "IAM" (the fault layer's `throttle_above`: a GCRA per account in a
# Postgres database of its own, so every replica's calls count together)
# that answers Throttling above the rate. Runs two cases in one run:
#
#   local  SLRGOV_RATE_SHARING=local: each replica its own bucket per
#          account (the behaviour before; N replicas make up to N x the rate)
#   auto   SLRGOV_RATE_SHARING=auto: one bucket per account in Postgres,
#          shared by every replica
#   batch  (only when asked: SLRGOV_BENCH_CASES="batch") auto, and one
#          BatchEnsureLinkedRoles over accounts/- instead of the callers
#
# and prints one line per case, e.g.
#   case=auto replicas=3 instances=1000 accounts=10 rate=5 burst=5 iam_burst=7
#     elapsed_s=61.0 floor_s=59.0 ratio=1.03 surfaced_throttling=0
#     surfaced_errors=0 iam_throttled=0 iam_calls=3000 duplicate_roles=0 missing_roles=0
#
# The driver is tests/e2e/examples/iam_rate.rs (what it measures is
# described there and in docs/benchmarks.md).
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres tests/bench/iam_rate.sh
#   SLRGOV_BENCH_QUICK=1 tests/bench/iam_rate.sh   # 1,000 instances over 10 accounts
#
# Settings (environment): DATABASE_URL (an admin URL that may create
# databases and the role slrgov_app), SLRGOV_BENCH_QUICK=1,
# SLRGOV_BENCH_ACCOUNTS, SLRGOV_BENCH_INSTANCES, SLRGOV_BENCH_RATE,
# SLRGOV_BENCH_BURST, SLRGOV_BENCH_IAM_BURST, SLRGOV_BENCH_REPLICAS,
# SLRGOV_BENCH_IN_FLIGHT, SLRGOV_BENCH_CASES ("local auto"; "batch"),
# SLRGOV_BENCH_BATCH_CONCURRENCY, SLRGOV_BENCH_RECONCILE_INTERVAL (0: off),
# SLRGOV_BENCH_NO_BUILD=1 (use the binaries already built). The rate may
# be a fraction: moto (one Python process) serves about 50 IAM calls a
# second here, so 50 accounts must stay under 1 call/s each.
#
# The servers are the debug build with the `test-faults` feature (the one
# the test suite uses): at these rates the service's CPU is not what limits.
set -euo pipefail
{

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if [ "${SLRGOV_BENCH_QUICK:-}" = 1 ]; then
  export SLRGOV_BENCH_ACCOUNTS="${SLRGOV_BENCH_ACCOUNTS:-10}"
  export SLRGOV_BENCH_INSTANCES="${SLRGOV_BENCH_INSTANCES:-1000}"
  export SLRGOV_BENCH_RATE="${SLRGOV_BENCH_RATE:-5}"
else
  # The issue's size: one batch over 50 accounts, at a rate moto keeps up
  # with (about 50 IAM calls/s in all here; see docs/benchmarks.md).
  export SLRGOV_BENCH_ACCOUNTS="${SLRGOV_BENCH_ACCOUNTS:-50}"
  export SLRGOV_BENCH_INSTANCES="${SLRGOV_BENCH_INSTANCES:-10000}"
  export SLRGOV_BENCH_RATE="${SLRGOV_BENCH_RATE:-0.75}"
  export SLRGOV_BENCH_BURST="${SLRGOV_BENCH_BURST:-2}"
  export SLRGOV_BENCH_IAM_BURST="${SLRGOV_BENCH_IAM_BURST:-4}"
  export SLRGOV_BENCH_CASES="${SLRGOV_BENCH_CASES:-batch}"
  export SLRGOV_BENCH_BATCH_CONCURRENCY="${SLRGOV_BENCH_BATCH_CONCURRENCY:-100}"
fi
export SLRGOV_BENCH_REPLICAS="${SLRGOV_BENCH_REPLICAS:-3}"

if [ ! -x tests/.venv/bin/moto_server ]; then
  echo "tests/.venv is missing: python3 -m venv tests/.venv && tests/.venv/bin/pip install -q -r tests/requirements.txt" >&2
  exit 1
fi
target_dir="${CARGO_TARGET_DIR:-$root/target}"
if [ "${SLRGOV_BENCH_NO_BUILD:-}" != 1 ]; then
  echo "building the server (test-faults) and the driver ..." >&2
  cargo build -q -p slr-governor -p slrgov-e2e --bin slr-governor --example iam_rate \
    --features slr-governor/test-faults >&2
fi
export SLRGOV_BIN="${SLRGOV_BIN:-$target_dir/debug/slr-governor}"

echo "$(date -u +%FT%TZ) replicas=$SLRGOV_BENCH_REPLICAS instances=$SLRGOV_BENCH_INSTANCES accounts=$SLRGOV_BENCH_ACCOUNTS rate=$SLRGOV_BENCH_RATE" >&2
started="$(date +%s)"
"$target_dir/debug/examples/iam_rate"
echo "done in $(( $(date +%s) - started ))s" >&2
exit 0
}
