"""Frozen value types shared by model, labeling and jobs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Prediction:
    """One text's prediction: the model's label, its probability and every class's probability."""

    label: str
    score: float
    probs: dict[str, float] = field(default_factory=dict)
    windows: int = 1


@dataclass(frozen=True)
class Example:
    """A labelled text for training or evaluation; `label` is a model label name such as "POSITIVE"."""

    text: str
    label: str


class Classifier(Protocol):
    """The one classifier protocol (backend.model.classifier.SentimentClassifier): what serving, pre-labeling,
    training and evaluation need of a model."""

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's label names, e.g. ("NEGATIVE", "POSITIVE")."""
        ...

    def predict(self, texts: Sequence[str], *, max_tokens: int | None = None) -> list[Prediction]:
        """One Prediction per text, same order; thread-safe; TooManyTokens past max_tokens word pieces."""
        ...
