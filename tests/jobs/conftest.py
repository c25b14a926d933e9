"""Redis-tier fixtures: a real Redis (our own redis-server, database 15, flushed before and after each test) and
the rq tasks run in-process by the project's own HeartbeatWorker in burst mode, with a fake Label Studio and
the fake classifier installed as the worker context."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from backend.config import Settings
from backend.jobs import queues, tasks
from backend.jobs.queues import QUEUES, SERIALIZER
from backend.jobs.worker import HeartbeatWorker
from backend.model.cache import ModelCache
from backend.store import ModelStore
from tests.api.conftest import FakeClassifier
from tests.jobs.fakes import FakeStudio
from tests.redisdb import flushed_test_db


@pytest.fixture
def redis_conn() -> Iterator[redis.Redis]:
    """Database 15 of the tests' own redis-server, flushed around the test."""
    for client, _ in flushed_test_db():
        yield client


@pytest.fixture
def studio() -> FakeStudio:
    return FakeStudio(25)


@pytest.fixture
def context(tmp_path: Path, studio: FakeStudio, monkeypatch: pytest.MonkeyPatch) -> Iterator[tasks.WorkerContext]:
    """The worker context with fakes; retries are immediate so a burst worker sees them."""
    monkeypatch.setattr(queues, "RETRY_INTERVALS_S", [0])
    store = ModelStore(tmp_path / "models")
    (store.versions_dir / "model-v1" / "model").mkdir(parents=True)  # a stored version the fake loader loads
    (store.versions_dir / "model-v1" / "meta.json").write_text('{"version": "model-v1"}')
    models = ModelCache(store, lambda v: FakeClassifier())
    ctx = tasks.WorkerContext(settings=Settings(job_retries=2), store=store, models=models,
                              studio_factory=lambda: studio)  # type: ignore[arg-type,return-value]
    tasks.install(ctx)
    yield ctx
    tasks.install(None)


def work(connection: Any) -> None:
    """Run every queued job (and immediate retries) in this process until the queues are empty."""
    worker = HeartbeatWorker(list(QUEUES), connection=connection, serializer=SERIALIZER)
    worker.work(burst=True)
