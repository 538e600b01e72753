#!/usr/bin/env bash
# RPC throughput and latency of the real slr-governor against a bare
# tonic + sqlx baseline (tests/e2e/examples/baseline.rs) serving the same
# InstanceService over the same Postgres database. See docs/benchmarks.md,
# "RPC throughput and latency vs a bare tonic+sqlx baseline".
#
#   tests/bench/rpc.sh
#   SLRGOV_BENCH_QUICK=1 tests/bench/rpc.sh   # under 3 minutes, one line per case
#
# What it does: builds both servers and the load generator (release), creates
# a fresh database owned by the ordinary role slrgov_app, runs
# `slr-governor migrate`, starts the real service with a static admin token
# (SLRGOV_AUTH_TOKENS_FILE) and, when its binary supports
# OTEL_EXPORTER_OTLP_ENDPOINT and tests/otlp/receiver.py exists, telemetry to
# that receiver; seeds one account and SLRGOV_BENCH_INSTANCES instances
# through the service's gRPC API; starts the baseline on the same database;
# checks that both return the same GetInstance and GetRegion; then runs
# interleaved rounds (baseline, service, baseline, service, ...) of every
# method x in-flight count, and prints a markdown table of medians over the
# rounds, with the service/baseline ratios, and the idle and peak RSS of both
# servers.
#
# The methods: `get` (GetInstance: one SELECT by primary key in both),
# `update` (UpdateInstance of instance_alias), and `noop`: GetRegion of
# regions/us-east-1, which does no database work on either side. The service
# answers it from its in-memory region table behind its whole middleware
# stack (gRPC-Web, telemetry, auth, admission, the request context and
# handler wrapper); the baseline parses the name and answers from a static
# table with bare tonic. Their ratio is the cost of the middleware.
#
# Then the ListInstances size case (SLRGOV_BENCH_LIST_SIZES, e.g.
# "10000 1000000"): for each registry size in turn it tops the bench account
# up to that many instances with one INSERT ... SELECT generate_series (as
# the admin role; the rows copy the features and region of an instance made
# through the API), VACUUM ANALYZE, and runs ListInstances of
# accounts/<bench account>, page_size 100, against the service only; each
# load-generator task walks the pages with next_page_token and starts over
# after the last. The result: p50 at the smallest size over p50 at the
# largest (1.00 = size costs nothing; 0.83 = the large registry is 1.2x
# slower).
#
# SLRGOV_BENCH_QUICK=1 changes the defaults to three rounds of 2 s after
# 0.5 s of warm-up (the median of three short rounds shrugs off one round
# that another process disturbed; one round of 5 s could not), and prints
# exactly one line per case to stdout (progress goes to stderr), e.g.
#   case=get_instance@16 ratio=0.64 p50_ms=3.62 p99_ms=9.53
# ratio: the service's rps over the baseline's (for list_instances_<L>_vs_<S>:
# p50 at S instances over p50 at L); p50_ms and p99_ms: the service's (for
# the list case, at L instances).
#
# The load generator exits non-zero when any request fails (or answers the
# wrong instance), and this script stops there: a run never measures errors.
#
# Settings (environment):
#   DATABASE_URL                   admin URL to create the database from
#                                  (default postgres://postgres@127.0.0.1:5432/postgres);
#                                  a superuser: the seed skips triggers
#                                  (session_replication_role) and checkpoints
#   SLRGOV_BENCH_ROUNDS            rounds per target and case (default 3)
#   SLRGOV_BENCH_SECONDS           measured seconds per round (default 10)
#   SLRGOV_BENCH_WARMUP            warm-up seconds per round (default 2)
#   SLRGOV_BENCH_METHODS           default "get update noop" (" ", a space:
#                                  none, e.g. for a long ListInstances walk)
#   SLRGOV_BENCH_CONCURRENCY       in-flight requests, default "1 16"
#   SLRGOV_BENCH_INSTANCES         instances seeded and hit in turn (default 32)
#   SLRGOV_BENCH_LIST_SIZES        registry sizes of the ListInstances case,
#                                  ascending (default "10000 1000000"; empty:
#                                  no list case)
#   SLRGOV_BENCH_LIST_CONCURRENCY  in-flight ListInstances (default 1)
#   SLRGOV_BENCH_QUICK=1           the quick mode above (the rounds' defaults
#                                  become 3 rounds of 2 s, 0.5 s warm-up)
#   SLRGOV_BENCH_SERVER_CPUS       taskset CPU list of both servers (default 1;
#                                  empty: no pinning)
#   SLRGOV_BENCH_LOADGEN_CPUS      taskset CPU list of the load generator
#                                  (default 0; empty: no pinning)
#   SLRGOV_BENCH_SERVICE_ENV       extra "KEY=VALUE ..." for the real service
#                                  (e.g. to compare a setting)
#   SLRGOV_BENCH_BASELINE_ARGS     extra baseline flags, e.g. "--update-shape store"
#   SLRGOV_BENCH_NO_AUTH=1         run the service without the tokens file
#   SLRGOV_BENCH_NO_TELEMETRY=1    run the service without the OTLP export
#   SLRGOV_BENCH_TRACES_SAMPLER    the service's OTEL_TRACES_SAMPLER while it
#                                  exports (default parentbased_traceidratio)
#   SLRGOV_BENCH_TRACES_RATIO      its OTEL_TRACES_SAMPLER_ARG (default 0.01:
#                                  1 in 100 traces, as a busy service samples;
#                                  1 traces every RPC)
#   SLRGOV_BENCH_NO_BUILD=1        use the binaries already in target/release
#   SLRGOV_BENCH_KEEP=1            keep the database (it is dropped otherwise)
#   SLRGOV_BENCH_OUT               where logs and results.jsonl go (default: a
#                                  new temporary directory)
#   SLRGOV_BENCH_HOLD=1            after the rounds, keep everything running
#                                  until $SLRGOV_BENCH_OUT/hold is removed, for
#                                  tests/bench/rpc_profile.sh
set -euo pipefail
# The whole script is one compound command, read before it runs: editing the
# file during a run cannot change the run.
{

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

admin_url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
quick="${SLRGOV_BENCH_QUICK:-}"
started_at="$(date +%s)"
if [ "$quick" = 1 ]; then
  rounds="${SLRGOV_BENCH_ROUNDS:-3}"
  seconds="${SLRGOV_BENCH_SECONDS:-2}"
  warmup="${SLRGOV_BENCH_WARMUP:-0.5}"
else
  rounds="${SLRGOV_BENCH_ROUNDS:-3}"
  seconds="${SLRGOV_BENCH_SECONDS:-10}"
  warmup="${SLRGOV_BENCH_WARMUP:-2}"
fi
methods="${SLRGOV_BENCH_METHODS:-get update noop}"
concurrencies="${SLRGOV_BENCH_CONCURRENCY:-1 16}"
instances="${SLRGOV_BENCH_INSTANCES:-32}"
list_sizes="${SLRGOV_BENCH_LIST_SIZES-10000 1000000}"
list_concurrency="${SLRGOV_BENCH_LIST_CONCURRENCY:-1}"
region_name="regions/us-east-1"
server_cpus="${SLRGOV_BENCH_SERVER_CPUS-1}"
loadgen_cpus="${SLRGOV_BENCH_LOADGEN_CPUS-0}"
out="${SLRGOV_BENCH_OUT:-$(mktemp -d -t slrgov-bench.XXXXXX)}"
mkdir -p "$out"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
grpcurl="${SLRGOV_TEST_GRPCURL:-$root/tests/.venv/bin/grpcurl}"
[ -x "$grpcurl" ] || grpcurl="$(command -v grpcurl || true)"
[ -n "$grpcurl" ] || { echo "grpcurl is missing: run tests/run.sh once (it installs tests/.venv)" >&2; exit 1; }
command -v psql >/dev/null || { echo "psql is missing" >&2; exit 1; }

pin_server=()
[ -n "$server_cpus" ] && pin_server=(taskset -c "$server_cpus")
pin_loadgen=()
[ -n "$loadgen_cpus" ] && pin_loadgen=(taskset -c "$loadgen_cpus")

if [ "${SLRGOV_BENCH_NO_BUILD:-}" != 1 ]; then
  echo "==> building (release)" >&2
  cargo build --release --locked -p slr-governor >&2
  cargo build --release --locked -p slrgov-e2e --example baseline --example loadgen >&2
fi
service_bin="$target_dir/release/slr-governor"
baseline_bin="$target_dir/release/examples/baseline"
loadgen_bin="$target_dir/release/examples/loadgen"
for bin in "$service_bin" "$baseline_bin" "$loadgen_bin"; do
  [ -x "$bin" ] || { echo "$bin is missing" >&2; exit 1; }
done
# Run copies, so that a rebuild during the run changes nothing. The service's
# copy has another name: a `pkill slr-governor` elsewhere on a shared machine
# (it happened) would otherwise end the run.
mkdir -p "$out/bin"
cp "$service_bin" "$out/bin/bench-service"
cp "$baseline_bin" "$loadgen_bin" "$out/bin/"
service_bin="$out/bin/bench-service"
baseline_bin="$out/bin/baseline"
loadgen_bin="$out/bin/loadgen"

# Everything started here is stopped on exit, by pid.
pids=()
db=""
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$db" ] && [ "${SLRGOV_BENCH_KEEP:-}" != 1 ]; then
    psql "$admin_url" -qAt -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# The address a server logged as `listening on <addr>`.
wait_listening() { # log pid
  for _ in $(seq 1 300); do
    addr="$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$1" | head -n1)"
    if [ -n "$addr" ]; then echo "$addr"; return 0; fi
    kill -0 "$2" 2>/dev/null || { echo "the server exited:" >&2; cat "$1" >&2; return 1; }
    sleep 0.1
  done
  echo "the server did not log 'listening on':" >&2; cat "$1" >&2; return 1
}

