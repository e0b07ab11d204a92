"""Object stores for the tiered-storage tests: the local-directory default and SeaweedFS (S3).

`S3Server` drives scripts/s3-test-server.sh with its own state dir (so a test can stop and start
its server without touching anyone else's). A `Store` is one place a broker tiers to (a
directory, or a unique prefix in the test bucket): the flags and environment that point a broker
at it, a listing of the objects in it, and a way to make it fail and recover.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from s3client import S3Client

REPO = Path(__file__).resolve().parents[2]
S3_SCRIPT = REPO / "scripts" / "s3-test-server.sh"
S3_VARS = ("SHALE_TEST_S3_ENDPOINT", "SHALE_TEST_S3_BUCKET", "AWS_ACCESS_KEY_ID",
           "AWS_SECRET_ACCESS_KEY", "AWS_REGION")


def parse_exports(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            k, v = line[len("export "):].split("=", 1)
            env[k] = v
    return env


class S3Server:
    """One SeaweedFS server run by scripts/s3-test-server.sh in its own state dir."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.env: dict[str, str] = {}

    def _run(self, cmd: str, timeout: float = 180) -> str:
        env = dict(os.environ, SHALE_S3_STATE_DIR=str(self.state_dir))
        proc = subprocess.run([str(S3_SCRIPT), cmd], capture_output=True, text=True,
                              timeout=timeout, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"s3-test-server.sh {cmd} failed ({proc.returncode}):\n"
                               f"{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def start(self) -> dict[str, str]:
        self.env = parse_exports(self._run("start"))
        return self.env

    def down(self) -> None:
        """Stops the server but keeps its data and ports: the store is unreachable."""
        self._run("down")

    def up(self) -> None:
        self.env = parse_exports(self._run("up"))

    def stop(self) -> None:
        self._run("stop")

    @property
    def log_path(self) -> Path:
        return self.state_dir / "weed.log"


@dataclass
class Objects:
    """What a store holds: key (relative to the store's root or prefix) -> size."""
    sizes: dict[str, int]

    def under(self, prefix: str) -> dict[str, int]:
        return {k: v for k, v in self.sizes.items() if k.startswith(prefix)}

    def segment_logs(self, topic: str, partition: int) -> list[tuple[int, str, int]]:
        """(base offset, key, size) of the segment .log objects of one partition, by offset."""
        out = []
        for k, size in self.sizes.items():
            parts = k.split("/")
            # topics/<topic>-<topic id>/<partition>/<base:020>-<segment id>.log
            if (len(parts) == 4 and parts[0] == "topics" and parts[1].startswith(topic + "-")
                    and parts[2] == str(partition) and parts[3].endswith(".log")):
                out.append((int(parts[3].split("-")[0]), k, size))
        return sorted(out)


class Store:
    """Where a broker tiers to. kind is "local" or "s3"."""

    kind = "?"

    def settings(self) -> dict:
        """Broker flags that point a broker at this store."""
        raise NotImplementedError

    def env(self) -> dict:
        return {}

    def bind(self, broker) -> None:
        """Called with each broker started on this store."""

    def objects(self) -> Objects:
        raise NotImplementedError

    def break_(self) -> None:
        """Makes the store fail every request."""
        raise NotImplementedError

    def fix(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class LocalStore(Store):
    """The embedded default: <data_dir>/remote of the first broker. Further brokers (a restore)
    are pointed at the same directory with remote_storage_url=file://DIR."""

    kind = "local"

    def __init__(self):
        self.root: Path | None = None
        self.away: Path | None = None

    def settings(self) -> dict:
        return {} if self.root is None else {"remote_storage_url": f"file://{self.root}"}

    def bind(self, broker) -> None:
        if self.root is None:
            self.root = broker.data_dir / "remote"

    def objects(self) -> Objects:
        sizes = {}
        if self.root is not None and self.root.is_dir():
            for path in self.root.rglob("*"):
                try:
                    if path.is_file():
                        sizes[str(path.relative_to(self.root))] = path.stat().st_size
                except FileNotFoundError:
                    pass
        return Objects(sizes)

    def break_(self) -> None:
        # The tests run as root, for whom permissions are no obstacle. Instead the directory
        # and a plain file swap places atomically (renameat2 RENAME_EXCHANGE): every read and
        # write under the store's root then fails, and the broker cannot recreate the directory
        # in between. fix() swaps them back.
        assert self.root is not None and self.away is None
        self.away = self.root.with_name(self.root.name + ".away")
        self.away.write_text("the object store is down (test)\n")
        _exchange(self.root, self.away)

    def fix(self) -> None:
        assert self.root is not None and self.away is not None
        _exchange(self.root, self.away)
        self.away.unlink()
        self.away = None

    def describe(self) -> str:
        return f"local directory {self.root}"


class S3Store(Store):
    """A unique prefix in the SeaweedFS test bucket."""

    kind = "s3"

    def __init__(self, server_env: dict[str, str], server: S3Server | None = None):
        self.server_env = server_env
        self.server = server  # only a store with its own server can be broken
        self.prefix = f"e2e-{uuid.uuid4().hex[:12]}"

    @property
    def bucket(self) -> str:
        return self.server_env["SHALE_TEST_S3_BUCKET"]

    def settings(self) -> dict:
        return {
            "remote_storage_url": f"s3://{self.bucket}/{self.prefix}",
            "remote_storage_endpoint": self.server_env["SHALE_TEST_S3_ENDPOINT"],
            "remote_storage_path_style": True,
        }

    def env(self) -> dict:
        return {k: self.server_env[k] for k in S3_VARS[2:] if k in self.server_env}

    def client(self) -> S3Client:
        e = self.server_env
        return S3Client(e["SHALE_TEST_S3_ENDPOINT"], self.bucket, e["AWS_ACCESS_KEY_ID"],
                        e["AWS_SECRET_ACCESS_KEY"], e.get("AWS_REGION", "us-east-1"))

    def objects(self) -> Objects:
        with self.client() as c:
            listed = c.list(self.prefix + "/")
        return Objects({o.key[len(self.prefix) + 1:]: o.size for o in listed})

    def break_(self) -> None:
        assert self.server is not None, "only a store with its own server can be stopped"
        self.server.down()

    def fix(self) -> None:
        assert self.server is not None
        self.server.up()

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self.server_env['SHALE_TEST_S3_ENDPOINT']}"


def _exchange(a: Path, b: Path) -> None:
    """Atomically swaps two paths (Linux renameat2 with RENAME_EXCHANGE)."""
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"renameat2(RENAME_EXCHANGE): {os.strerror(err)}", str(a), str(b))


def local_segments(data_dir: Path, topic: str, partition: int) -> list[tuple[int, int]]:
    """(base offset, bytes) of the local .log files of a partition, by offset."""
    out = []
    d = data_dir / f"{topic}-{partition}"
    for f in d.glob("*.log"):
        try:
            out.append((int(f.stem), f.stat().st_size))
        except (FileNotFoundError, ValueError):
            pass
    return sorted(out)


def wait_for(cond, timeout: float, what, interval: float = 0.25):
    """Polls cond() until it returns a truthy value, which is returned; fails after timeout with
    what() (or what) describing the last state."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for "
                                 f"{what() if callable(what) else what}")
        time.sleep(interval)
