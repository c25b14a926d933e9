"""The Redis database the redis-tier tests use: REDIS_URL's server, database 15, flushed before and after."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

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
