#!/usr/bin/env bash
# THE test command: installs what the tests need, builds the broker, runs the Rust tests and the
# end-to-end tests against the real binary with real Kafka clients. Exits non-zero on any failure.
#
#   scripts/test.sh                 everything
#   scripts/test.sh -k admin        extra arguments go to pytest (e.g. one e2e test file or -k)
#
# An S3-protocol server (SeaweedFS, scripts/s3-test-server.sh) is started before the Rust tests
# and stopped at the end, so the tiering crate's S3 conformance tests and tests/e2e/test_tiering.py
# run against it (SHALE_TEST_S3_ENDPOINT and the AWS_* variables are exported to both).
#
# With CI=true (or SHALE_CHECK_STYLE=1) it first runs `cargo fmt --check` and
# `cargo clippy --workspace --all-targets -- -D warnings`.
# Environment: SHALE_SKIP_RUST_TESTS=1 skips the cargo test step (handy while iterating on e2e).
# SHALE_TEST_S3_ENDPOINT already set: that server is used and none is started.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*" >&2; }
failed=()

step "setting up the test environment"
scripts/setup-test-env.sh || { echo "setup-test-env.sh failed" >&2; exit 1; }

if [ "${CI:-}" = "true" ] || [ "${SHALE_CHECK_STYLE:-0}" = "1" ]; then
  # Fast, before the tests: a formatting or lint failure fails CI without waiting for them.
  step "cargo fmt --check"
  cargo fmt --all --check || { echo "cargo fmt --check failed: run cargo fmt --all" >&2; exit 1; }
  step "cargo clippy --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings || { echo "clippy found warnings" >&2; exit 1; }
fi

step "cargo build -p shale-broker"
cargo build -p shale-broker || { echo "the broker does not build" >&2; exit 1; }

if [ -z "${SHALE_TEST_S3_ENDPOINT:-}" ]; then
  step "starting the S3 test server (SeaweedFS)"
  # A state dir of this run's own, so a server someone started by hand (in the default state
  # dir) is neither reused nor stopped by this run.
  S3_STATE_DIR="$ROOT/target/s3-test-server-run-$$"
  stop_s3() { SHALE_S3_STATE_DIR="$S3_STATE_DIR" scripts/s3-test-server.sh stop; }
  trap stop_s3 EXIT
  trap 'exit 130' INT TERM
  s3_env="$(SHALE_S3_STATE_DIR="$S3_STATE_DIR" scripts/s3-test-server.sh start)" \
    || { echo "cannot start the S3 test server (scripts/s3-test-server.sh)" >&2; exit 1; }
  eval "$s3_env"  # export SHALE_TEST_S3_ENDPOINT=... AWS_ACCESS_KEY_ID=... (for cargo and pytest)
else
  echo "using the S3 server at $SHALE_TEST_S3_ENDPOINT" >&2
fi

if [ "${SHALE_SKIP_RUST_TESTS:-0}" != "1" ]; then
  if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --workspace"
    cargo nextest run --workspace --no-tests=warn || failed+=("rust tests (nextest)")
  else
    step "cargo test --workspace (cargo-nextest not installed)"
    cargo test --workspace || failed+=("rust tests (cargo test)")
  fi
fi

step "end-to-end tests (tests/e2e)"
pytest_args=(-q -rfE --durations=15)
SHALE_BIN="$ROOT/target/debug/shale" .venv/bin/pytest "${pytest_args[@]}" tests/e2e "$@" \
  || failed+=("end-to-end tests")

if [ "${#failed[@]}" -gt 0 ]; then
  printf '\nFAILED: %s\n' "${failed[*]}" >&2
  exit 1
fi
