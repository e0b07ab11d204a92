"""Fixtures that run the real `shale` binary for the end-to-end tests.

Nothing is built here: scripts/test.sh builds first. The binary is $SHALE_BIN, or
target/debug/shale at the repo root. Each broker gets a free port on 127.0.0.1, a temporary data
dir and small segments; its stderr goes to a file that is shown when a test fails. Teardown sends
SIGTERM and fails the test if the broker did not exit 0, or if any of its runs panicked.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JAVA_DIR = REPO / "tests" / "java"

# Small segments so every test that writes a few MB rolls segments.
DEFAULT_SETTINGS = {
    "log_segment_bytes": 1048576,
}


def shale_bin() -> Path:
    path = Path(os.environ.get("SHALE_BIN") or REPO / "target" / "debug" / "shale").resolve()
    if not path.is_file():
        pytest.fail(f"shale binary not found at {path}: run scripts/test.sh, or "
                    f"`cargo build -p shale-broker` and set SHALE_BIN", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerExited(Exception):
    pass


class Broker:
    """One `shale serve` process, restartable on the same port and data dir."""

    def __init__(self, binary: Path, data_dir: Path, log_dir: Path, settings: dict,
                 env: dict | None = None, config_file: Path | None = None):
        self.binary = binary
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.settings = dict(settings)
        self.env = dict(env or {})  # SHALE_* variables for this broker only
        self.config_file = config_file
        self.host = "127.0.0.1"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.runs: list[dict] = []  # per start: log path, how it ended, exit code
        self.problems: list[str] = []  # unclean exits seen on restarts, reported at teardown

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def args(self) -> list[str]:
        args = [str(self.binary), "serve", "--data-dir", str(self.data_dir),
                "--listen", self.bootstrap]
        if self.config_file is not None:
            args += ["--config", str(self.config_file)]
        for name, value in self.settings.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            args.append(f"--{name.replace('_', '-')}={value}")  # "=" form: values may start with "-"
        return args

    def start(self, timeout: float = 30.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        log_path = self.log_dir / f"shale-{self.port}-run{len(self.runs)}.stderr"
        # Settings come from the flags only; SHALE_LOG (the log filter) is let through.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SHALE_") or k == "SHALE_LOG"}
        env.update(self.env)
        env.setdefault("RUST_BACKTRACE", "1")
        log = open(log_path, "wb")
        self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.data_dir.parent)
        log.close()
        self.runs.append({"log": log_path, "pid": self.proc.pid, "ended": None, "rc": None})
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.runs[-1].update(ended="exited by itself during startup", rc=rc)
                raise BrokerExited(f"shale exited with {rc} before listening on {self.bootstrap}\n"
                                   f"{' '.join(self.args())}\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BrokerExited(f"shale did not listen on {self.bootstrap} within {timeout}s\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Sends sig and waits; returns the exit code (negative: killed by that signal)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.problems.append(f"run {len(self.runs) - 1}: did not exit within {timeout}s "
                                     f"of {signal.Signals(sig).name}; killed")
                self.proc.kill()
                self.proc.wait()
            how = signal.Signals(sig).name
        else:
            how = "had already exited"
            self.problems.append(f"run {len(self.runs) - 1}: exited by itself with "
                                 f"{self.proc.returncode} before {signal.Signals(sig).name}")
        rc = self.proc.returncode
        self.runs[-1].update(ended=how, rc=rc)
        if sig == signal.SIGTERM and rc != 0:
            self.problems.append(f"run {len(self.runs) - 1}: exit code {rc} after SIGTERM "
                                 f"(expected a clean shutdown, 0)")
        return rc

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)

    def restart(self, sig: int = signal.SIGTERM) -> None:
        """Stops with sig and starts again on the same port and data dir."""
        rc = self.stop(sig)
        if sig == signal.SIGTERM:
            assert rc == 0, f"shale exited with {rc} on SIGTERM\n{self.log_tail()}"
        self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self) -> None:
        assert self.alive(), (f"shale is not running (exit code {self.proc.returncode})\n"
                              f"{self.log_tail()}")

    def peak_rss_bytes(self) -> int:
        """Peak resident memory of the current run (VmHWM)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("VmHWM not found")

    def log_text(self, run: int = -1) -> str:
        return self.runs[run]["log"].read_text(errors="replace") if self.runs else ""

    def log_tail(self, lines: int = 60) -> str:
        if not self.runs:
            return "(no runs)"
        text = self.log_text().splitlines()
        return (f"--- shale stderr, run {len(self.runs) - 1}, last {lines} lines "
                f"({self.runs[-1]['log']}) ---\n" + "\n".join(text[-lines:]))

    def panics(self) -> list[str]:
        found = []
        for i, run in enumerate(self.runs):
            text = run["log"].read_text(errors="replace").splitlines()
            for n, line in enumerate(text):
                if "panicked" in line:
                    found.append(f"run {i}: " + "\n".join(text[n:n + 12]))
        return found


class BrokerFactory:
    """Starts brokers with given settings; all are stopped and checked at teardown."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.brokers: list[Broker] = []

    def __call__(self, env: dict | None = None, config_toml: str | None = None,
                 start: bool = True, **settings) -> Broker:
        """settings become flags (num_partitions=3 -> --num-partitions 3); env adds SHALE_*
        variables; config_toml is written to a file passed with --config."""
        n = len(self.brokers)
        data_dir = self.tmp_path / f"broker{n}" / "data"
        data_dir.mkdir(parents=True)
        config_file = None
        if config_toml is not None:
            config_file = data_dir.parent / "shale.toml"
            config_file.write_text(config_toml)
        merged = {**DEFAULT_SETTINGS, **settings}
        b = Broker(shale_bin(), data_dir, data_dir.parent, merged, env, config_file)
        self.brokers.append(b)
        if start:
            b.start()
        return b

    def teardown(self, test_failed: bool) -> list[str]:
        problems = []
        for b in self.brokers:
            if b.runs and b.runs[-1]["ended"] is None:
                b.stop(signal.SIGTERM)  # also records a run that exited by itself
            problems += [f"broker {b.bootstrap}: {p}" for p in b.problems]
            problems += [f"broker {b.bootstrap} panicked:\n{p}" for p in b.panics()]
            if test_failed or b.problems:
                print(b.log_tail(120))
        return problems


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def broker_factory(request, tmp_path):
    """Call with settings (e.g. auto_create_topics_enable=False) to start a broker."""
    factory = BrokerFactory(tmp_path)
    yield factory
    rep = getattr(request.node, "rep_call", None)
    problems = factory.teardown(test_failed=rep is not None and rep.failed)
    if problems:
        pytest.fail("broker shutdown check failed:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A broker with the default test settings (small segments)."""
    return broker_factory()


@pytest.fixture(scope="session")
def java_cmd() -> list[str]:
    """`java -cp ...` for the compiled tools in tests/java, or a failure saying how to build them."""
    classes, lib = JAVA_DIR / "classes", JAVA_DIR / "lib"
    if not (classes / "ShaleClientCheck.class").is_file() or not list(lib.glob("*.jar")):
        pytest.fail("Java test tools are not built: run scripts/setup-test-env.sh", pytrace=False)
    return ["java", "-Xss2m", "-cp", f"{classes}:{lib}/*", "ShaleClientCheck"]
