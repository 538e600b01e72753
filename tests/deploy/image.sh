#!/usr/bin/env bash
# Build the FROM scratch image (deploy/Containerfile.scratch) for real, and
# prove it: start its entry point from the image's own filesystem and wait
# for grpc.health.v1 to say SERVING.
#
#   sudo tests/deploy/image.sh            # as root: podman's vfs storage, chroot, setuid
#   KEEP_WORK=1 tests/deploy/image.sh     # keep the work directory (image storage, rootfs, logs)
#
# Slow (a release build of the static binary, 10-20 minutes from cold on two
# cores), so it is not part of .ci/run or tests/run.sh; run it when the
# image, the Dockerfile or the binary's start-up changes. It needs no
# registry and no network beyond what installs the tools when they are
# missing.
#
# What it does:
#  1. installs what is missing: the Rust target x86_64-unknown-linux-musl,
#     musl-tools (aws-lc-sys compiles C for musl with musl-gcc), podman;
#  2. builds the static binary:
#     cargo build --release --locked --target x86_64-unknown-linux-musl -p slr-governor
#  3. assembles the context (deploy/scratch-context.py) and builds the image
#     with `podman --storage-driver vfs build`, in a private storage root
#     under the work directory (nothing is left in /var/lib/containers);
#  4. compares `podman image inspect` with deploy/Dockerfile's final stage:
#     entry point, command, user, environment, port, working directory and
#     labels (tests/deploy/checks/image.py);
#  5. exports the image's filesystem (`podman create` + `podman export`),
#     because `podman run` cannot run here (crun: cgroups in hybrid mode not
#     supported), and starts the image's ENTRYPOINT + CMD from it the way a
#     runtime would: in new mount and PID namespaces (the server is PID 1),
#     with a fresh /proc, a tmpfs /dev holding null/zero/full/random/urandom,
#     chrooted into the exported root, in the image's WORKDIR, as the
#     image's USER (uid/gid 65532, no supplementary groups), with exactly the
#     image's environment plus HOME (which a runtime sets from /etc/passwd).
#     Two settings are overridden: SLRGOV_LISTEN=127.0.0.1:<free port>
#     (without an auth mode the server refuses a non-loopback address) and
#     AWS_EC2_METADATA_DISABLED=true (as deploy/kubernetes sets it). The
#     network namespace is the host's, so grpcurl reaches it on loopback.
#     No SLRGOV_DATA_DIR and no database URL: the default SQLite database
#     must be created in the image's writable home, /home/nonroot;
#  6. probes grpc.health.v1.Health/Check with grpcurl until SERVING, and
#     measures the time from the process start to the first SERVING; then
#     registers an account and lists it (a write and a read of the SQLite
#     database in the image), checks the process's uid, groups and root and
#     the database file's owner, and stops it with SIGTERM (graceful
#     shutdown, exit 0);
#  7. starts it START_RUNS times in all (default 5), each with a new
#     database, for the start time's median;
#  8. proves the AWS SDK verifies TLS with the image's CA bundle: no AWS
#     endpoint is reachable here, so AWS_ENDPOINT_URL points it at a local
#     TLS endpoint whose certificate a throwaway CA signed; the handshake
#     must fail with the bundle as built, and the request must arrive once
#     that CA is appended to the exported copy of the bundle;
#  9. prints the image size, the binary size and the start time, and
#     removes everything it made (the work directory, the image storage).
#
# Exit status 0 when the image built, matches the Dockerfile and served.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

TARGET=x86_64-unknown-linux-musl
UID_GID=65532
step() { printf '\n== %s\n' "$*"; }
die() { printf 'image.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (podman vfs storage, chroot and setuid need it)"

# ---------------------------------------------------------------------------
step "tools"
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 "$@" >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -q -o DPkg::Lock::Timeout=600 "$@" >/dev/null; }
}
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
command -v musl-gcc >/dev/null || apt_install musl-tools
command -v podman >/dev/null || apt_install podman
command -v openssl >/dev/null || apt_install openssl   # the TLS check's throwaway CA
GRPCURL="$ROOT/tests/.venv/bin/grpcurl"
if [ ! -x "$GRPCURL" ]; then
  python3 -m venv "$ROOT/tests/.venv"
  "$ROOT/tests/.venv/bin/pip" install -q -r "$ROOT/tests/requirements.txt"
