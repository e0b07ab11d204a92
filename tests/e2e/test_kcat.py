"""kcat (Debian's, on librdkafka 2.0.2, strict about ApiVersions v3 tagged fields) produces and consumes."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from clients import cf_create_topic, unique

KCAT = shutil.which("kcat") or shutil.which("kafkacat")


@pytest.mark.skipif(KCAT is None, reason="kcat is not installed (scripts/setup-test-env.sh installs "
                                         "the Debian package kcat)")
def test_kcat_produce_consume(broker):
    """kcat lists metadata, produces keyed lines with -P and reads them back with -C -e at offsets 0.."""
    topic = unique("kcat")
    cf_create_topic(broker.bootstrap, topic, 1)

    def kcat(*args, stdin=None):
        proc = subprocess.run([KCAT, "-b", broker.bootstrap, *args], input=stdin,
                              capture_output=True, timeout=60)
        assert proc.returncode == 0, (f"kcat {' '.join(args)} exited {proc.returncode}\n"
                                      f"{proc.stderr.decode(errors='replace')}")
        return proc.stdout.decode()

    listing = kcat("-L", "-t", topic)
    assert f'topic "{topic}" with 1 partitions' in listing, listing

    lines = [f"key{i}:value {i}" for i in range(50)]
    kcat("-P", "-t", topic, "-p", "0", "-K", ":", stdin=("\n".join(lines) + "\n").encode())
    out = kcat("-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-f", "%o|%k|%s\n")
    got = out.splitlines()
    want = [f"{i}|key{i}|value {i}" for i in range(50)]
    assert got == want, f"kcat read back:\n{out[:2000]}"
