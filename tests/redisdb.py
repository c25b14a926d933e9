"""Redis for tests: database 15 of REDIS_URL's server for the redis tier (flushed before and after), and a
throw-away redis-server of a test's own (RedisServer) for anything that counts keys or restarts Redis."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from devtools.labelstudio_server import free_port

TEST_DB = 15


def flushed_test_db() -> Iterator[tuple[redis.Redis, str]]:
    """(client, url) of database 15 on REDIS_URL's server (default 127.0.0.1:6379), empty; emptied again after."""
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0]
    url = f"{base}/{TEST_DB}"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {base} is unreachable ({exc}): run `make redis`")
    client.flushdb()
    yield client, url
    client.flushdb()


@dataclass
class RedisServer:
    """A throw-away redis-server on a free loopback port that a test may stop and start again (empty)."""

    dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run `make redis` (it installs Debian's redis-server)")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.dir)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(100):
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return
            time.sleep(0.05)
        pytest.fail("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
