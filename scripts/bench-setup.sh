# Sourced by the benchmark scripts (bench.sh, bench-tiering.sh, bench-archive.sh); needs ROOT
# and a `log` function.
#
# `bench_setup NAME` installs what the benchmarks need (scripts/setup-test-env.sh), sets SHALE
# to the broker binary to measure and BENCH_WORK to a fresh work dir `NAME.XXXXXX` under
# target/ (BENCH_DIR_PARENT=/path puts it elsewhere). BENCH_SHALE_BIN=path runs that binary
# (e.g. one built from an older commit, for before/after runs on the same box); otherwise
# target/release/shale, built first.
bench_setup() {
  "$ROOT/scripts/setup-test-env.sh"
  if [ -n "${BENCH_SHALE_BIN:-}" ]; then
    SHALE="$BENCH_SHALE_BIN"
    log "using $SHALE (BENCH_SHALE_BIN; not building)"
  else
    log "cargo build --release -p shale-broker"
    cargo build --release -p shale-broker
    SHALE="$ROOT/target/release/shale"
  fi
  local parent="${BENCH_DIR_PARENT:-$ROOT/target}"
  mkdir -p "$parent"
  BENCH_WORK="$(mktemp -d "$parent/$1.XXXXXX")"
}
