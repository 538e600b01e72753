#!/usr/bin/env bash
# The API contract, checked with buf (proto/buf.yaml):
#
#   1. buf lint: the STANDARD rules plus COMMENTS, with the AIP exceptions
#      explained in proto/buf.yaml;
#   2. buf breaking: proto/ against the last released descriptor set,
#      proto/releases/v1.binpb, with the FILE rules;
#   3. a self-test that proves both checks bite: breaking edits applied to a
#      copy of proto/ (a deleted, renamed or retyped field, a renamed RPC,
#      service or enum value, in slrgov.v1 and in the vendored
#      google.longrunning) must each be refused for the expected rule, a lint
#      violation must be refused, and plain additions must pass.
#
#   ./tests/buf.sh
#
# buf comes from npm (@bufbuild/buf, pinned in tests/buf/package-lock.json)
# and is installed with `npm ci` into tests/buf/node_modules, once: the
# install is skipped while it matches the lock. Needs node and npm. After the
# install the whole run takes a few seconds.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

tooldir="tests/buf"
lock="$tooldir/package-lock.json"
stamp="$tooldir/node_modules/.slrgov-lock.sha256"
buf="$tooldir/node_modules/.bin/buf"
release="proto/releases/v1.binpb"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "tests/buf.sh: $tool is not installed; buf is installed from npm (node >= 18)" >&2
    exit 1
  fi
done

