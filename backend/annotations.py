"""Accepted annotations: what a Label Studio JSON export holds that retraining may learn from.

Accepted means submitted (present in the export), not cancelled, with exactly one choice of the spec's <Choices>
that maps to a model label. One row per task: a ground-truth annotation when the task has one, else the most
recently updated annotation. Each row keeps what the annotator did to our pre-fill: Label Studio marks a result
`origin: "prediction"` when the pre-filled choice was submitted as is and `"prediction-changed"` when it was
corrected, with the annotation's `parent_prediction` naming the prediction (whose model_version the export holds).

Prediction copies are not judgements: Label Studio's Data Manager action "Create Annotations From Predictions"
(label_studio/data_manager/actions/predictions_to_annotations.py in 1.23.2) bulk-creates one annotation per
prediction with only result, completed_by, task, project and parent_prediction set, so `updated_by` and
`lead_time` stay null (and its webhook is the bulk ANNOTATIONS_CREATED). Every annotation an annotator submits or
updates through the labeling UI or the API gets `updated_by` (tasks/api.py sets it on create with a result and on
every update) and, from the UI, a `lead_time`. They are left out unless include_prediction_copies says otherwise.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.catalog import acceptance_entry
from backend.labeling.spec import LabelingSpec
from backend.model.types import Example

KEPT, CORRECTED = "prediction", "prediction-changed"


@dataclass(frozen=True)
class LabeledTask:
    """One task's accepted label, with where it came from."""

    task_id: int
    text: str
    label: str  # the model label (NEGATIVE/POSITIVE) the chosen choice maps to
    choice: str
    annotation_id: int
    ground_truth: bool = False
    origin: str | None = None  # "prediction" (pre-fill kept), "prediction-changed" (corrected), None (manual)
    parent_version: str | None = None  # model_version of the pre-filled prediction, when there was one

    def example(self) -> Example:
        """The (text, label) pair training uses."""
        return Example(text=self.text, label=self.label)


@dataclass
class AnnotationSet:
    """The accepted rows of a project, why other annotated tasks were left out, and acceptance per model version."""

    rows: list[LabeledTask]
    skipped: Counter[str] = field(default_factory=Counter)

    def acceptance(self) -> dict[str, dict[str, Any]]:
        """Per model version whose pre-fill was submitted: kept, corrected and the share kept."""
        counts: dict[str, Counter[str]] = {}
        for row in self.rows:
            if row.parent_version and row.origin in (KEPT, CORRECTED):
                counts.setdefault(row.parent_version, Counter())["kept" if row.origin == KEPT else "corrected"] += 1
        return {version: acceptance_entry(c["kept"], c["corrected"]) for version, c in sorted(counts.items())}

    def data_hash(self) -> str:
        """A short fingerprint of the rows (task, label, text), independent of export order."""
        digest = hashlib.sha256()
        for row in sorted(self.rows, key=lambda r: r.task_id):
            digest.update(json.dumps([row.task_id, row.label, row.text], ensure_ascii=False).encode())
        return digest.hexdigest()[:16]


def is_prediction_copy(annotation: Mapping[str, Any]) -> bool:
    """True for an annotation Label Studio copied from a prediction in bulk, never opened by a person (see the
    module docstring); an annotation whose shape does not say so (fields absent) counts as a person's."""
    return (
        _int(annotation.get("parent_prediction"), None) is not None
        and "updated_by" in annotation and annotation["updated_by"] is None
        and "lead_time" in annotation and annotation["lead_time"] is None
    )


def accepted_annotations(
    tasks: Iterable[Mapping[str, Any]], spec: LabelingSpec, *, include_prediction_copies: bool = False
) -> AnnotationSet:
    """The accepted rows of exported tasks (see the module docstring); never raises on odd shapes."""
    to_label = {choice: label for label, choice in spec.label_map.items()}
    found = AnnotationSet(rows=[])
    for task in tasks:
        row, reason = _task_row(task, spec, to_label, include_prediction_copies)
        if row is not None:
            found.rows.append(row)
        elif reason:
            found.skipped[reason] += 1
    return found


def _task_row(
    task: Mapping[str, Any], spec: LabelingSpec, to_label: Mapping[str, str], include_copies: bool
) -> tuple[LabeledTask | None, str | None]:
    annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict)]
    if not annotations:
        return None, None
    live = [a for a in annotations if not a.get("was_cancelled")]
    if not live:
        return None, "cancelled"
    if not include_copies:
        live = [a for a in live if not is_prediction_copy(a)]
        if not live:
            return None, "prediction_copy"
    chosen = max(live, key=lambda a: (bool(a.get("ground_truth")), str(a.get("updated_at") or ""), _int(a.get("id"))))
    item, choice = _choice(chosen, spec)
    if choice is None:
        return None, "no_single_choice"
    if choice not in spec.choices:
        return None, "unknown_choice"
    if choice not in to_label:
        return None, "choice_not_predictable"  # e.g. Neutral in a config the two-label model cannot learn
    data = task.get("data")
    text = data.get(spec.data_key) if isinstance(data, dict) else None
    if not isinstance(text, str) or not text.strip():
        return None, "no_text"
    origin = item.get("origin") if isinstance(item, dict) else None
    parent = _int(chosen.get("parent_prediction"), None)
    return LabeledTask(
        task_id=_int(task.get("id")), text=text, label=to_label[choice], choice=choice,
        annotation_id=_int(chosen.get("id")), ground_truth=bool(chosen.get("ground_truth")),
        origin=origin if origin in (KEPT, CORRECTED) else None,
        parent_version=_prediction_version(task, parent) if parent is not None else None,
    ), None


def _choice(annotation: Mapping[str, Any], spec: LabelingSpec) -> tuple[Mapping[str, Any] | None, str | None]:
    """The result item of spec's <Choices> and its one choice (None when absent or several)."""
    for item in annotation.get("result") or []:
        if not isinstance(item, dict) or item.get("from_name") != spec.from_name:
            continue
        value = item.get("value")
        choices: Sequence[Any] = value.get("choices") or [] if isinstance(value, dict) else []
        if len(choices) == 1 and isinstance(choices[0], str):
            return item, choices[0]
        return item, None
    return None, None


def _prediction_version(task: Mapping[str, Any], prediction_id: int) -> str | None:
    for prediction in task.get("predictions") or []:
        if isinstance(prediction, dict) and prediction.get("id") == prediction_id:
            return str(prediction.get("model_version") or "") or None
    return None


def _int(value: Any, default: Any = 0) -> Any:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
