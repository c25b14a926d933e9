"""Fakes of loaded model versions shared by the ModelCache and ServedModel tests."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from backend.model.types import Prediction
from backend.store import ModelStore, ModelVersion


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
    (checkpoint / "config.json").write_text('{"id2label": {"0": "NEGATIVE", "1": "POSITIVE"}}')
    return store.publish(checkpoint, {"source": "test"}, name=name, make_current=current).version