rss_kib() { # pid field
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# --- the database -----------------------------------------------------------
db="slrgov_bench_$(python3 -c 'import uuid; print(uuid.uuid4().hex)')"
read -r db_admin_url app_url < <(python3 - "$admin_url" "$db" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
db = sys.argv[2]
host = u.netloc.rsplit("@", 1)[-1]
admin = u._replace(path="/" + db).geturl()
app = u._replace(netloc="slrgov_app:slrgov_app@" + host, path="/" + db).geturl()
print(admin, app)
PY
)
echo "==> database $db (owner slrgov_app)" >&2
psql "$admin_url" -qAt -v ON_ERROR_STOP=1 >/dev/null <<SQL
DO \$\$ BEGIN
  CREATE ROLE slrgov_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB PASSWORD 'slrgov_app';
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END \$\$;
CREATE DATABASE $db OWNER slrgov_app;
SQL
SLRGOV_DATABASE_URL="$app_url" SLRGOV_LOG=warn "$service_bin" migrate

# --- the real service ---------------------------------------------------------
account="100000000042"
token="bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
tokens_file="$out/tokens.json"
printf '[{"name": "bench", "sha256": "%s", "role": "admin", "accounts": ["%s"]}]\n' \
  "$(printf %s "$token" | sha256sum | cut -d' ' -f1)" "$account" > "$tokens_file"
service_env=(SLRGOV_LISTEN=127.0.0.1:0 SLRGOV_DATABASE_URL="$app_url"
  SLRGOV_LOG="${SLRGOV_LOG:-info}" AWS_EC2_METADATA_DISABLED=true)
auth="on: static bearer token, role admin, accounts [$account]"
if [ "${SLRGOV_BENCH_NO_AUTH:-}" = 1 ]; then
  auth="off"
else
  service_env+=(SLRGOV_AUTH_TOKENS_FILE="$tokens_file")
fi
telemetry="off: the binary has no OTEL_EXPORTER_OTLP_ENDPOINT support"
if [ "${SLRGOV_BENCH_NO_TELEMETRY:-}" = 1 ]; then
  telemetry="off: SLRGOV_BENCH_NO_TELEMETRY=1"
elif grep -q OTEL_EXPORTER_OTLP_ENDPOINT "$service_bin"; then
  if [ -f tests/otlp/receiver.py ]; then
    py=python3
    [ -x tests/.venv/bin/python3 ] && py=tests/.venv/bin/python3
    "$py" tests/otlp/receiver.py --port 0 > "$out/otlp.log" 2>&1 &
    otlp_pid=$!
    pids+=("$otlp_pid")
    otlp_port=""
    for _ in $(seq 1 100); do
      otlp_port="$(sed -n 's/^listening on \([0-9]*\).*/\1/p' "$out/otlp.log" | head -n1)"
      [ -n "$otlp_port" ] && break
      kill -0 "$otlp_pid" 2>/dev/null || break
      sleep 0.1
    done
    [ -n "$otlp_port" ] || { echo "the OTLP receiver did not start:" >&2; cat "$out/otlp.log" >&2; exit 1; }
    sampler="${SLRGOV_BENCH_TRACES_SAMPLER:-parentbased_traceidratio}"
    ratio="${SLRGOV_BENCH_TRACES_RATIO:-0.01}"
    service_env+=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$otlp_port"
      OTEL_TRACES_SAMPLER="$sampler" OTEL_TRACES_SAMPLER_ARG="$ratio")
    telemetry="on: OTLP to tests/otlp/receiver.py on port $otlp_port (unpinned), traces $sampler $ratio, every RPC in the metrics"
  else
    telemetry="off: the binary supports OTLP but tests/otlp/receiver.py is missing"
  fi
