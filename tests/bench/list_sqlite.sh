#!/usr/bin/env bash
# ListInstances on the embedded SQLite engine at two registry sizes
# (docs/benchmarks.md, "The registry at scale"): the release service on a
# fresh SQLite file, one instance made through the API as the template,
# tests/bench/seed.sh up to each size in one account, then the load
# generator walks that account's pages (page_size 100, 1 in flight) for
# SLRGOV_BENCH_SECONDS. Prints one line per size and the ratio:
#   case=list_instances_sqlite_<L>_vs_<S> ratio=<p50 at S / p50 at L> p50_ms=.. p99_ms=..
# (1.00: size costs nothing; the goal "L at most 1.5x S" is ratio >= 0.67).
#
#   tests/bench/list_sqlite.sh            # sizes "1000 100000"
#   SLRGOV_BENCH_SQLITE_SIZES="1000 100000" SLRGOV_BENCH_SECONDS=5 tests/bench/list_sqlite.sh
#
# Needs the release binaries (cargo build --release -p slr-governor, and
# -p slrgov-e2e --example loadgen), sqlite3 and grpcurl (tests/.venv).
set -euo pipefail
{
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
sizes="${SLRGOV_BENCH_SQLITE_SIZES:-1000 100000}"
seconds="${SLRGOV_BENCH_SECONDS:-5}"
warmup="${SLRGOV_BENCH_WARMUP:-1}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
service_bin="$target_dir/release/slr-governor"
loadgen_bin="$target_dir/release/examples/loadgen"
grpcurl="${SLRGOV_TEST_GRPCURL:-$root/tests/.venv/bin/grpcurl}"
for bin in "$service_bin" "$loadgen_bin" "$grpcurl"; do
  [ -x "$bin" ] || { echo "$bin is missing" >&2; exit 1; }
done
out="$(mktemp -d -t slrgov-list-sqlite.XXXXXX)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$out"' EXIT
pin_server=(taskset -c 1)
pin_loadgen=(taskset -c 0)

start() {
  env -u SLRGOV_CONFIG -u SLRGOV_DATABASE_URL SLRGOV_DATA_DIR="$out/data" SLRGOV_LISTEN=127.0.0.1:0 \
    SLRGOV_LOG=info SLRGOV_RECONCILE_INTERVAL=0 AWS_EC2_METADATA_DISABLED=true \
    "${pin_server[@]}" "$service_bin" > "$out/service.log" 2>&1 &
  pid=$!
  addr=""
  for _ in $(seq 1 300); do
    addr="$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$out/service.log" | head -n1)"
    [ -n "$addr" ] && break
    sleep 0.1
  done
  # Serving once the database is open (migrated).
  for _ in $(seq 1 300); do
    [ -n "$addr" ] && "$grpcurl" -plaintext "$addr" grpc.health.v1.Health/Check 2>/dev/null |
      grep -q '"SERVING"' && return 0
    sleep 0.1
  done
  cat "$out/service.log" >&2
  exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

start
"$grpcurl" -plaintext -d '{"account_id": "100000000042", "account": {"display_name": "template"}}' \
  "$addr" slrgov.v1.AccountService/CreateAccount >/dev/null
"$grpcurl" -plaintext -d '{"parent": "accounts/100000000042", "instance_id": "0e5a0000-0000-4000-8000-000000000000", "instance": {"region": "us-east-1", "features": {"outbound_campaigns": true, "lex_bots": ["arn:aws:lex:us-east-1:100000000042:bot:Template"]}}}' \
  "$addr" slrgov.v1.InstanceService/CreateInstance >/dev/null
stop

first=""
for size in $sizes; do
  "$root/tests/bench/seed.sh" "sqlite://$out/data/slr-governor.db" 1 "$size"
  start
  line="$("${pin_loadgen[@]}" "$loadgen_bin" --label "sqlite-$size" --addr "$addr" --method list \
    --concurrency 1 --duration "$seconds" --warmup "$warmup" --page-size 100 accounts/500000000001)"
  stop
  echo "$line" >&2
  p50="$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["p50_us"] / 1000, 2))' "$line")"
  p99="$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["p99_us"] / 1000, 2))' "$line")"
  echo "size=$size p50_ms=$p50 p99_ms=$p99" >&2
  if [ -z "$first" ]; then
    first="$size $p50"
  else
    read -r small small_p50 <<< "$first"
    ratio="$(python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")' "$small_p50" "$p50")"
    echo "case=list_instances_sqlite_${size}_vs_${small} ratio=$ratio p50_ms=$p50 p99_ms=$p99"
  fi
done
exit 0
}
