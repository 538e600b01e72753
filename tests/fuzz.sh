#!/usr/bin/env bash
# Fuzzes the parsers that read what callers send (fuzz/, cargo fuzz with
# libFuzzer): page tokens, ListInstances filters, resource names and JWTs.
#
#   ./tests/fuzz.sh            # 20 s per target (what CI runs)
#   ./tests/fuzz.sh 600        # 10 minutes per target
#   ./tests/fuzz.sh 60 jwt     # some targets only
#
# libFuzzer builds need nightly rustc flags (sanitizers, coverage): the
# nightly toolchain when rustup has one, else the stable one with
# RUSTC_BOOTSTRAP=1 (its rust-std ships the sanitizer runtimes too), as no
# toolchain can be downloaded on this project's machines. cargo-fuzz is
# installed, pinned, into tests/.tools. Each target starts from
# fuzz/seeds/<target> and grows fuzz/corpus/<target> (not committed); a
# crash is written to fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

seconds="${1:-20}"
shift || true

# cargo-fuzz, pinned, stamped like the venv of tests/run.sh.
tools="$root/tests/.tools"
fuzz_version="0.13.2"
stamp="$tools/.cargo-fuzz.version"
if [ ! -x "$tools/bin/cargo-fuzz" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$fuzz_version" ]; then
  echo "==> installing cargo-fuzz $fuzz_version into tests/.tools"
  cargo install --locked --quiet "cargo-fuzz@$fuzz_version" --root "$tools" --force
  echo "$fuzz_version" > "$stamp"
fi
export PATH="$tools/bin:$PATH"

if rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  echo "==> no nightly toolchain: using $(rustc --version) with RUSTC_BOOTSTRAP=1"
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi

targets=("$@")
if [ "${#targets[@]}" = 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo "${toolchain[@]}" fuzz list)
fi

# One build for every target: release, with debug assertions and overflow
# checks, AddressSanitizer (cargo fuzz's default).
echo "==> building fuzz targets"
(cd fuzz && cargo "${toolchain[@]}" fuzz build --debug-assertions)

failed=0
for target in "${targets[@]}"; do
  echo "==> fuzzing $target for ${seconds}s"
  mkdir -p "fuzz/corpus/$target"
  log="$(mktemp)"
  if (cd fuzz && cargo "${toolchain[@]}" fuzz run --debug-assertions "$target" \
      "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1) >"$log" 2>&1; then
    status=ok
  else
    status=CRASH
    failed=1
    grep -a -m1 -A1 'panicked at' "$log" || true
    tail -n 40 "$log"
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
  # libFuzzer's last line: the code edges (cov) and features (ft) reached.
  reach="$(grep -a 'DONE' "$log" | sed -n 's/.*DONE *cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1, ft \2/p' | tail -n1 || true)"
  echo "$target: ${execs:-?} executions in ${seconds}s (${reach:-cov ?}), $status"
  rm -f "$log"
done
exit "$failed"