fi
# shellcheck disable=SC2206
service_env+=(${SLRGOV_BENCH_SERVICE_ENV:-})
env -u SLRGOV_CONFIG "${service_env[@]}" "${pin_server[@]}" "$service_bin" > "$out/service.log" 2>&1 &
service_pid=$!
pids+=("$service_pid")
service_addr="$(wait_listening "$out/service.log" "$service_pid")"
# Serving once the database is open (migrated). grpcurl finds the health
# service through reflection, which needs the token when auth is on (without
# it every check failed, and the loop waited out its 30 s).
serving=""
for _ in $(seq 1 300); do
  if "$grpcurl" -plaintext -H "authorization: Bearer $token" "$service_addr" \
    grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"'; then
    serving=1
    break
  fi
  sleep 0.1
done
[ -n "$serving" ] || { echo "the service did not report SERVING:" >&2; cat "$out/service.log" >&2; exit 1; }
echo "==> service on $service_addr (pid $service_pid); auth $auth; telemetry $telemetry" >&2

call() { # method json
  "$grpcurl" -plaintext -H "authorization: Bearer $token" -d "$2" "$service_addr" "$1"
}
echo "==> seeding 1 account and $instances instances through the service" >&2
call slrgov.v1.AccountService/CreateAccount \
  "{\"account_id\": \"$account\", \"account\": {\"display_name\": \"bench\"}}" >/dev/null
