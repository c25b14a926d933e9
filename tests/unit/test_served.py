"""ServedModel: background loading, readiness, errors, and hot swap to a promoted store version."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from backend.api.served import ServedModel
from backend.errors import ModelNotReady
from backend.model.types import Prediction
from backend.store import ModelStore, ModelVersion

pytestmark = pytest.mark.unit


class Named:
    """A classifier that says which version it came from."""

    labels = ("NEGATIVE", "POSITIVE")

    def __init__(self, version: str) -> None:
        self.version = version

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return [Prediction(label="POSITIVE", score=0.9) for _ in texts]


class Loader:
    """Records calls; can be held back with `gate` or made to fail for chosen versions."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: set[str] = set()

    def __call__(self, version: ModelVersion) -> Named:
        self.calls.append(version.version)
        assert self.gate.wait(10)
        if version.version in self.fail:
            raise OSError(f"cannot read {version.path}")
        return Named(version.version)


def publish(store: ModelStore, tmp_path: Path, name: str, *, current: bool = True) -> str:
    checkpoint = tmp_path / f"ckpt-{name}"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    return store.publish(checkpoint, {"source": "test"}, name=name, make_current=current).version


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def test_loads_in_the_background_and_reports_readiness(store: ModelStore, tmp_path: Path) -> None:
    v1 = publish(store, tmp_path, "first")
    loader = Loader()
    loader.gate.clear()
    served = ServedModel(store, loader)
    served.start_loading()
    assert not served.ready and served.version is None and served.loading == v1
    with pytest.raises(ModelNotReady, match="still loading"):
        served.current()
    loader.gate.set()
    assert served.wait(5)
    assert served.ready and served.version == v1 and served.error is None
    assert served.current().version == v1
    assert isinstance(served.classifier(), Named)


def test_start_loading_is_idempotent(store: ModelStore, tmp_path: Path) -> None:
    publish(store, tmp_path, "first")
    loader = Loader()
    served = ServedModel(store, loader)
    served.start_loading()
    served.wait(5)
    served.start_loading()
    assert served.refresh() is False
    assert len(loader.calls) == 1


def test_an_empty_store_is_an_error(store: ModelStore) -> None:
    served = ServedModel(store, Loader())
    served.start_loading()
    assert not served.ready
    assert served.error is not None and "no current version" in served.error
    with pytest.raises(ModelNotReady, match="failed to load"):
        served.current()


def test_a_failed_load_is_reported_and_retried_later(
    store: ModelStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    v1 = publish(store, tmp_path, "first")
    loader = Loader()
    loader.fail.add(v1)
    served = ServedModel(store, loader, retry_failed_after=0.0)
    served.start_loading()
    served.wait(5)
    assert not served.ready and served.error == "the model failed to load; see the server log"
    assert "OSError: cannot read" in caplog.text, "the cause stays in the server log"
    loader.fail.clear()
    assert served.refresh() is True
    served.wait(5)
    assert served.version == v1 and served.error is None


def test_a_failed_version_is_not_retried_at_once(store: ModelStore, tmp_path: Path) -> None:
    v1 = publish(store, tmp_path, "first")
    loader = Loader()
    loader.fail.add(v1)
    served = ServedModel(store, loader)
    served.start_loading()
    served.wait(5)
    assert served.refresh() is False
    assert loader.calls == [v1]


def test_hot_swap_keeps_serving_the_old_version_until_the_new_one_is_loaded(store: ModelStore, tmp_path: Path) -> None:
    v1 = publish(store, tmp_path, "first")
    loader = Loader()
    served = ServedModel(store, loader)
    served.start_loading()
    served.wait(5)
    v2 = publish(store, tmp_path, "second")
    loader.gate.clear()
    assert served.refresh() is True
    assert served.refresh() is False, "one load at a time"
    before = served.current()
    assert before.version == v1 and served.loading == v2
    loader.gate.set()
    served.wait(5)
    after = served.current()
    assert after.version == v2
    assert isinstance(after.classifier, Named) and after.classifier.version == v2
    assert before.version == v1 and isinstance(before.classifier, Named) and before.classifier.version == v1


def test_a_failed_swap_keeps_the_old_version(store: ModelStore, tmp_path: Path) -> None:
    v1 = publish(store, tmp_path, "first")
    loader = Loader()
    served = ServedModel(store, loader)
    served.start_loading()
    served.wait(5)
    v2 = publish(store, tmp_path, "second")
    loader.fail.add(v2)
    served.refresh()
    served.wait(5)
    assert served.version == v1 and served.ready
    assert served.error is not None
    store.set_current(v1)
    assert served.refresh() is False


def test_rollback_is_a_swap_too(store: ModelStore, tmp_path: Path) -> None:
    v1 = publish(store, tmp_path, "first")
    v2 = publish(store, tmp_path, "second")
    loader = Loader()
    served = ServedModel(store, loader)
    served.start_loading()
    served.wait(5)
    assert served.version == v2
    store.set_current(v1)
    served.refresh()
    served.wait(5)
    assert served.version == v1
