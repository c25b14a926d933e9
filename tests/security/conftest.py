"""Security-tier fixtures: the api tier's real app with a fake classifier (the same factory, re-exported), a
redis-server of the test's own, and the app served by a real uvicorn on a loopback port (`live`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from backend.api.app import create_app
from backend.api.served import Classifier, ServedModel
from backend.config import Settings
from backend.events import MemoryEventLog
from backend.store import ModelStore, ModelVersion
from devtools.labelstudio_server import free_port
from tests.api.conftest import (  # noqa: F401  (fixtures pytest finds by name)
    FakeClassifier,
    backend,
    clean_env,
    fake_classifier,
    make_backend,
    secured,
    store,
    tiny_checkpoint,
    tiny_engine,
)
from tests.redisdb import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """An empty redis-server of this test's own on a free loopback port."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@dataclass
class Live:
    """The app under a real uvicorn server on loopback."""

    url: str
    settings: Settings
    events: MemoryEventLog
    classifier: FakeClassifier
    app: Any

    @property
    def inference(self) -> Any:
        return self.app.state.backend.inference


@contextmanager
def serving(app: Any, port: int) -> Iterator[None]:
    """Run uvicorn in a thread until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def live(store: ModelStore, fake_classifier: FakeClassifier) -> Iterator[Callable[..., Live]]:  # noqa: F811
    """Factory: the app with settings overrides served by uvicorn, model loaded, events kept in memory."""
    with_stack: list[Any] = []

    def start(**overrides: Any) -> Live:
        overrides.setdefault("redis_url", "redis://127.0.0.1:1/0")

        def loader(version: ModelVersion) -> Classifier:
            return fake_classifier

        settings = Settings(model_dir=store.root, **overrides)
        served = ServedModel(store, loader)
        events = MemoryEventLog()
        app = create_app(settings, served=served, events=events)
        port = free_port()
        context = serving(app, port)
        context.__enter__()
        with_stack.append(context)
        assert served.wait(30)
        return Live(f"http://127.0.0.1:{port}", settings, events, fake_classifier, app)

    yield start
    for context in reversed(with_stack):
        context.__exit__(None, None, None)