names=()
for i in $(seq 1 "$instances"); do
  id="$(python3 -c 'import uuid; print(uuid.uuid4())')"
  call slrgov.v1.InstanceService/CreateInstance \
    "{\"parent\": \"accounts/$account\", \"instance_id\": \"$id\", \"instance\": {\"region\": \"us-east-1\", \"instance_alias\": \"bench-$i\", \"features\": {\"outbound_campaigns\": true, \"lex_bots\": [\"arn:aws:lex:us-east-1:$account:bot:Bench$i\"]}}}" >/dev/null
  names+=("accounts/$account/instances/$id")
done

# --- the baseline -------------------------------------------------------------
# shellcheck disable=SC2086
"${pin_server[@]}" "$baseline_bin" --database-url "$app_url" --scope "$account" \
  --max-connections 16 ${SLRGOV_BENCH_BASELINE_ARGS:-} > "$out/baseline.log" 2>&1 &
baseline_pid=$!
pids+=("$baseline_pid")
baseline_addr="$(wait_listening "$out/baseline.log" "$baseline_pid")"
echo "==> baseline on $baseline_addr (pid $baseline_pid)" >&2

# Both must return the same instance and the same region (the baseline has
# no reflection: use the service's descriptors).
"$grpcurl" -plaintext -H "authorization: Bearer $token" -protoset-out "$out/instance.protoset" "$service_addr" \
  describe slrgov.v1.InstanceService >/dev/null