fi
echo "rustc $(rustc --version | cut -d' ' -f2), $(musl-gcc --version 2>/dev/null | head -1 | sed 's/ (.*//') (musl-gcc), podman $(podman --version | cut -d' ' -f3), grpcurl $("$GRPCURL" -version 2>&1 | cut -d' ' -f2)"

WORK=$(mktemp -d /tmp/slrgov-image.XXXXXX)
PODMAN=(podman --storage-driver vfs --root "$WORK/storage" --runroot "$WORK/run"
        --events-backend file --log-level error)
IMAGE=""
CONTAINER=""
SERVER=""
ENDPOINT_PID=""
cleanup() {
  status=$?
  [ -n "$ENDPOINT_PID" ] && kill "$ENDPOINT_PID" 2>/dev/null || true
  if [ -n "$SERVER" ]; then
    kill -KILL "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
  fi
  [ -n "$CONTAINER" ] && "${PODMAN[@]}" rm -f "$CONTAINER" >/dev/null 2>&1 || true
  [ -n "$IMAGE" ] && "${PODMAN[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true
  if [ "${KEEP_WORK:-0}" = 1 ]; then
    echo "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
step "static binary"
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
started=$(date +%s)
cargo build --release --locked --target "$TARGET" -p slr-governor
BINARY="$TARGET_DIR/$TARGET/release/slr-governor"
BINARY_SIZE=$(stat -c %s "$BINARY")
echo "built in $(( $(date +%s) - started )) s: $BINARY"
file -b "$BINARY" 2>/dev/null || true
VERSION=$("$BINARY" --version | awk '{print $NF}')
echo "binary: $BINARY_SIZE bytes ($(numfmt --to=iec-i --suffix=B "$BINARY_SIZE")), version $VERSION"

# ---------------------------------------------------------------------------
step "image"
python3 -B deploy/scratch-context.py "$BINARY" "$WORK/context"
IMAGE="localhost/slr-governor:$VERSION-scratch"
"${PODMAN[@]}" build --quiet -f deploy/Containerfile.scratch -t "$IMAGE" "$WORK/context" >"$WORK/image-id"
"${PODMAN[@]}" image inspect "$IMAGE" >"$WORK/inspect.json"
IMAGE_SIZE=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
LAYERS=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))[0]["RootFS"]["Layers"]))' "$WORK/inspect.json")
echo "$IMAGE $(cut -c1-12 "$WORK/image-id"): $IMAGE_SIZE bytes ($(numfmt --to=iec-i --suffix=B "$IMAGE_SIZE")), $LAYERS layers"

step "image configuration against deploy/Dockerfile's final stage"
(cd tests/deploy && python3 -B -m checks.image --inspect "$WORK/inspect.json")

# ---------------------------------------------------------------------------
step "filesystem"
CONTAINER=$("${PODMAN[@]}" create --name "slrgov-image-$$" "$IMAGE")
mkdir -m 0755 "$WORK/rootfs"
"${PODMAN[@]}" export "$CONTAINER" >"$WORK/rootfs.tar"
EXPORT_SIZE=$(stat -c %s "$WORK/rootfs.tar")
COMPRESSED_SIZE=$(gzip -9 -c "$WORK/rootfs.tar" | wc -c)
tar -x -p --numeric-owner -f "$WORK/rootfs.tar" -C "$WORK/rootfs"
tar -tv --numeric-owner -f "$WORK/rootfs.tar"
echo "exported filesystem: $EXPORT_SIZE bytes as tar, $COMPRESSED_SIZE bytes gzipped ($(numfmt --to=iec-i --suffix=B "$COMPRESSED_SIZE"))"
[ "$(stat -c '%u:%g %a' "$WORK/rootfs/home/nonroot")" = "$UID_GID:$UID_GID 700" ] \
  || die "/home/nonroot is not 0700 $UID_GID:$UID_GID"
[ "$(stat -c '%a' "$WORK/rootfs/tmp")" = 1777 ] || die "/tmp is not 1777"
[ -s "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt" ] || die "no CA bundle"

