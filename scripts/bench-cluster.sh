#!/usr/bin/env bash
# Produce throughput of a three-node Shale cluster against one node, in the same run, with the
# same client, topic shape and bytes. See docs/bench.md.
#
#   scripts/bench-cluster.sh [--bytes N] [--record-bytes N] [--partitions N] [--acks 1|all]
#
# Defaults: 1 GiB of 1 KiB records into a 12-partition topic, acks=1, librdkafka through
# confluent-kafka (scripts/bench_python_client.py). Order: one node, the cluster, one node again
# (so drift on a noisy machine shows). Every node runs on this machine: with 2 cores the three
# brokers and the client share them, so the ratio says what routing and the extra processes
# cost here, not what three machines would do. Also prints the cluster's metadata propagation
# and controller failover times (median of 5; SIGKILL of the Raft leader).
# BENCH_SHALE_BIN=path runs that binary instead of building target/release/shale.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BYTES="${BENCH_BYTES:-1073741824}"
RECORD_BYTES="${BENCH_RECORD_BYTES:-1024}"
PARTITIONS="${BENCH_PARTITIONS:-12}"
ACKS="${BENCH_ACKS:-1}"
while [ $# -gt 0 ]; do
  case "$1" in
    --bytes) BYTES="$2"; shift 2 ;;
    --record-bytes) RECORD_BYTES="$2"; shift 2 ;;
    --partitions) PARTITIONS="$2"; shift 2 ;;
    --acks) ACKS="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export BENCH_ACKS="$ACKS"

log() { printf '[bench-cluster] %s\n' "$*" >&2; }

# shellcheck source=scripts/bench-setup.sh
. "$ROOT/scripts/bench-setup.sh"
bench_setup bench-cluster
WORK="$BENCH_WORK"
export SHALE_BIN="$SHALE" SHALE_CLUSTER_DIR="$WORK/cluster"
SINGLE_PID=""
cleanup() {
  if [ -n "$SINGLE_PID" ] && kill -0 "$SINGLE_PID" 2>/dev/null; then
    kill -TERM "$SINGLE_PID"; wait "$SINGLE_PID" 2>/dev/null || true
  fi
  if [ -f "$SHALE_CLUSTER_DIR/cluster.env" ]; then "$ROOT/scripts/cluster.sh" stop >/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PY="$ROOT/.venv/bin/python"
produce() { # BOOTSTRAP -> the RESULT line's MB/s
  local topic="bench-$RANDOM-$(date +%s%N)"
  "$PY" "$ROOT/scripts/bench_python_client.py" produce "$1" "$topic" "$PARTITIONS" "$BYTES" "$RECORD_BYTES" \
    | sed -n 's/^RESULT .*mb_per_s=\([0-9.]*\).*/\1/p'
}

single() {
  local port dir="$WORK/single-$1"
  port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  "$SHALE" serve --data-dir "$dir" --listen "127.0.0.1:$port" 2>"$dir.log" &
  SINGLE_PID=$!
  until grep -q "shale listening" "$dir.log" 2>/dev/null; do
    kill -0 "$SINGLE_PID" || { cat "$dir.log" >&2; exit 1; }
    sleep 0.1
  done
  produce "127.0.0.1:$port"
  kill -TERM "$SINGLE_PID"; wait "$SINGLE_PID" || true
  SINGLE_PID=""
}

log "one node ($((BYTES >> 20)) MiB, $PARTITIONS partitions, acks=$ACKS)"
ONE_A="$(single a)"
log "one node: $ONE_A MB/s"
"$ROOT/scripts/cluster.sh" start 3 >/dev/null
# shellcheck disable=SC1091
. "$SHALE_CLUSTER_DIR/cluster.env"
log "three nodes"
THREE="$(produce "$BOOTSTRAP")"
log "three nodes: $THREE MB/s"
log "metadata propagation and controller failover"
"$PY" - "$SHALE_CLUSTER_DIR" <<'PY'
import json, os, signal, statistics, subprocess, sys, time
from confluent_kafka.admin import AdminClient, NewTopic
d = sys.argv[1]
env = dict(l.strip().split("=", 1) for l in open(f"{d}/cluster.env") if "=" in l)
n = int(env["NODES"])
kafka = {i: env[f"KAFKA_{i}"] for i in range(1, n + 1)}
shale = os.environ["SHALE_BIN"]

def leader(via):
    out = subprocess.run([shale, "admin", "--bootstrap", via, "--json", "cluster", "describe"],
                         capture_output=True, text=True, timeout=30)
    return json.loads(out.stdout)["quorum"]["leader_id"] if out.returncode == 0 else None

delays = []
for i in range(5):
    topic = f"prop-{i}-{time.time_ns()}"
    a = AdminClient({"bootstrap.servers": kafka[1]})
    # Connected before the creation, so the delay is the metadata's, not a client's bootstrap.
    other = AdminClient({"bootstrap.servers": kafka[n]})
    other.list_topics(timeout=10)
    a.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    t0 = time.monotonic()
    while topic not in other.list_topics(timeout=10).topics:
        time.sleep(0.001)
    delays.append(time.monotonic() - t0)
print(f"RESULT propagation_ms_median={statistics.median(delays) * 1000:.1f}", flush=True)

failovers = []
for i in range(5):
    old = leader(kafka[1])
    pid = int(open(f"{d}/node-{old}/pid").read())
    survivor = kafka[1 if old != 1 else 2]
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    while True:
        now = leader(survivor)
        if now not in (None, old):
            break
        time.sleep(0.05)
    failovers.append(time.monotonic() - t0)
    # Restart the killed node with its old command line.
    cmd = [shale, "serve", "--node-id", str(old), "--data-dir", f"{d}/node-{old}/data",
           "--listen", kafka[old], "--controller-listen", env[f"CONTROLLER_{old}"],
           "--controller-quorum-voters", env["VOTERS"]]
    log = open(f"{d}/node-{old}/shale.log", "ab")
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    open(f"{d}/node-{old}/pid", "w").write(str(p.pid))
    time.sleep(8)  # rejoin and settle before the next kill
print(f"RESULT failover_s_median={statistics.median(failovers):.2f} "
      f"failover_s_all={','.join(f'{f:.2f}' for f in failovers)}", flush=True)
PY
"$ROOT/scripts/cluster.sh" stop >/dev/null
rm -f "$SHALE_CLUSTER_DIR/cluster.env"
ONE_B="$(single b)"
log "one node again: $ONE_B MB/s"
awk -v a="$ONE_A" -v b="$ONE_B" -v c="$THREE" 'BEGIN {
  one = (a + b) / 2
  printf "RESULT one_node_mb_per_s=%s,%s three_nodes_mb_per_s=%s ratio_three_to_one=%.2f\n", a, b, c, c / one
}'
