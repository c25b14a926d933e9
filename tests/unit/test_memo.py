"""memo: one job's classifier predicts each distinct text once."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from backend.model.memo import RememberingClassifier, remembering
from backend.model.types import Prediction

pytestmark = pytest.mark.unit


class Counting:
    labels = ("NEGATIVE", "POSITIVE")

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def predict(self, texts: Sequence[str], *, max_tokens: int | None = None) -> list[Prediction]:
        self.calls.append(list(texts))
        return [Prediction(label="POSITIVE", score=0.5 + len(t) / 100, probs={}) for t in texts]


def test_each_distinct_text_reaches_the_model_once_and_answers_keep_their_order() -> None:
    inner = Counting()
    memo = RememberingClassifier(inner)
    first = memo.predict(["a", "bb", "a"])
    second = memo.predict(["ccc", "bb"])
    assert inner.calls == [["a", "bb"], ["ccc"]]
    assert [p.score for p in first] == [0.51, 0.52, 0.51] and [p.score for p in second] == [0.53, 0.52]
    assert memo.predict([]) == [] and inner.calls == [["a", "bb"], ["ccc"]] and memo.labels == inner.labels


def test_remembering_wraps_each_version_once() -> None:
    models = {"v1": Counting(), "v2": Counting()}
    of = remembering(models.__getitem__)
    of("v1").predict(["x"])
    of("v1").predict(["x", "y"])
    of("v2").predict(["x"])
    assert models["v1"].calls == [["x"], ["y"]] and models["v2"].calls == [["x"]]