"$grpcurl" -plaintext -H "authorization: Bearer $token" -protoset-out "$out/region.protoset" "$service_addr" \
  describe slrgov.v1.RegionService >/dev/null
same() { # method name
  local from_service from_baseline
  from_service="$(call "$1" "{\"name\": \"$2\"}")"
  from_baseline="$("$grpcurl" -plaintext -protoset "$out/instance.protoset" \
    -protoset "$out/region.protoset" -d "{\"name\": \"$2\"}" "$baseline_addr" "$1")"
  if [ "$from_service" != "$from_baseline" ]; then
    echo "the baseline and the service answer $1 differently:" >&2
    diff <(echo "$from_service") <(echo "$from_baseline") >&2 || true
    exit 1
  fi
}
same slrgov.v1.InstanceService/GetInstance "${names[0]}"
same slrgov.v1.RegionService/GetRegion "$region_name"

sleep 1
service_idle="$(rss_kib "$service_pid" VmRSS)"
baseline_idle="$(rss_kib "$baseline_pid" VmRSS)"

# --- the rounds -----------------------------------------------------------------
results="$out/results.jsonl"
: > "$results"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
run() { # label addr method concurrency [token]
  local extra=() targets=("${names[@]}")
  [ -n "${5:-}" ] && extra=(--token "$5")
  [ "$3" = noop ] && targets=("$region_name")
  "${pin_loadgen[@]}" "$loadgen_bin" --label "$1" --addr "$2" --method "$3" \
    --concurrency "$4" --duration "$seconds" --warmup "$warmup" "${extra[@]}" "${targets[@]}" \
    | tee -a "$results" >&2
}
service_token="$token"
[ "${SLRGOV_BENCH_NO_AUTH:-}" = 1 ] && service_token=""
for method in $methods; do
  for concurrency in $concurrencies; do
    for round in $(seq 1 "$rounds"); do
      echo "==> $method, $concurrency in flight, round $round/$rounds" >&2
      run baseline "$baseline_addr" "$method" "$concurrency"
      run service "$service_addr" "$method" "$concurrency" "$service_token"
    done
  done
done

# --- ListInstances at growing registry sizes (the service only) ---------------
list_results="$out/list.jsonl"
: > "$list_results"
list_extra=()
[ -n "$service_token" ] && list_extra=(--token "$service_token")
for size in $list_sizes; do
  have="$(psql "$db_admin_url" -qAt -c "SELECT count(*) FROM instances WHERE account_id = '$account'")"
  if [ "$size" -gt "$have" ]; then
    echo "==> seeding the registry from $have up to $size instances (INSERT ... SELECT generate_series)" >&2
    t0="$(date +%s%N)"
    # Ordered ids (5eed0000-0000-4000-8000-<12 hex digits>): the primary key
    # grows at its end, as with any bulk load. The first API-made instance
    # lends its features and region, so the rows are what the store writes
    # (its alias changed in the update rounds: it is found by its id).
    # The session skips the triggers (`session_replication_role = replica`):
    # the change log's row and notification per instance would double the
    # load's time, and ListInstances never reads the change log.
    psql "$db_admin_url" -qAt -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET session_replication_role = replica;
INSERT INTO instances (account_id, instance_id, instance_alias, region, features,
                       revision, create_time, update_time)
