"""API-tier fixtures: the real app from create_app, a real model store, a fake (or tiny real) classifier.

The store holds one version published from a tiny random DistilBERT built by tests/modelfactory, so version
strings, /versions and the production loader are real; most tests serve it through FakeClassifier, whose
predictions are a pure function of the text (so the tests can say which result belongs to which task).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.api.served import Classifier, Loader, ServedModel
from backend.config import Settings
from backend.errors import TooManyTokens
from backend.events import Event, EventLog, MemoryEventLog
from backend.model.engine import ONNX_INT8
from backend.model.engine_build import GateRows, build_engine
from backend.model.types import Example, Prediction
from backend.store import ModelStore, ModelVersion
from tests.modelfactory import build_distilbert

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ls"
USER = "label-studio"
PASSWORD = "pw-Zq8v1cW3rT6yN0aB"
WEBHOOK_SECRET = "wh-Kp4s9dXe2uLm7hJf"
AUTH = (USER, PASSWORD)


def ls_payload(name: str) -> dict[str, Any]:
    """A real Label Studio 1.23.2 request body from tests/fixtures/ls (a fresh copy per call)."""
    payload: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return payload


def sentiment_config(
    *,
    choices: str = '<Choice value="Positive"/><Choice value="Negative"/>',
    from_name: str = "sentiment",
    to_name: str = "text",
    key: str = "text",
) -> str:
    """A Label Studio text classification config with the given names."""
    return (
        f'<View><Text name="{to_name}" value="${key}"/>'
        f'<Choices name="{from_name}" toName="{to_name}" choice="single">{choices}</Choices></View>'
    )


class FakeClassifier:
    """Deterministic stand-in for SentimentClassifier: label and score follow from the text alone."""

    labels = ("NEGATIVE", "POSITIVE")

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.error: Exception | None = None

    @staticmethod
    def expected(text: str) -> Prediction:
        """What predict answers for a text."""
        digest = hashlib.sha256(text.encode()).digest()
        label = "POSITIVE" if digest[0] % 2 else "NEGATIVE"
        score = 0.5 + digest[1] / 512  # in [0.5, 1.0)
        return Prediction(label=label, score=score, probs={label: score})

    def predict(self, texts: Sequence[str], *, max_tokens: int | None = None) -> list[Prediction]:
        """Like SentimentClassifier.predict, with a whitespace-separated word as a word piece."""
        self.calls.append(list(texts))
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        if self.error is not None:
            raise self.error
        tokens = sum(len(t.split()) for t in texts)
        if max_tokens is not None and tokens > max_tokens:
            raise TooManyTokens(tokens, max_tokens)
        return [self.expected(t) for t in texts]


@dataclass
class Backend:
    """One app under test and the objects behind it."""

    client: TestClient
    settings: Settings
    served: ServedModel
    events: EventLog
    classifier: FakeClassifier
    store: ModelStore
    loads: list[str] = field(default_factory=list)

    @property
    def recorded(self) -> list[Event]:
        """What the in-memory event log holds."""
        assert isinstance(self.events, MemoryEventLog)
        return list(self.events.events)

    @property
    def version(self) -> str:
        version = self.store.current_version()
        assert version is not None
        return version


MakeBackend = Callable[..., Backend]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the test alone, never from the developer's shell."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# labelled rows the tiny model's engine build is gated on (the label is what the gate compares, not the model's)
GATE_ROWS = GateRows([Example(f"row {i}: the film was {'great' if i % 2 else 'dull'}", ("NEGATIVE", "POSITIVE")[i % 2])
                      for i in range(40)], "tests/api gate rows")


@pytest.fixture(scope="session")
def tiny_engine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A tiny random DistilBERT (NEGATIVE/POSITIVE) with its ONNX engine built and gated by the production build,
    saved once per session: (the checkpoint, its `engine` record)."""
    checkpoint = build_distilbert(tmp_path_factory.mktemp("tiny-distilbert"), max_length=128)
    record = build_engine(checkpoint, GATE_ROWS, threads=1)
    assert record["chosen"] == ONNX_INT8, record  # the tiny model's int8 agrees with torch: both engines are served
    return checkpoint, record


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_engine: tuple[Path, dict[str, Any]]) -> Path:
    return tiny_engine[0]


@pytest.fixture
def store(tmp_path: Path, tiny_engine: tuple[Path, dict[str, Any]]) -> ModelStore:
    """A model store with one current version made from the tiny checkpoint, its int8 engine included."""
    model_store = ModelStore(tmp_path / "models")
    staged = tmp_path / "checkpoint"
    shutil.copytree(tiny_engine[0], staged)
    model_store.publish(staged, {"source": "tests/modelfactory tiny", "engine": tiny_engine[1]}, name="tiny")
    return model_store


@pytest.fixture(params=["torch", "onnx"])
def engine(request: pytest.FixtureRequest) -> str:
    """ENGINE for the tests that serve the real classifier: each runs against torch and the version's ONNX engine."""
    return str(request.param)


@pytest.fixture
def fake_classifier() -> FakeClassifier:
    return FakeClassifier()


@pytest.fixture
def make_backend(store: ModelStore, fake_classifier: FakeClassifier) -> Iterator[MakeBackend]:
    """Factory: create_app with settings overrides, a loader (default: the fake) and the lifespan running."""
    stack = ExitStack()

    def make(
        *, loader: Loader | None = None, wait: bool = True, events: EventLog | None = None, **overrides: Any
    ) -> Backend:
        overrides.setdefault("redis_url", "redis://127.0.0.1:1/0")  # a closed port unless a test brings Redis
        settings = Settings(model_dir=store.root, **overrides)
        loads: list[str] = []

        def fake_loader(version: ModelVersion) -> Classifier:
            loads.append(version.version)
            return fake_classifier

        served = ServedModel(store, loader or fake_loader, max_loaded=settings.max_loaded_models,
                             check_interval_s=settings.model_check_interval_s)
        event_log = events if events is not None else MemoryEventLog()
        app = create_app(settings, served=served, events=event_log)
        client = stack.enter_context(TestClient(app, raise_server_exceptions=False))
        if wait:
            assert served.wait(60), "the model did not load"
        return Backend(
            client=client,
            settings=settings,
            served=served,
            events=event_log,
            classifier=fake_classifier,
            store=store,
            loads=loads,
        )

    with stack:
        yield make


@pytest.fixture
def backend(make_backend: MakeBackend) -> Backend:
    """The app with no auth configured, model loaded."""
    return make_backend()


@pytest.fixture
def secured(make_backend: MakeBackend) -> Backend:
    """The app with Basic auth and a webhook secret."""
    return make_backend(basic_auth_user=USER, basic_auth_pass=PASSWORD, webhook_secret=WEBHOOK_SECRET)


def assert_no_traceback(text: str) -> None:
    """An error body must never carry a Python traceback or source locations."""
    assert "Traceback" not in text and 'File "' not in text and ".py" not in text, text
