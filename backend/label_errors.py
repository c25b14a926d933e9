"""Likely label errors: accepted annotations that a model which never trained on the row confidently rejects.

The method is the self-confidence label-quality score (Kuan & Mueller, 2022, "Model-agnostic label quality
scoring to detect real-world label errors") on out-of-sample probabilities, as in confident learning (Northcutt,
Jiang & Chuang, 2021, "Confident Learning: Estimating Uncertainty in Dataset Labels", JAIR 70):
score each annotated row with a model that did not learn from it, take p(given label), the model's probability
for the annotator's label, and flag the rows where it is under `max_p`, lowest first. The model must be
out-of-sample for the row, or it has simply memorised the label: holdout rows are scored by the line's current
version (holdout rows are never trained on, backend.holdout), training rows by a version that predates them
(the parent of the version that first trained on them). Choosing that version is the caller's job; each score
records which version and which side it came from. cleanlab is not used (AGPL-3.0; this project is Apache-2.0).

Scoring (needs a classifier) and ranking (pure, on stored scores) are separate so that a read can rank results
that a job stored earlier. Records carry ids, labels and probabilities, never the text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from backend.model.types import Classifier, Prediction


class Side(str, Enum):
    """Which side of the frozen holdout a row is on, and so which version may score it."""

    HOLDOUT = "holdout"  # scored by the current version
    TRAIN = "train"  # scored by a version that predates the row's training


@dataclass(frozen=True)
class AnnotatedText:
    """An accepted annotation to score; `label` is a model label name such as "POSITIVE"."""

    task_id: int
    annotation_id: int
    text: str
    label: str


@dataclass(frozen=True)
class ScoredAnnotation:
    """One annotation as an out-of-sample model saw it: the annotator's label, its probability, the model's label."""

    task_id: int
    annotation_id: int
    label: str
    p_label: float  # self-confidence: the model's probability for the annotator's label
    predicted: str
    p_predicted: float
    version: str
    side: Side

    def to_dict(self) -> dict[str, Any]:
        """Plain values for storage; side as its string."""
        return {**asdict(self), "side": self.side.value}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ScoredAnnotation:
        """The record to_dict() wrote."""
        return cls(
            task_id=int(raw["task_id"]), annotation_id=int(raw["annotation_id"]), label=str(raw["label"]),
            p_label=float(raw["p_label"]), predicted=str(raw["predicted"]), p_predicted=float(raw["p_predicted"]),
            version=str(raw["version"]), side=Side(raw["side"]),
        )


def likely_label_errors(scored: Iterable[ScoredAnnotation], *, max_p: float) -> list[ScoredAnnotation]:
    """The annotations whose self-confidence is under max_p, lowest first (ties by task, then annotation id)."""
    if not 0.0 < max_p <= 1.0:
        raise ValueError(f"max_p must lie in (0, 1], got {max_p}")
    flagged = [row for row in scored if row.p_label < max_p]
    return sorted(flagged, key=lambda row: (row.p_label, row.task_id, row.annotation_id))


def score_annotations(
    classifier: Classifier,
    annotations: Sequence[AnnotatedText],
    *,
    version: str,
    side: Side,
    batch_size: int = 64,
) -> list[ScoredAnnotation]:
    """Each annotation scored by classifier (which must not have trained on it), same order; ValueError for a
    label the model has no probability for."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    scored: list[ScoredAnnotation] = []
    for start in range(0, len(annotations), batch_size):
        batch = annotations[start : start + batch_size]
        predictions = classifier.predict([a.text for a in batch])
        scored += [_score(a, p, version, side) for a, p in zip(batch, predictions, strict=True)]
    return scored


def _score(annotation: AnnotatedText, prediction: Prediction, version: str, side: Side) -> ScoredAnnotation:
    return ScoredAnnotation(
        task_id=annotation.task_id, annotation_id=annotation.annotation_id, label=annotation.label,
        p_label=_probability(prediction, annotation.label), predicted=prediction.label,
        p_predicted=float(prediction.score), version=version, side=side,
    )


def _probability(prediction: Prediction, label: str) -> float:
    """p(label) from the prediction's class probabilities; a label outside them is a mapping error upstream."""
    if label in prediction.probs:
        return float(prediction.probs[label])
    if not prediction.probs and label == prediction.label:
        return float(prediction.score)
    raise ValueError(f"the model gives no probability for label {label!r} (it knows {sorted(prediction.probs)})")
