# Sourced by the benchmark scripts (bench.sh, bench-tiering.sh, bench-archive.sh); needs ROOT
# and a `log` function. `bench_shale_binary` sets SHALE to the broker binary to measure:
# BENCH_SHALE_BIN=path runs that binary (e.g. one built from an older commit, for before/after
# runs on the same box); otherwise target/release/shale, built first.
bench_shale_binary() {
  if [ -n "${BENCH_SHALE_BIN:-}" ]; then
    SHALE="$BENCH_SHALE_BIN"
    log "using $SHALE (BENCH_SHALE_BIN; not building)"
  else
    log "cargo build --release -p shale-broker"
    cargo build --release -p shale-broker
    SHALE="$ROOT/target/release/shale"
  fi
}
