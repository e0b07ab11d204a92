#!/usr/bin/env bash
# Cold reads from the remote tier against SeaweedFS (S3), beside the same server's plain GET
# rate for the same bytes, measured in the same run; PUTs per GiB uploaded and GETs per GiB read.
# See docs/bench.md ("Cold reads from the remote tier").
#
#   scripts/bench-tiering.sh [--bytes N] [--partitions N] [--segment-bytes N] [--record-bytes N]
#                            [--cache-bytes N] [--chunk-bytes N] [--concurrency N]
#                            [--no-warm] [--no-local] [--keep]
#
# Defaults: ~1 GiB tiered in 128 MiB segments over 4 partitions, 16 KiB incompressible records,
# a 2 GiB read cache in 4 MiB chunks, plain GETs 8 at a time. The work dir (broker data, the
# SeaweedFS data, logs) is under target/ (BENCH_DIR_PARENT=/path puts it elsewhere) and is
# deleted at the end unless --keep. BENCH_SHALE_BIN=path runs that binary instead of building
# target/release/shale.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

KEEP=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) KEEP=1; shift ;;
    --no-warm|--no-local) args+=("$1"); shift ;;
    --bytes|--partitions|--segment-bytes|--record-bytes|--cache-bytes|--chunk-bytes|--concurrency)
      args+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

log() { printf '[bench-tiering] %s\n' "$*" >&2; }

# shellcheck source=scripts/bench-setup.sh
. "$ROOT/scripts/bench-setup.sh"
bench_setup bench-tiering
WORK="$BENCH_WORK"
cleanup() {
  # bench_tiering.py stops its SeaweedFS itself; this is for an interrupted run.
  SHALE_S3_STATE_DIR="$WORK/s3" scripts/s3-test-server.sh stop >/dev/null 2>&1 || true
  if [ "$KEEP" -eq 0 ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT

"$ROOT/.venv/bin/python" "$ROOT/scripts/bench_tiering.py" --shale "$SHALE" \
  --workdir "$WORK" "${args[@]}"
