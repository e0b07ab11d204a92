"""Hardening of the single node, as an operator meets it: one broker per data dir.

Each test runs the real `shale` binary; a second process is started by hand when the test is about
two processes on one directory.
"""

from __future__ import annotations

import os
import subprocess
import time

from clients import cf_consume_all, cf_create_topic, cf_produce, make_records, now_ms, unique
from conftest import free_port


def test_second_broker_on_a_locked_data_dir_exits_and_the_first_is_unharmed(broker):
    topic = unique("locked")
    cf_create_topic(broker.bootstrap, topic, 1)
    before = cf_produce(broker.bootstrap, topic, make_records("a", 50, 1, now_ms(), 1))

    args = broker.args()
    listen = args.index("--listen")
    args[listen + 1] = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHALE_") or k == "SHALE_LOG"}
    started = time.monotonic()
    second = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, env=env,
                            timeout=30)
    elapsed = time.monotonic() - started
    text = (second.stdout + second.stderr).decode(errors="replace")
    print(f"second broker exited with {second.returncode} after {elapsed:.3f}s: {text.strip()}")
    assert second.returncode == 1, text
    assert str(broker.data_dir) in text, f"the message does not name the data dir:\n{text}"
    assert f"pid {broker.proc.pid}" in text, f"the message does not name the holder:\n{text}"
    assert "panicked" not in text and "backtrace" not in text.lower(), text

    # The first broker noticed nothing: it still takes and serves records.
    broker.assert_alive()
    after = cf_produce(broker.bootstrap, topic, make_records("b", 50, 2, now_ms(), 1))
    got = cf_consume_all(broker.bootstrap, topic, [0])[0]
    assert [c.offset for c in got] == [d.offset for d in before + after]
    assert [c.value for c in got] == [d.rec.value for d in before + after]
    # And once it has stopped (however it stopped), the directory is free again.
    broker.kill()
    broker.start()
    assert len(cf_consume_all(broker.bootstrap, topic, [0])[0]) == 100