SELECT t.account_id, '5eed0000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'), 'seed-' || i,
       t.region, t.features, 1, now(), now()
  FROM (SELECT account_id, region, features FROM instances
         WHERE account_id = '$account' AND instance_id = '${names[0]##*/}') AS t,
       generate_series($have - $instances + 1, $size - $instances) AS i;
VACUUM ANALYZE instances;
-- Write out what the load and the vacuum dirtied, so that the rounds below
-- measure a registry at rest, not one still being flushed after a bulk load.
CHECKPOINT;
SQL
    echo "==> seeded in $(( ($(date +%s%N) - t0) / 1000000 )) ms" >&2
    have="$(psql "$db_admin_url" -qAt -c "SELECT count(*) FROM instances WHERE account_id = '$account'")"
  fi
  [ "$have" = "$size" ] || { echo "the registry holds $have instances, not $size" >&2; exit 1; }
  for round in $(seq 1 "$rounds"); do
    echo "==> ListInstances at $size instances, $list_concurrency in flight, round $round/$rounds" >&2
    "${pin_loadgen[@]}" "$loadgen_bin" --label service --addr "$service_addr" --method list \
      --concurrency "$list_concurrency" --duration "$seconds" --warmup "$warmup" \
      --page-size 100 "${list_extra[@]}" "accounts/$account" \
      | sed "s/^{/{\"registry\": $size, /" | tee -a "$list_results" >&2
  done
done

service_peak="$(rss_kib "$service_pid" VmHWM)"
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
baseline_peak="$(rss_kib "$baseline_pid" VmHWM)"

if [ "${SLRGOV_BENCH_HOLD:-}" = 1 ]; then
  printf %s "$token" > "$out/token"
  printf '%s\n' "${names[@]}" > "$out/names"
  cat > "$out/hold.env" <<ENV
service_addr=$service_addr
service_pid=$service_pid
baseline_addr=$baseline_addr
baseline_pid=$baseline_pid
db=$db
db_admin_url=$db_admin_url
loadgen_bin=$loadgen_bin
loadgen_cpus=$loadgen_cpus
ENV
  touch "$out/hold"
  echo "==> holding until $out/hold is removed (tests/bench/rpc_profile.sh $out does)" >&2
  while [ -e "$out/hold" ]; do sleep 1; done
fi

# --- the report -----------------------------------------------------------------
if [ "$quick" = 1 ]; then
  python3 - "$results" "$list_results" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
lists = [json.loads(line) for line in open(sys.argv[2]) if line.strip()]
med = statistics.median
names = {"GetInstance": "get_instance", "UpdateInstance": "update_instance", "GetRegion": "noop"}
cases = []
for r in rows:
    key = (r["method"], r["concurrency"])
    if key not in cases:
        cases.append(key)
for method, c in cases:
    b = [r for r in rows if (r["method"], r["concurrency"], r["label"]) == (method, c, "baseline")]
    s = [r for r in rows if (r["method"], r["concurrency"], r["label"]) == (method, c, "service")]
    ratio = med([y["rps"] / x["rps"] for x, y in zip(b, s)])
    print(f"case={names.get(method, method)}@{c} ratio={ratio:.2f} "
          f"p50_ms={med([r['p50_us'] for r in s]) / 1000:.2f} "
          f"p99_ms={med([r['p99_us'] for r in s]) / 1000:.2f}")
sizes = sorted({r["registry"] for r in lists})
if len(sizes) >= 2:
    small = [r for r in lists if r["registry"] == sizes[0]]
    large = [r for r in lists if r["registry"] == sizes[-1]]
    p50 = lambda rs: med([r["p50_us"] for r in rs])
    print(f"case=list_instances_{sizes[-1]}_vs_{sizes[0]} ratio={p50(small) / p50(large):.2f} "
          f"p50_ms={p50(large) / 1000:.2f} p99_ms={med([r['p99_us'] for r in large]) / 1000:.2f}")