# --- install buf, pinned ----------------------------------------------------
want_version="$(node -p "require('./$lock').packages['node_modules/@bufbuild/buf'].version")"
lock_sum="$(sha256sum "$lock" | cut -d' ' -f1)"
if [ -x "$buf" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$lock_sum" ] \
  && [ "$("$buf" --version 2>/dev/null)" = "$want_version" ]; then
  echo "==> buf $want_version already installed in $tooldir (matches the lock)"
else
  echo "==> installing buf $want_version into $tooldir (npm ci)"
  # --ignore-scripts: the package's postinstall only swaps its node launcher
  # for the native binary; the launcher finds the binary without it.
  npm ci --prefix "$tooldir" --ignore-scripts --no-audit --no-fund --loglevel=error
  got_version="$("$buf" --version)"
  if [ "$got_version" != "$want_version" ]; then
    echo "tests/buf.sh: npm installed buf $got_version, the lock pins $want_version" >&2
    exit 1
  fi
  echo "$lock_sum" > "$stamp"
fi

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# --- 1. lint -----------------------------------------------------------------
echo "==> buf lint proto"
if "$buf" lint proto; then
  echo "ok: lint is clean"
else
  fail "buf lint found the problems above. Fix them without renaming anything docs/api.md" \
    "names (the API is fixed); a rule that AIP naming contradicts is excepted, with its" \
    "reason, in proto/buf.yaml"
fi

# --- 2. breaking ---------------------------------------------------------------
echo "==> buf breaking proto --against $release"
breaking_ok=no
if [ ! -s "$release" ]; then
  fail "$release is missing: see proto/releases/README.md"
elif "$buf" breaking proto --against "$release"; then
  echo "ok: no breaking change against $release"
  breaking_ok=yes
else
  fail "the changes above break the released slrgov.v1 contract ($release). Callers" \
    "(gRPC, gRPC-Web, grpcurl JSON, generated clients) would break: add instead of" \
    "changing (a new field, RPC or message), or put the change in a new package" \
    "(slrgov.v2). Do not rebuild $release to make this pass."
fi

# --- 3. self-test: the checks catch what they must ----------------------------
tmp="$(mktemp -d "${TMPDIR:-/tmp}/slrgov-buf.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# fresh_copy: a copy of proto/ (with its buf.yaml) to edit; prints its path.
fresh_copy() {
  local dir
  dir="$(mktemp -d "$tmp/case.XXXXXX")"
  cp -R proto/. "$dir"
  rm -rf "$dir/releases"
  echo "$dir"
}

# edit DIR FILE PERL-SUBSTITUTION: applies the substitution (perl -0, the
# whole file at once) and fails loudly when it matched nothing, so that a
# proto edited elsewhere cannot turn a check into a silent pass.
edit() {
  local dir="$1" file="$2" expr="$3"
  cp "$dir/$file" "$tmp/before"
  perl -0pi -e "$expr" "$dir/$file"
  if cmp -s "$tmp/before" "$dir/$file"; then
    echo "tests/buf.sh: the self-test edit '$expr' no longer matches proto/$file;" \
      "update the self-test in tests/buf.sh" >&2
    exit 1
  fi
}

# expect_breaking WHAT RULE FILE PERL-SUBSTITUTION
expect_breaking() {
  local what="$1" rule="$2" file="$3" expr="$4" dir out
  dir="$(fresh_copy)"
  edit "$dir" "$file" "$expr"
  if out="$("$buf" breaking "$dir" --against "$release" --error-format=json 2>&1)"; then
    fail "self-test: $what passed buf breaking; the breaking check is not working" \
      "(check breaking.use in proto/buf.yaml and the content of $release)"
  elif ! grep -q "\"type\":\"$rule\"" <<<"$out"; then
    fail "self-test: $what was refused, but not for $rule:"
    echo "$out" >&2
  else
    echo "ok: $what is refused ($rule)"
  fi
}

echo "==> self-test: breaking edits to a copy of proto/ must be refused"
expect_breaking "deleting field Account.display_name" FIELD_NO_DELETE \
  slrgov/v1/resources.proto 's/\n  string display_name = 3;\n/\n/'
expect_breaking "renaming field Account.display_name (JSON and grpcurl name)" FIELD_SAME_NAME \
  slrgov/v1/resources.proto 's/\bstring display_name = 3;/string title = 3;/'
expect_breaking "changing the type of field LinkedRole.adopted" FIELD_SAME_TYPE \
  slrgov/v1/resources.proto 's/\bbool adopted = 11;/string adopted = 11;/'
expect_breaking "renaming enum value LinkedRole.State.ACTIVE (JSON name)" ENUM_VALUE_SAME_NAME \
  slrgov/v1/resources.proto 's/\n    ACTIVE = 3;\n/\n    ENABLED = 3;\n/'
expect_breaking "renaming RPC AccountService.GetAccount (the gRPC path)" RPC_NO_DELETE \
  slrgov/v1/account_service.proto 's/\brpc GetAccount\(/rpc FetchAccount(/'
expect_breaking "renaming service RegionService" SERVICE_NO_DELETE \
  slrgov/v1/region_service.proto 's/\bservice RegionService \{/service RegionsService {/'
expect_breaking "deleting RPC google.longrunning.Operations.WaitOperation (vendored)" RPC_NO_DELETE \
  google/longrunning/operations.proto 's/\n  rpc WaitOperation\([^)]*\) returns \([^)]*\);\n/\n/'

echo "==> self-test: a lint violation must be refused"
dir="$(fresh_copy)"
edit "$dir" slrgov/v1/resources.proto \
  's/(\nmessage Account \{\n)/$1  string displayNameOld = 998;\n/'
if out="$("$buf" lint "$dir" --error-format=json 2>&1)"; then
  fail "self-test: a camelCase field without a comment passed buf lint; lint is not working"
else
  for rule in FIELD_LOWER_SNAKE_CASE COMMENT_FIELD; do
    if grep -q "\"type\":\"$rule\"" <<<"$out"; then
      echo "ok: a camelCase field without a comment is refused ($rule)"
    else
      fail "self-test: the bad field was refused by buf lint, but not for $rule:"
      echo "$out" >&2
    fi
  done
fi

echo "==> self-test: additions must pass lint and breaking"
dir="$(fresh_copy)"
edit "$dir" slrgov/v1/resources.proto \
  's/(\nmessage Account \{\n)/$1  \/\/ A field added by the self-test.\n  string self_test_note = 999;\n\n/'
edit "$dir" slrgov/v1/resources.proto \
  's/(\n    DELETION_FAILED = 6;\n)/$1    \/\/ A value added by the self-test.\n    SELF_TEST_STATE = 99;\n/'
edit "$dir" slrgov/v1/region_service.proto \
  's/(\nservice RegionService \{\n)/$1  \/\/ An RPC added by the self-test.\n  rpc SelfTestRegion(SelfTestRegionRequest) returns (Region);\n\n/'
cat >>"$dir/slrgov/v1/region_service.proto" <<'EOF'

// A request added by the self-test.
message SelfTestRegionRequest {
  // Required. `regions/{region_code}`.
  string name = 1;
}
EOF
if [ "$breaking_ok" != yes ]; then
  echo "skipped: proto/ itself does not pass buf breaking (above), so its copy cannot either"
elif ! out="$("$buf" lint "$dir" 2>&1)"; then
  fail "self-test: a commented new field, enum value and RPC failed buf lint:"
  echo "$out" >&2
elif ! out="$("$buf" breaking "$dir" --against "$release" 2>&1)"; then
  fail "self-test: a new field, enum value and RPC were refused by buf breaking:"
  echo "$out" >&2
else
  echo "ok: a new field, enum value, message and RPC pass"
fi

if [ "$failures" -gt 0 ]; then
  echo "tests/buf.sh: $failures problem(s); see FAIL above" >&2
  exit 1
fi
echo "==> buf: the slrgov.v1 contract holds (lint, breaking against $release, self-test)"
