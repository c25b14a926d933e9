"""Unit-tier fixtures: one tiny random DistilBERT checkpoint per session, built offline by tests/modelfactory."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.model.classifier import SentimentClassifier
from backend.store import ModelStore
from tests.modelfactory import build_distilbert


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random DistilBERT sequence classifier (labels NEGATIVE, POSITIVE; 64 positions) on disk."""
    return build_distilbert(tmp_path_factory.mktemp("tiny-distilbert"), max_length=64)


@pytest.fixture(scope="session")
def tiny_classifier(tiny_model_dir: Path) -> SentimentClassifier:
    """The tiny checkpoint loaded on CPU; read-only use only (it is shared by the whole session)."""
    return SentimentClassifier.from_path(tiny_model_dir, device="cpu")


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    """An empty model store in the test's own directory (modules needing another store define their own)."""
    return ModelStore(tmp_path / "models")