# ---------------------------------------------------------------------------
step "start the entry point from the exported filesystem"
read_config() {
  python3 - "$WORK/inspect.json" "$1" <<'EOF'
import json, sys
config = json.load(open(sys.argv[1]))[0]["Config"]
what = sys.argv[2]
if what == "argv":
    print("\0".join((config.get("Entrypoint") or []) + (config.get("Cmd") or [])), end="")
elif what == "env":
    print("\0".join(config.get("Env") or []), end="")
else:
    print(config.get(what, ""), end="")
EOF
}
mapfile -d '' ARGV < <(read_config argv)
mapfile -d '' IMAGE_ENV < <(read_config env)
WORKDIR=$(read_config WorkingDir)
USER_SPEC=$(read_config User)
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
mkdir -p "$WORK/rootfs/proc" "$WORK/rootfs/dev"
UNSHARE=$(command -v unshare)
DB="$WORK/rootfs$WORKDIR/.slr-governor/slr-governor.db"

# start_server [NAME=VALUE...]: starts the image's ENTRYPOINT + CMD with the
# image's environment, HOME, SLRGOV_LISTEN=127.0.0.1:<free port>,
# AWS_EC2_METADATA_DISABLED=true and the given settings (the later wins).
# Sets SERVER (the outer unshare), ADDRESS and STARTED_NS.
#
# The inner script runs as root in new mount and PID namespaces (PID 1 until
# the exec): it mounts a tmpfs /dev with five device nodes bound from the
# host, then execs `env -i <env> unshare --root --wd --setgid --setuid --
# <argv>`. env runs on the host side, since the image has no env; unshare
# chroots into the exported root, changes to the working directory, drops
# the supplementary groups, changes the user and execs the entry point from
# the image's filesystem, as PID 1 of its PID namespace. --kill-child: when
# the outer unshare dies (cleanup's SIGKILL), the server dies with it.
start_server() {
  ADDRESS="127.0.0.1:$(free_port)"
  local overrides=("SLRGOV_LISTEN=$ADDRESS" "AWS_EC2_METADATA_DISABLED=true" "$@")
  local env=("HOME=$WORKDIR") variable
  for variable in "${IMAGE_ENV[@]}"; do
    case " ${overrides[*]%%=*} " in *" ${variable%%=*} "*) ;; *) env+=("$variable") ;; esac
  done
  env+=("${overrides[@]}")
  SERVER_ENV="${env[*]}"
  STARTED_NS=$(date +%s%N)
  "$UNSHARE" --mount --propagation private --pid --fork --kill-child \
    --mount-proc="$WORK/rootfs/proc" -- \
    sh -c '
      root=$1; shift
      mount -t tmpfs -o nosuid,noexec,mode=0755,size=64k tmpfs "$root/dev"
      for node in null zero full random urandom; do
        : >"$root/dev/$node" && mount --bind "/dev/$node" "$root/dev/$node"
      done
      exec "$@"
    ' sh "$WORK/rootfs" \
      env -i "${env[@]}" \
      "$UNSHARE" --root="$WORK/rootfs" --wd="$WORKDIR" \
        --setgid="${USER_SPEC##*:}" --setuid="${USER_SPEC%%:*}" -- "${ARGV[@]}" \
    >"$WORK/server.log" 2>&1 &
  SERVER=$!
}

# wait_serving: polls Health/Check until SERVING; sets START_MS, the time
# from start_server to the first SERVING answer.
wait_serving() {
  local health
  for _ in $(seq 1 1500); do
    if ! kill -0 "$SERVER" 2>/dev/null; then
      cat "$WORK/server.log" >&2
      die "the server exited before it served"
    fi
    health=$("$GRPCURL" -plaintext -connect-timeout 0.5 "$ADDRESS" grpc.health.v1.Health/Check \
             2>/dev/null || true)
    if [[ $health == *'"SERVING"'* ]]; then
      START_MS=$(( ($(date +%s%N) - STARTED_NS) / 1000000 ))
      return 0
    fi
    sleep 0.02
  done
  cat "$WORK/server.log" >&2
  die "no SERVING within 30 s"
}

# server_pid: the server process (the child of the outer unshare, PID 1 of
# its namespace).
server_pid() {
  ps -o pid= --ppid "$SERVER" | tr -d ' ' | head -1
}

