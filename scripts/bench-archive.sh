#!/usr/bin/env bash
# Throughput of the Parquet archive job in MiB/s of records per core (the broker's CPU seconds),
# beside what this machine's one core does with the same bytes in the same run (`cat`, and
# `zstd -1/-3 -T1`). See docs/bench.md ("Parquet archive throughput").
#
#   scripts/bench-archive.sh [--bytes N] [--partitions N] [--segment-bytes N] [--record-bytes N]
#                            [--compression none|lz4|zstd|gzip|snappy] [--file-bytes N]
#                            [--concurrency N] [--zstd-level N] [--perf] [--keep]
#
# Defaults: 1 GiB of 1 KiB JSON-ish records (key, 2 headers) produced with lz4 into 4 partitions
# of 64 MiB segments, archived with archive.file.bytes=128 MiB and archive_concurrency=1.
# --perf also samples the broker with `perf record` while it archives (and prints the top
# symbols; the sampling costs CPU, so use it to see where the time goes, not for the figure).
# The work dir (broker data, the local store, logs) is under target/ (BENCH_DIR_PARENT=/path
# puts it elsewhere) and is deleted at the end unless --keep.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

KEEP=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) KEEP=1; shift ;;
    --perf) args+=("$1"); shift ;;
    --bytes|--partitions|--segment-bytes|--record-bytes|--compression|--file-bytes|--concurrency|--zstd-level)
      [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
      args+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

log() { printf '[bench-archive] %s\n' "$*" >&2; }

command -v zstd >/dev/null 2>&1 || { log "zstd (the CLI) is needed for the baseline"; exit 1; }
# shellcheck source=scripts/bench-setup.sh
. "$ROOT/scripts/bench-setup.sh"
bench_setup bench-archive
WORK="$BENCH_WORK"
cleanup() {
  # bench_archive.py stops its broker itself, also when it fails.
  if [ "$KEEP" -eq 0 ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT

"$ROOT/.venv/bin/python" "$ROOT/scripts/bench_archive.py" --shale "$SHALE" \
  --workdir "$WORK" "${args[@]}"
