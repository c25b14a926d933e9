"""Label Studio task dicts in, prediction dicts out (the exact shape Label Studio 1.23.2 stores)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backend.labeling.spec import LabelingSpec
from backend.model.types import Prediction

SCORE_DECIMALS = 6


def texts_from_tasks(tasks: Sequence[Any], data_key: str) -> list[str | None]:
    """task.data[data_key] per task, in order; None where it is missing, blank or not a string. Never raises."""
    return [_text_of(task, data_key) for task in tasks]


def task_ref(task: Any, index: int) -> str:
    """How logs and error messages name a task: its Label Studio id when it has an int one, else its position."""
    task_id = task.get("id") if isinstance(task, dict) else None
    if isinstance(task_id, int) and not isinstance(task_id, bool):
        return f"task {task_id}"
    return f"task at position {index}"


def build_prediction(
    pred: Prediction | None, spec: LabelingSpec, model_version: str, *, prefill_from: float | None = None
) -> dict[str, Any]:
    """One Label Studio prediction dict; an empty result (score None) when there is no prediction for the task.

    With `prefill_from` (PREFILL=confident and the project has a threshold), a score under it keeps its score but
    gets no choice: Label Studio stores the empty result, so sorting, the score column and uncertainty sampling
    still see the row, and the annotator finds nothing pre-selected."""
    if pred is None:
        return {"result": [], "score": None, "model_version": model_version}
    score = round(float(pred.score), SCORE_DECIMALS)
    if prefill_from is not None and pred.score < prefill_from:
        return {"result": [], "score": score, "model_version": model_version}
    region = {
        "from_name": spec.from_name,
        "to_name": spec.to_name,
        "type": "choices",
        "value": {"choices": [spec.choice_for(pred.label)]},
        "score": score,
    }
    return {"result": [region], "score": score, "model_version": model_version}


def _text_of(task: Any, data_key: str) -> str | None:
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict):
        return None
    value = data.get(data_key) if data_key in data else _dotted(data, data_key)
    if not isinstance(value, str) or not value.strip():
        return None
    return value


def _dotted(data: dict[str, Any], data_key: str) -> Any:
    """data["review"]["text"] for a dotted value name such as "$review.text"; None when any step is missing."""
    node: Any = data
    for part in data_key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
