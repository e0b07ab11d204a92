#!/usr/bin/env bash
# Produce/consume throughput of a release build, beside the raw sequential write rate of the same
# disk measured in the same run. See docs/bench.md.
#
#   scripts/bench.sh [--bytes N] [--record-bytes N] [--partitions N] [--client java|python|kcat]
#                    [--dd-bytes N] [--acks 1|all] [--keep]
#
# Defaults: 2 GiB of 1 KiB records into a 4-partition topic, acks=1, no compression, librdkafka
# through confluent-kafka (scripts/bench_python_client.py): of the three clients it costs the
# least CPU per record here, so it measures the broker best on 2 cores (docs/bench.md has the
# numbers). The data dir is under target/ (same disk as the build);
# BENCH_DIR_PARENT=/path puts it elsewhere. Every option also reads BENCH_<NAME> from the
# environment (BENCH_BYTES, BENCH_RECORD_BYTES, BENCH_PARTITIONS, BENCH_CLIENT, BENCH_DD_BYTES,
# BENCH_ACKS; --acks all needs the python or kcat client).
# BENCH_SHALE_BIN=path runs that binary instead of building target/release/shale.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BYTES="${BENCH_BYTES:-2147483648}"
RECORD_BYTES="${BENCH_RECORD_BYTES:-1024}"
PARTITIONS="${BENCH_PARTITIONS:-4}"
CLIENT="${BENCH_CLIENT:-python}"
DD_BYTES="${BENCH_DD_BYTES:-2147483648}"
ACKS="${BENCH_ACKS:-1}"
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bytes) BYTES="$2"; shift 2 ;;
    --record-bytes) RECORD_BYTES="$2"; shift 2 ;;
    --partitions) PARTITIONS="$2"; shift 2 ;;
    --client) CLIENT="$2"; shift 2 ;;
    --dd-bytes) DD_BYTES="$2"; shift 2 ;;
    --acks) ACKS="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
case "$CLIENT" in java|python|kcat) ;; *) echo "--client must be java, python or kcat" >&2; exit 2 ;; esac
case "$ACKS" in 1|all) ;; *) echo "--acks must be 1 or all" >&2; exit 2 ;; esac
if [ "$ACKS" != 1 ] && [ "$CLIENT" = java ]; then echo "--acks all needs --client python or kcat" >&2; exit 2; fi
export BENCH_ACKS="$ACKS"  # read by scripts/bench_python_client.py

log() { printf '[bench] %s\n' "$*" >&2; }

# shellcheck source=scripts/bench-setup.sh
. "$ROOT/scripts/bench-setup.sh"
bench_setup bench
BENCH_DIR="$BENCH_WORK"
SHALE_PID=""
cleanup() {
  if [ -n "$SHALE_PID" ] && kill -0 "$SHALE_PID" 2>/dev/null; then
    kill -TERM "$SHALE_PID" 2>/dev/null || true
    wait "$SHALE_PID" 2>/dev/null || true
  fi
  if [ "$KEEP" -eq 0 ]; then rm -rf "$BENCH_DIR"; else log "kept $BENCH_DIR"; fi
}
trap cleanup EXIT

seconds_now() { date +%s.%N; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1e6 / s }'; }

# --- Disk: sequential write with fdatasync, same filesystem as the broker's data dir ------------
log "disk: dd $((DD_BYTES >> 20)) MiB with conv=fdatasync into $BENCH_DIR"
t0="$(seconds_now)"
dd if=/dev/zero of="$BENCH_DIR/dd.tmp" bs=1M count=$((DD_BYTES >> 20)) conv=fdatasync status=none
t1="$(seconds_now)"
rm -f "$BENCH_DIR/dd.tmp"
DISK_S="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
DISK_MBS="$(rate "$DD_BYTES" "$DISK_S")"
log "disk: ${DISK_MBS} MB/s"