# stop_server: SIGTERM to the server, which must drain and exit 0.
stop_server() {
  local pid status=0
  pid=$(server_pid)
  [ -n "$pid" ] || die "cannot find the server process"
  kill -TERM "$pid"
  wait "$SERVER" || status=$?
  SERVER=""
  [ "$status" = 0 ] || { cat "$WORK/server.log" >&2; die "the server exited with $status after SIGTERM"; }
}

start_server
echo "argv: ${ARGV[*]}; user $USER_SPEC; cwd $WORKDIR"
echo "env: $SERVER_ENV"
wait_serving
"$GRPCURL" -plaintext "$ADDRESS" grpc.health.v1.Health/Check
TIMES=("$START_MS")
echo "start to SERVING: $START_MS ms (a new SQLite database, migrated)"

step "a write and a read through the image's SQLite database"
"$GRPCURL" -plaintext -d '{"account_id": "123456789012", "account": {"display_name": "image check",
  "access_role_arn": "arn:aws:iam::123456789012:role/slr-governor-access", "external_id": "image-check"}}' \
  "$ADDRESS" slrgov.v1.AccountService/CreateAccount | grep '"name"'
listed=$("$GRPCURL" -plaintext -d '{}' "$ADDRESS" slrgov.v1.AccountService/ListAccounts)
[[ $listed == *'"accounts/123456789012"'* ]] || die "ListAccounts does not list the account: $listed"
echo "ListAccounts lists accounts/123456789012"

PID=$(server_pid)
[ -n "$PID" ] || die "cannot find the server process"
echo "process $PID: $(tr '\0' ' ' <"/proc/$PID/cmdline"); $(grep -E '^(Uid|Gid|Groups):' "/proc/$PID/status" | tr -s '\t ' ' ' | paste -sd ';')"
grep -qE "^Uid:\s+$UID_GID\s+$UID_GID\s+$UID_GID\s+$UID_GID$" "/proc/$PID/status" \
  || die "the server does not run as uid $UID_GID"
grep -qE "^Groups:\s*$" "/proc/$PID/status" || die "the server has supplementary groups"
[ "$(readlink "/proc/$PID/root")" = "$WORK/rootfs" ] || die "the server's root is not the exported filesystem"
[ "$(stat -c %u:%g "$DB" 2>/dev/null)" = "$UID_GID:$UID_GID" ] \
  || die "no database owned by $UID_GID at ${DB#"$WORK/rootfs"}"
echo "database ${DB#"$WORK/rootfs"} in the image's home, owned by $(stat -c %u:%g "$DB")"

step "SIGTERM"
stop_server
tail -n 3 "$WORK/server.log"
echo "exited 0 after SIGTERM"

# ---------------------------------------------------------------------------
RUNS=${START_RUNS:-5}
step "start time, $RUNS starts, each with a new database"
for run in $(seq 2 "$RUNS"); do
  rm -rf "$WORK/rootfs$WORKDIR/.slr-governor"
  start_server
  wait_serving
  stop_server
  TIMES+=("$START_MS")
done
read -r START_MIN START_MEDIAN START_MAX < <(printf '%s\n' "${TIMES[@]}" | sort -n \
  | awk '{ t[NR] = $1 } END { print t[1], t[int((NR + 1) / 2)], t[NR] }')
echo "start to SERVING (ms): ${TIMES[*]}; min $START_MIN, median $START_MEDIAN, max $START_MAX"

# ---------------------------------------------------------------------------
# No AWS endpoint is reachable from here, so the trust in the image's CA
# bundle is proven against a local TLS endpoint: a test CA signs a
# certificate for 127.0.0.1, and AWS_ENDPOINT_URL points the SDK at it (the
# region refresh at start calls ssm:GetParametersByPath). With the image's
# bundle as built, the SDK must refuse the handshake (so it verifies, and
# with this bundle); with the test CA appended to the exported copy of the
# bundle, the request must arrive.
step "TLS: the AWS SDK trusts the image's CA bundle, and only it"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=slr-governor image test CA" \
  -keyout "$WORK/ca.key" -out "$WORK/ca.crt" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$WORK/tls.key" \
  -out "$WORK/tls.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$WORK/tls.ext"