PY
  pages="$(python3 -c 'import json, sys; print(sum(json.loads(l)["requests"] for l in open(sys.argv[1]) if l.strip()))' "$list_results")"
  echo "==> service RSS: idle $(( service_idle / 1024 )) MiB, peak $(( service_peak / 1024 )) MiB" \
    "after every round ($pages ListInstances pages); baseline: idle $(( baseline_idle / 1024 )) MiB," \
    "peak $(( baseline_peak / 1024 )) MiB" >&2
  echo "==> quick run: $(( $(date +%s) - started_at )) s from start to report (build excluded);" \
    "load average (1, 5, 15 min) before the rounds: $load_before, after: $load_after; raw results in $out" >&2
  exit
fi
python3 - "$results" <<PY
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
def med(xs): return statistics.median(xs)
print()
print("machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); "
      "servers on CPUs '${server_cpus:-any}', load generator on CPUs '${loadgen_cpus:-any}', Postgres unpinned")
print("rounds: $rounds per target and case, ${seconds} s measured after ${warmup} s warm-up, "
      "interleaved baseline/service; $instances instances hit in turn; medians over rounds")
print("service: auth $auth; telemetry $telemetry; baseline flags: '${SLRGOV_BENCH_BASELINE_ARGS:-}'")
print("load average (1, 5, 15 min) before the rounds: $load_before; after: $load_after")
print()
print("| RPC | in flight | baseline rps | baseline p50 ms | baseline p99 ms | service rps | service p50 ms | service p99 ms | rps service/baseline (min–max) | p50 ratio | p99 ratio |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
cases = []
for r in rows:
    key = (r["method"], r["concurrency"])
    if key not in cases: cases.append(key)
for method, c in cases:
    b = [r for r in rows if (r["method"], r["concurrency"], r["label"]) == (method, c, "baseline")]
    s = [r for r in rows if (r["method"], r["concurrency"], r["label"]) == (method, c, "service")]
    pairs = list(zip(b, s))
    rps_ratio = [y["rps"] / x["rps"] for x, y in pairs]
    p50_ratio = [y["p50_us"] / x["p50_us"] for x, y in pairs]
    p99_ratio = [y["p99_us"] / x["p99_us"] for x, y in pairs]
    ms = lambda rs, k: med([r[k] for r in rs]) / 1000
    print(f"| {method} | {c} | {med([r['rps'] for r in b]):.0f} | {ms(b,'p50_us'):.2f} | {ms(b,'p99_us'):.2f} "
          f"| {med([r['rps'] for r in s]):.0f} | {ms(s,'p50_us'):.2f} | {ms(s,'p99_us'):.2f} "
          f"| {med(rps_ratio):.2f}× ({min(rps_ratio):.2f}–{max(rps_ratio):.2f}) | {med(p50_ratio):.2f}× | {med(p99_ratio):.2f}× |")
print()
mib = lambda kib: f"{int(kib) / 1024:.1f} MiB"
print("| process | idle RSS (after start and seeding) | peak RSS (VmHWM, after the rounds) |")
print("| --- | ---: | ---: |")
print(f"| baseline | {mib('$baseline_idle')} | {mib('$baseline_peak')} |")
print(f"| service | {mib('$service_idle')} | {mib('$service_peak')} |")
lists = [json.loads(line) for line in open("$list_results") if line.strip()]
if lists:
    sizes = sorted({r["registry"] for r in lists})
    p50 = lambda size: med([r["p50_us"] for r in lists if r["registry"] == size])
    print()
    print("ListInstances of the bench account, page_size 100, walking the pages, "
          "$list_concurrency in flight, the service only (medians over rounds):")
    print()
    print("| instances | rps | p50 ms | p99 ms | p50 / p50 at the smallest size |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for size in sizes:
        rs = [r for r in lists if r["registry"] == size]
        print(f"| {size} | {med([r['rps'] for r in rs]):.0f} | {p50(size) / 1000:.2f} "
              f"| {med([r['p99_us'] for r in rs]) / 1000:.2f} | {p50(size) / p50(sizes[0]):.2f}× |")
print()
print("raw results: $results")
PY
exit
}
