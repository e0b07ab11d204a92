#!/usr/bin/env bash
# THE test command: installs what the tests need, builds the broker, runs the Rust tests and the
# end-to-end tests against the real binary with real Kafka clients. Exits non-zero on any failure.
#
#   scripts/test.sh                 everything
#   scripts/test.sh -k admin        extra arguments go to pytest (e.g. one e2e test file or -k)
#
# Environment: SHALE_SKIP_RUST_TESTS=1 skips the cargo test step (handy while iterating on e2e).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*" >&2; }
failed=()

step "setting up the test environment"
scripts/setup-test-env.sh || { echo "setup-test-env.sh failed" >&2; exit 1; }

step "cargo build -p shale-broker"
cargo build -p shale-broker || { echo "the broker does not build" >&2; exit 1; }

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
