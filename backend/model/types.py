"""Frozen value types shared by model, labeling and jobs."""

from __future__ import annotations

from dataclasses import dataclass, field


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