openssl x509 -req -in "$WORK/tls.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 1 -extfile "$WORK/tls.ext" -out "$WORK/tls.crt" >/dev/null 2>&1
TLS_PORT=$(free_port)
python3 - "$TLS_PORT" "$WORK/tls.crt" "$WORK/tls.key" "$WORK/tls-endpoint.log" <<'EOF' &
# Accepts TLS connections, logs each handshake's outcome and the request's
# first line and X-Amz-Target, and answers 400 (the SDK then gives up).
import socket, ssl, sys
port, cert, key, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
listener = socket.create_server(("127.0.0.1", port))
while True:
    connection, _ = listener.accept()
    connection.settimeout(5)
    with open(log, "a") as out:
        try:
            tls = context.wrap_socket(connection, server_side=True)
        except (ssl.SSLError, OSError) as error:
            print(f"handshake failed: {error}", file=out, flush=True)
            connection.close()
            continue
        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                head += chunk
            lines = head.decode("latin-1").split("\r\n")
            target = [l for l in lines if l.lower().startswith("x-amz-target:")]
            print(f"request over {tls.version()}: {lines[0]} {' '.join(target)}", file=out, flush=True)
            body = b'{"__type":"ValidationException","message":"image.sh test endpoint"}'
            tls.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        except (ssl.SSLError, OSError) as error:
            print(f"after the handshake: {error}", file=out, flush=True)
        finally:
            tls.close()
EOF
ENDPOINT_PID=$!
AWS_TEST_ENV=("AWS_ENDPOINT_URL=https://127.0.0.1:$TLS_PORT" "AWS_REGION=us-east-1"
              "AWS_ACCESS_KEY_ID=AKIAIMAGECHECKEXAMPLE" "AWS_SECRET_ACCESS_KEY=image-check-not-a-secret")
# wait_endpoint PATTERN: until the endpoint's log has a line matching PATTERN.
wait_endpoint() {
  for _ in $(seq 1 150); do
    grep -q "$1" "$WORK/tls-endpoint.log" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
: >"$WORK/tls-endpoint.log"
start_server "${AWS_TEST_ENV[@]}"
wait_serving
wait_endpoint "handshake failed" || { cat "$WORK/tls-endpoint.log" "$WORK/server.log" >&2;
  die "the SDK did not attempt TLS to the test endpoint"; }
stop_server
grep -q "^request" "$WORK/tls-endpoint.log" && die "the SDK sent a request to an untrusted endpoint"
echo "image's bundle:           $(grep -m1 'handshake failed' "$WORK/tls-endpoint.log")"

cat "$WORK/ca.crt" >>"$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
: >"$WORK/tls-endpoint.log"
start_server "${AWS_TEST_ENV[@]}"
wait_serving
wait_endpoint "^request" || { cat "$WORK/tls-endpoint.log" "$WORK/server.log" >&2;
  die "no request reached the test endpoint with its CA in the image's bundle"; }
stop_server
echo "bundle + the test CA:     $(grep -m1 '^request' "$WORK/tls-endpoint.log")"
kill "$ENDPOINT_PID" 2>/dev/null || true
wait "$ENDPOINT_PID" 2>/dev/null || true

# ---------------------------------------------------------------------------
step "summary"
cat <<EOF
date:                 $(date -u +%Y-%m-%dT%H:%M:%SZ)
image:                $IMAGE ($(cut -c1-12 "$WORK/image-id")), FROM scratch, $LAYERS layers
image size:           $IMAGE_SIZE bytes ($(numfmt --to=iec-i --suffix=B "$IMAGE_SIZE")), $COMPRESSED_SIZE bytes gzipped ($(numfmt --to=iec-i --suffix=B "$COMPRESSED_SIZE"))
binary size:          $BINARY_SIZE bytes ($(numfmt --to=iec-i --suffix=B "$BINARY_SIZE")), static-pie, $TARGET
start to SERVING:     median $START_MEDIAN ms (min $START_MIN, max $START_MAX, $RUNS starts; SQLite, new database each time)
configuration:        same as deploy/Dockerfile's final stage
TLS:                  the AWS SDK verifies with the image's CA bundle
EOF