# --- Broker ----------------------------------------------------------------------------------------
PORT="$("$ROOT/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
BOOTSTRAP="127.0.0.1:$PORT"
log "starting $SHALE on $BOOTSTRAP (log: $BENCH_DIR/shale.log)"
"$SHALE" serve --data-dir "$BENCH_DIR/data" --listen "$BOOTSTRAP" \
  --message-max-bytes 8388608 2>"$BENCH_DIR/shale.log" &
SHALE_PID=$!
for _ in $(seq 1 300); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  kill -0 "$SHALE_PID" 2>/dev/null || { cat "$BENCH_DIR/shale.log" >&2; exit 1; }
  sleep 0.1
done

TOPIC="bench-$(date +%s)"
RECORDS=$((BYTES / RECORD_BYTES))
if [ "$CLIENT" = java ]; then
  run_client() { java -Xmx2g -cp "$ROOT/tests/java/classes:$ROOT/tests/java/lib/*" ShaleBench "$@"; }
  CLIENT_DESC="Java client 4.3 (tests/java/ShaleBench.java)"
elif [ "$CLIENT" = kcat ]; then
  # kcat is librdkafka with no interpreter in between: the least client CPU per record here.
  # Records are lines from `yes` (record-sized, random base64), so they carry no key.
  kcat_produce=(-X "acks=$ACKS" -X linger.ms=10 -X batch.size=1048576 -X queue.buffering.max.kbytes=1048576
                -X message.max.bytes=8388608)
  kcat_consume=(-X fetch.max.bytes=67108864 -X max.partition.fetch.bytes=16777216)
  run_client() {
    local op="$1" bootstrap="$2" topic="$3" t0 t1 n
    if [ "$op" = produce ]; then
      local partitions="$4" total="$5" size="$6"
      "$ROOT/.venv/bin/python" - "$bootstrap" "$topic" "$partitions" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
b, t, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
admin = AdminClient({"bootstrap.servers": b})  # kept alive until the result arrives
admin.create_topics([NewTopic(t, n, 1)])[t].result(30)
PY
      local line
      line="$(head -c $((size * 3 / 4 + 4)) /dev/urandom | base64 -w0 | head -c "$size")"
      n=$((total / size))
      t0="$(seconds_now)"
      yes "$line" | head -n "$n" | kcat -b "$bootstrap" -P -t "$topic" "${kcat_produce[@]}"
      t1="$(seconds_now)"
      echo "RESULT op=produce records=$n bytes=$((n * size)) seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}') mb_per_s=$(rate $((n * size)) "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')") records_per_s=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", n/(b-a)}')"
    else
      local want="$4"
      t0="$(seconds_now)"
      # one byte of output per record, counted by wc
      n="$(kcat -b "$bootstrap" -C -t "$topic" -o beginning -e -q -f 'x' "${kcat_consume[@]}" | wc -c)"
      t1="$(seconds_now)"
      [ "$n" -ge "$want" ] || { echo "kcat consumed $n of $want records" >&2; return 1; }
      echo "RESULT op=consume records=$n bytes=$((n * RECORD_BYTES)) seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}') mb_per_s=$(rate $((n * RECORD_BYTES)) "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')") records_per_s=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", n/(b-a)}')"
    fi
  }
  CLIENT_DESC="kcat $(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\) .*librdkafka \([^ ]*\) .*/\1 (librdkafka \2)/p')"
else
  run_client() { "$ROOT/.venv/bin/python" "$ROOT/scripts/bench_python_client.py" "$@"; }
  CLIENT_DESC="librdkafka $("$ROOT/.venv/bin/python" -c 'import confluent_kafka as c; print(c.libversion()[0])') via confluent-kafka (scripts/bench_python_client.py)"
fi

# CPU seconds, to tell a client-bound run from a broker-bound one: the broker's from /proc, the
# client's from the shell's accounting of its waited-for children.
TICKS="$(getconf CLK_TCK)"
broker_cpu() { awk -v t="$TICKS" '{ print ($14 + $15) / t }' "/proc/$SHALE_PID/stat"; }
# `times` must run in this shell, not in a $(...) subshell, to see this shell's children.
children_cpu() {
  times >"$BENCH_DIR/times"
  tail -n 1 "$BENCH_DIR/times" | awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); n += a[1] * 60 + a[2] } print n }'
}
cpu_delta() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

