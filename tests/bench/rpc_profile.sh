#!/usr/bin/env bash
# Where an RPC's time goes, for the service and the baseline that
# tests/bench/rpc.sh started and holds (SLRGOV_BENCH_HOLD=1):
#
#   SLRGOV_BENCH_HOLD=1 SLRGOV_BENCH_OUT=/tmp/bench tests/bench/rpc.sh &
#   # ... once /tmp/bench/hold exists:
#   tests/bench/rpc_profile.sh /tmp/bench
#
# For each server it runs one load (SLRGOV_PROFILE_METHOD, default update;
# SLRGOV_PROFILE_CONCURRENCY in flight, default 16; SLRGOV_PROFILE_SECONDS,
# default 10) and reports, per request:
#   - CPU time by process (the server, the load generator, all Postgres
#     processes together, the rest), from a system-wide `perf record -e
#     cpu-clock` (a software clock: no hardware counters needed);
#   - the Postgres work: transactions, rows read, inserted, updated, and
#     index scans per table, from pg_stat_database / pg_stat_user_tables;
#   - the server's own CPU by crate (its flat profile: self time of each
#     symbol, grouped by the crate in the symbol's path).
# Then it removes DIR/hold, which lets rpc.sh stop everything.
set -euo pipefail
{
dir="${1:?usage: rpc_profile.sh DIR (the SLRGOV_BENCH_OUT of a holding rpc.sh)}"
# shellcheck disable=SC1091
source "$dir/hold.env"
method="${SLRGOV_PROFILE_METHOD:-update}"
concurrency="${SLRGOV_PROFILE_CONCURRENCY:-16}"
seconds="${SLRGOV_PROFILE_SECONDS:-10}"
freq=499
mapfile -t names < "$dir/names"
token="$(cat "$dir/token")"
command -v perf >/dev/null || { echo "perf is missing (apt-get install linux-perf)" >&2; exit 1; }
pin=()
[ -n "${loadgen_cpus:-}" ] && pin=(taskset -c "$loadgen_cpus")

pg_stats() {
  psql "$db_admin_url" -qAt -F' ' -c "SELECT pg_stat_clear_snapshot()" -c \
    "SELECT 'db', xact_commit, xact_rollback, tup_fetched, tup_inserted, tup_updated, 0 \
       FROM pg_stat_database WHERE datname = current_database() \
     UNION ALL \
     SELECT relname, COALESCE(idx_scan, 0), COALESCE(seq_scan, 0), COALESCE(idx_tup_fetch, 0), \
            n_tup_ins, n_tup_upd, n_tup_hot_upd \
       FROM pg_stat_user_tables ORDER BY 1" | grep -v '^$'
}

profile() { # label addr pid [token]
  local label="$1" addr="$2" pid="$3" extra=()
  [ -n "${4:-}" ] && extra=(--token "$4")
  echo "==> profiling $label: $method, $concurrency in flight, $seconds s" >&2
  # Postgres flushes a backend's statistics at most once a second, and an
  # idle backend's within 10 s: wait them out around the run.
  sleep 11
  pg_stats > "$dir/pg-$label-before.txt"
  "${pin[@]}" "$loadgen_bin" --label "$label" --addr "$addr" --method "$method" \
    --concurrency "$concurrency" --duration "$seconds" --warmup 0 "${extra[@]}" "${names[@]}" \
    > "$dir/loadgen-$label.json" &
  local loadgen_pid=$!
  perf record -q -a -e cpu-clock -F "$freq" -o "$dir/perf-$label.data" -- sleep "$seconds" 2>/dev/null
  wait "$loadgen_pid"
  sleep 11
  pg_stats > "$dir/pg-$label-after.txt"
  perf script -i "$dir/perf-$label.data" -F comm,pid,tid,ip,sym,dso 2>/dev/null > "$dir/perf-$label.txt"
  python3 - "$dir" "$label" "$pid" "$loadgen_pid" "$freq" <<'PY'
import json, re, sys
from collections import Counter
d, label, server_pid, loadgen_pid, freq = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
run = json.load(open(f"{d}/loadgen-{label}.json"))
# The load generator counts requests after its warm-up (0 here) and within
# the window; perf ran for the same window.
requests = run["requests"]
by_process, by_crate = Counter(), Counter()
server_samples = 0
for line in open(f"{d}/perf-{label}.txt"):
    parts = line.split()
    if len(parts) < 2:
        continue
    # Format: comm pid/tid ip sym (dso); comm may hold spaces.
    idx = next((i for i, p in enumerate(parts) if re.fullmatch(r"\d+/\d+", p)), None)
    if idx is None:
        continue
    comm = " ".join(parts[:idx])
    pid = int(parts[idx].split("/")[0])
    rest = " ".join(parts[idx + 2:])
    if pid == server_pid:
        who = "server"
    elif pid == loadgen_pid:
        who = "load generator"
    elif comm.startswith("postgres"):
        who = "postgres (all processes)"
    elif pid == 0:
        who = "idle"
    else:
        who = "other: " + comm
    by_process[who] += 1
    if pid == server_pid:
        server_samples += 1
        sym = re.sub(r"\s*\([^()]*\)\s*$", "", rest).strip()  # drop "(dso)"
        dso = re.search(r"\(([^()]*)\)\s*$", rest)
        dso = dso.group(1) if dso else ""
        if "kernel" in dso or dso.startswith("[k"):
            crate = "kernel"
        elif "libc" in dso or "ld-linux" in dso:
            crate = "libc (malloc, memcpy, ...)"
        else:
            s = sym.lstrip("<&")
            s = re.sub(r"^(dyn |mut )", "", s)
            crate = s.split("::")[0] if "::" in s else (s or "?")
            if crate in ("core", "alloc", "std"):
                inner = re.search(r"<<?(?:dyn )?([a-z_0-9]+)::", sym[1:])
                crate = f"{crate} (in {inner.group(1)})" if inner else crate
        by_crate[crate] += 1
ms = lambda n: n / freq * 1000 / max(requests, 1)
print(f"\n### {label}: {run['method']}, {run['concurrency']} in flight: {requests} requests, {run['rps']} rps, errors {run['errors']}")
print("\nCPU per request by process (ms; perf cpu-clock at %d Hz on every CPU):\n" % freq)
print("| process | CPU ms / request | share of all samples |")
print("| --- | ---: | ---: |")
total = sum(by_process.values())
for who, n in by_process.most_common(8):
    print(f"| {who} | {ms(n):.3f} | {n / total:.0%} |")
def table(path):
    rows = {}
    for line in open(path):
        f = line.split()
        rows[f[0]] = list(map(int, f[1:]))
    return rows
a, b = table(f"{d}/pg-{label}-before.txt"), table(f"{d}/pg-{label}-after.txt")
per = lambda k, i: (b[k][i] - a.get(k, [0] * 6)[i]) / max(requests, 1)
print("\nPostgres work per request (pg_stat_*; includes the background worker's polls):\n")
print(f"- transactions committed {per('db', 0):.2f}, rolled back {per('db', 1):.2f}; rows fetched {per('db', 2):.2f}, inserted {per('db', 3):.2f}, updated {per('db', 4):.2f}")
for k in sorted(b):
    if k == "db":
        continue
    vals = [per(k, i) for i in range(6)]
    if any(abs(v) >= 0.005 for v in vals):
        print(f"- {k}: index scans {vals[0]:.2f}, seq scans {vals[1]:.2f}, rows inserted {vals[3]:.2f}, updated {vals[4]:.2f} (HOT {vals[5]:.2f})")
print("\nThe server's CPU by crate (self time, flat profile):\n")
print("| crate | CPU ms / request | share of the server |")
print("| --- | ---: | ---: |")
for crate, n in by_crate.most_common(14):
    print(f"| {crate} | {ms(n):.3f} | {n / max(server_samples, 1):.0%} |")
PY
}

profile baseline "$baseline_addr" "$baseline_pid"
profile service "$service_addr" "$service_pid" "$token"
rm -f "$dir/hold"
exit
}
