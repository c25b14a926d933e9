"""Bringing checkpoints into the store: import_checkpoint and ensure_current (offline, tiny model)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from backend.errors import InvalidCheckpoint, ModelUnavailable
from backend.model.classifier import SentimentClassifier
from backend.model.loading import ensure_current, import_checkpoint, load_version, unavailable_message
from backend.store import ModelStore

pytestmark = pytest.mark.unit

UNREACHABLE = "no-such-org-zz/definitely-not-a-model-zz"


def test_import_becomes_current_and_loads(tiny_model_dir: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    version = import_checkpoint(store, tiny_model_dir, name="tiny")
    assert store.current_version() == version.version and version.version.startswith("tiny-")
    assert version.meta["labels"] == ["NEGATIVE", "POSITIVE"]
    assert version.meta["kind"] == "import" and version.meta["source"] == str(tiny_model_dir)
    assert sorted(p.name for p in version.path.iterdir()) == sorted(p.name for p in tiny_model_dir.iterdir())
    assert (tiny_model_dir / "config.json").exists()  # the source is copied, not moved
    reloaded = SentimentClassifier.from_path(version.path, device="cpu")
    assert reloaded.predict(["fine"])[0].label in ("NEGATIVE", "POSITIVE")


def test_import_without_make_current(tiny_model_dir: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    first = import_checkpoint(store, tiny_model_dir, source="somewhere")
    second = import_checkpoint(store, tiny_model_dir, make_current=False)
    assert store.current_version() == first.version != second.version
    assert first.meta["source"] == "somewhere"


def test_bad_directory_is_refused_and_nothing_published(tiny_model_dir: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(tiny_model_dir / "model.safetensors", broken)
    with pytest.raises(InvalidCheckpoint, match="no config.json"):
        import_checkpoint(store, broken)
    assert store.list() == [] and store.current() is None


def test_ensure_current_keeps_an_existing_version(tiny_model_dir: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    existing = import_checkpoint(store, tiny_model_dir)
    assert ensure_current(store, UNREACHABLE) == existing
    assert len(store.list()) == 1


def test_ensure_current_imports_a_local_directory(tiny_model_dir: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    version = ensure_current(store, str(tiny_model_dir))
    assert store.current_version() == version.version
    assert version.meta["source"] == str(tiny_model_dir)


def test_ensure_current_with_a_bad_local_directory(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match="models bootstrap") as info:
        ensure_current(store, str(tmp_path / "empty"))
    assert isinstance(info.value.__cause__, InvalidCheckpoint)


def test_unreachable_hub_id_fails_fast_with_the_three_remedies(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    started = time.monotonic()
    with pytest.raises(ModelUnavailable) as info:
        ensure_current(store, UNREACHABLE)
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert elapsed < 15, f"took {elapsed:.1f}s"
    assert "\n" not in message
    for needle in (UNREACHABLE, "sentiment-backend models bootstrap", "sentiment-backend models import DIR", "MODEL"):
        assert needle in message
    assert store.list() == [] and store.current() is None
    assert not store.staging_root.exists() or list(store.staging_root.iterdir()) == []


def test_unavailable_message_keeps_only_the_first_line_of_the_cause() -> None:
    message = unavailable_message("org/model", OSError("cannot connect\nsee the docs\nmore"))
    assert "OSError: cannot connect" in message and "see the docs" not in message and "\n" not in message


def test_a_version_is_loaded_at_its_recorded_temperature(tiny_model_dir: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    plain = import_checkpoint(store, tiny_model_dir)
    assert plain.meta["calibration"] == {"temperature": 1.0, "calibrated": False,
                                         "reason": "imported without --calibrate: no labelled rows to fit on"}
    scaled = store.publish(plain.path, {"calibration": {"temperature": 3.0, "calibrated": True}}, name="scaled")
    assert load_version(plain, device="cpu", token_budget=2048, stride=128).temperature == 1.0
    classifier = load_version(scaled, device="cpu", token_budget=2048, stride=128)
    assert classifier.temperature == 3.0
    [raw] = SentimentClassifier.from_path(plain.path, device="cpu").predict(["fine"])
    [served] = classifier.predict(["fine"])
    assert served.label == raw.label and abs(served.score - 0.5) < abs(raw.score - 0.5)
