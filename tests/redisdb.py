"""Redis for tests, always a redis-server of the tests' own on a free loopback port, never a database someone else
uses: one per test process for the redis tier (database 15, flushed before and after each test), and one per test
(RedisServer) for anything that counts keys or restarts Redis."""

from __future__ import annotations

import atexit
import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from devtools.labelstudio_server import free_port

TEST_DB = 15


_SHARED: list[RedisServer] = []


def shared_server() -> RedisServer:
    """This test process's own redis-server (started on first use, stopped at exit)."""
    if not _SHARED:
        server = RedisServer(Path(tempfile.mkdtemp(prefix="redis-tests-")))
        server.start()
        atexit.register(server.stop)
        _SHARED.append(server)
    return _SHARED[0]


def flushed_test_db() -> Iterator[tuple[redis.Redis, str]]:
    """(client, url) of database 15 on this process's own redis-server, empty; emptied again after."""
    url = shared_server().url.rsplit("/", 1)[0] + f"/{TEST_DB}"
    client = redis.Redis.from_url(url)
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