log "produce: $RECORDS records of $RECORD_BYTES bytes into $PARTITIONS partitions, acks=$ACKS"
b0="$(broker_cpu)"; children_cpu >"$BENCH_DIR/c0"
STATUS=0
PRODUCE_LINE="$(run_client produce "$BOOTSTRAP" "$TOPIC" "$PARTITIONS" "$BYTES" "$RECORD_BYTES" | grep '^RESULT')" \
  || { STATUS=1; PRODUCE_LINE="RESULT op=produce mb_per_s=FAILED"; }
log "$PRODUCE_LINE"
b1="$(broker_cpu)"; children_cpu >"$BENCH_DIR/c1"
log "consume: $RECORDS records"
CONSUME_LINE="$(run_client consume "$BOOTSTRAP" "$TOPIC" "$RECORDS" | grep '^RESULT')" \
  || { STATUS=1; CONSUME_LINE="RESULT op=consume mb_per_s=FAILED"; }
log "$CONSUME_LINE"
b2="$(broker_cpu)"; children_cpu >"$BENCH_DIR/c2"
c0="$(cat "$BENCH_DIR/c0")"; c1="$(cat "$BENCH_DIR/c1")"; c2="$(cat "$BENCH_DIR/c2")"
PRODUCE_CPU="client $(cpu_delta "$c0" "$c1") s, broker $(cpu_delta "$b0" "$b1") s"
CONSUME_CPU="client $(cpu_delta "$c1" "$c2") s, broker $(cpu_delta "$b1" "$b2") s"

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
DATA_BYTES="$(du -sb "$BENCH_DIR/data" | cut -f1)"

kill -TERM "$SHALE_PID"
wait "$SHALE_PID" && SHUTDOWN="clean (exit 0)" || SHUTDOWN="exit code $?"
SHALE_PID=""
# acks=all: how many fdatasyncs the group commit needed (logged by the broker at shutdown).
GROUP_COMMIT="$(sed -n 's/.*acks=all group commit since start.*produces=\([0-9]*\) rounds=\([0-9]*\) fdatasyncs=\([0-9]*\).*/\1 acks=all produce requests, \2 rounds, \3 fdatasyncs/p' "$BENCH_DIR/shale.log" | tail -n 1)"

cat <<EOF

Shale throughput benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, release build)
  client        : $CLIENT_DESC
  workload      : $RECORDS records x $RECORD_BYTES B = $((BYTES >> 20)) MiB, $PARTITIONS partitions, acks=$ACKS, no compression
  disk (dd)     : $(printf '%8s' "$DISK_MBS") MB/s   sequential write of $((DD_BYTES >> 20)) MiB with fdatasync, same filesystem
  produce       : $(printf '%8s' "$(field mb_per_s "$PRODUCE_LINE")") MB/s   $(field records_per_s "$PRODUCE_LINE") records/s, $(field seconds "$PRODUCE_LINE") s; CPU: $PRODUCE_CPU
  consume       : $(printf '%8s' "$(field mb_per_s "$CONSUME_LINE")") MB/s   $(field records_per_s "$CONSUME_LINE") records/s, $(field seconds "$CONSUME_LINE") s; CPU: $CONSUME_CPU
  on disk       : $((DATA_BYTES >> 20)) MiB in the data dir; broker shutdown: $SHUTDOWN
  group commit  : ${GROUP_COMMIT:-not logged}
  (MB = 10^6 bytes of record values; the consume pass reads what was just written, mostly from the page cache;
   CPU is per phase, client including JVM start-up; $(nproc) cores shared by client, broker and kernel)
EOF
if [ "$STATUS" -ne 0 ]; then
  log "a phase failed; the broker log was $BENCH_DIR/shale.log (use --keep to keep it)"
  tail -n 20 "$BENCH_DIR/shale.log" >&2
fi
exit "$STATUS"
