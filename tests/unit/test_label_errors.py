"""Likely label errors: self-confidence scoring by an out-of-sample model, and the pure ranking."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from backend.label_errors import AnnotatedText, ScoredAnnotation, Side, likely_label_errors, score_annotations
from backend.model.classifier import SentimentClassifier
from backend.model.types import Prediction

pytestmark = pytest.mark.unit


class Lookup:
    """A classifier that answers p(POSITIVE) from a table keyed by text and records its batches."""

    labels = ("NEGATIVE", "POSITIVE")

    def __init__(self, p_positive: dict[str, float]) -> None:
        self.p_positive = p_positive
        self.batches: list[list[str]] = []

    def predict(self, texts: Sequence[str], *, max_tokens: int | None = None) -> list[Prediction]:
        self.batches.append(list(texts))
        out = []
        for text in texts:
            p = self.p_positive[text]
            label, score = ("POSITIVE", p) if p >= 0.5 else ("NEGATIVE", 1 - p)
            out.append(Prediction(label=label, score=score, probs={"POSITIVE": p, "NEGATIVE": 1 - p}))
        return out


def _row(task: int, p: float, *, annotation: int = 0, side: Side = Side.HOLDOUT) -> ScoredAnnotation:
    return ScoredAnnotation(task, annotation or task * 10, "POSITIVE", p, "NEGATIVE", 1 - p, "v3", side)


def test_scoring_takes_the_probability_of_the_annotators_label_not_the_models() -> None:
    model = Lookup({"great film": 0.97, "dull": 0.02, "fine i guess": 0.55})
    annotations = [
        AnnotatedText(1, 11, "great film", "POSITIVE"),
        AnnotatedText(2, 21, "dull", "POSITIVE"),  # the model is sure this is NEGATIVE
        AnnotatedText(3, 31, "fine i guess", "NEGATIVE"),
    ]
    scored = score_annotations(model, annotations, version="v3", side=Side.HOLDOUT, batch_size=2)
    assert [(s.task_id, s.annotation_id, s.label) for s in scored] == [(1, 11, "POSITIVE"), (2, 21, "POSITIVE"),
                                                                      (3, 31, "NEGATIVE")]
    assert [s.p_label for s in scored] == pytest.approx([0.97, 0.02, 0.45])
    assert [(s.predicted, s.p_predicted) for s in scored][1] == ("NEGATIVE", pytest.approx(0.98))
    assert {s.version for s in scored} == {"v3"} and {s.side for s in scored} == {Side.HOLDOUT}
    assert model.batches == [["great film", "dull"], ["fine i guess"]]


def test_a_label_the_model_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="'Positive'"):
        score_annotations(Lookup({"x": 0.9}), [AnnotatedText(1, 1, "x", "Positive")], version="v1", side=Side.TRAIN)


def test_without_class_probabilities_only_the_predicted_label_has_one() -> None:
    class Bare:
        labels = ("NEGATIVE", "POSITIVE")

        def predict(self, texts: Sequence[str], *, max_tokens: int | None = None) -> list[Prediction]:
            return [Prediction(label="POSITIVE", score=0.8) for _ in texts]

    [row] = score_annotations(Bare(), [AnnotatedText(1, 1, "x", "POSITIVE")], version="v1", side=Side.TRAIN)
    assert row.p_label == 0.8
    with pytest.raises(ValueError):
        score_annotations(Bare(), [AnnotatedText(1, 1, "x", "NEGATIVE")], version="v1", side=Side.TRAIN)


def test_ranking_keeps_rows_under_max_p_lowest_first_with_stable_ties() -> None:
    rows = [_row(5, 0.09), _row(1, 0.5), _row(4, 0.01), _row(3, 0.09, annotation=2), _row(2, 0.1), _row(6, 0.0)]
    ranked = likely_label_errors(rows, max_p=0.1)
    assert [(r.task_id, r.p_label) for r in ranked] == [(6, 0.0), (4, 0.01), (3, 0.09), (5, 0.09)]
    assert likely_label_errors(rows, max_p=0.005) == [rows[5]]
    assert likely_label_errors([], max_p=0.1) == []


@pytest.mark.parametrize("max_p", [0.0, -0.1, 1.5])
def test_max_p_outside_zero_one_is_refused(max_p: float) -> None:
    with pytest.raises(ValueError):
        likely_label_errors([_row(1, 0.0)], max_p=max_p)


def test_records_round_trip_through_plain_dicts_without_text() -> None:
    row = _row(7, 0.03, side=Side.TRAIN)
    raw = row.to_dict()
    assert raw == {"task_id": 7, "annotation_id": 70, "label": "POSITIVE", "p_label": 0.03, "predicted": "NEGATIVE",
                   "p_predicted": 0.97, "version": "v3", "side": "train"}
    assert ScoredAnnotation.from_dict(raw) == row


def test_the_tiny_model_scores_match_its_own_predictions(tiny_classifier: SentimentClassifier) -> None:
    texts = ["a fine film", "a dreadful bore", "meh"]
    annotations = [AnnotatedText(i, 100 + i, t, "NEGATIVE") for i, t in enumerate(texts)]
    scored = score_annotations(tiny_classifier, annotations, version="tiny", side=Side.HOLDOUT, batch_size=2)
    direct = tiny_classifier.predict(texts)
    assert [s.p_label for s in scored] == pytest.approx([p.probs["NEGATIVE"] for p in direct], abs=1e-6)
    assert [s.predicted for s in scored] == [p.label for p in direct]
    assert all(0.0 < s.p_label < 1.0 for s in scored)
