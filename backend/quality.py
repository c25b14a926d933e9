"""How far a project's served version can be trusted: its pre-fill threshold and its likely label errors.

Computed by the worker (backend.jobs.tasks.assess_project, after each training and each bulk run) from the
project's accepted annotations, on rows the scoring model never trained on, and stored as project state in
`MODEL_DIR/projects/<id>/quality.json` beside the project's frozen holdout (never in a version's meta: versions
stay immutable and are shared by projects). Reading it (a /predict, a GET, the CLI) never runs a model.

Which rows are out of sample:
- a project on its own line: the rows it never trained on (its frozen holdout, and annotations newer than its
  last training), scored by the served version, give the threshold; label errors use those and the
  training-side rows scored by the served version's parent, which predates them (an approximation when the
  line trained several times: the parent may have seen earlier rows);
- a project on the default line: the default version never trained on the project, so every accepted
  annotation is out of sample: all of them give the threshold and the label errors.
A stored record belongs to the version it was computed for: once the project is served another version, its
threshold no longer applies (threshold_for answers None until the worker recomputes it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from backend import calibration, tabs
from backend.annotations import KEPT, AnnotationSet, accepted_annotations
from backend.config import Settings
from backend.errors import LabelStudioError
from backend.freshness import FreshValues
from backend.holdout import Holdout, project_dir
from backend.label_errors import AnnotatedText, ScoredAnnotation, Side, likely_label_errors, score_annotations
from backend.labeling.spec import parse_spec
from backend.model.types import Classifier
from backend.prefill import choose_threshold
from backend.store import ModelStore, atomic_write
from backend.studio import StudioClient

log = logging.getLogger(__name__)

FILE = "quality.json"
MAX_LISTED_ERRORS = 500


@dataclass(frozen=True)
class Policy:
    """PREFILL_TARGET_PRECISION, PREFILL_CONFIDENCE and LABEL_ERROR_MAX_P."""

    target_precision: float = 0.97
    confidence: float = 0.9
    label_error_max_p: float = 0.1

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        """The policy the settings describe."""
        return cls(settings.prefill_target_precision, settings.prefill_confidence, settings.label_error_max_p)


def read_accepted(
    studio: StudioClient, project: int, labels: Sequence[str], *, include_prediction_copies: bool = False
) -> AnnotationSet:
    """The project's accepted annotations, from its label config and one export (what the assessment and the
    evaluation report both read)."""
    spec = parse_spec(studio.project(project).label_config, labels)
    return accepted_annotations(studio.export(project), spec, include_prediction_copies=include_prediction_copies)


def assess_project(
    studio: StudioClient, store: ModelStore, project: int, *, classifier_of: Callable[[str], Classifier],
    policy: Policy, include_prediction_copies: bool = False, accepted: AnnotationSet | None = None,
) -> dict[str, Any] | None:
    """Assess the version the project is served on its accepted annotations (read from Label Studio unless given)
    and store the record; the record (None for an empty store: nothing is served, nothing to assess). Idempotent."""
    version = store.current_version(project)
    if version is None:
        log.info("project %s: the model store is empty; nothing to assess", project)
        return None
    if accepted is None:
        accepted = read_accepted(studio, project, classifier_of(version).labels,
                                 include_prediction_copies=include_prediction_copies)
    rows = [AnnotatedText(r.task_id, r.annotation_id, r.text, r.label) for r in accepted.rows]
    trained = trained_task_ids(store, project)
    meta = store.get(version).meta
    parent = meta.get("parent") if store.has_line(project) else None
    record = assess(project, version, rows, trained=trained, classifier_of=classifier_of,
                    parent=str(parent) if parent else None, policy=policy, own_rows=calibration.own_rows(meta))
    save(store.root, project, record)
    kept = [r.annotation_id for r in accepted.rows if r.origin == KEPT]
    specs = tabs.tab_specs(record["prefill"]["threshold"], [e.annotation_id for e in label_errors(record)],
                           tabs.audit_sample(kept, seed=project), version)
    try:
        record["tabs"] = tabs.refresh(studio, project, specs)
    except LabelStudioError as exc:  # the record stands; the next assessment refreshes the tabs again
        log.warning("project %s: review tabs not refreshed: %s", project, exc)
    shown = record["prefill"]
    log.info("project %s on %s: pre-fill threshold %s over %d row(s); %d likely label error(s)", project, version,
             shown["threshold"], shown["rows"], record["label_errors"]["found"])
    return record


def trained_task_ids(store: ModelStore, project: int) -> set[int]:
    """The project's task ids its line trained on (none on the default line: see the module docstring); every
    other accepted annotation is out of sample for the version it is served."""
    return Holdout(store.root, project).load().train if store.has_line(project) else set()


def assess(
    project: int, version: str, rows: Sequence[AnnotatedText], *, trained: set[int],
    classifier_of: Callable[[str], Classifier], parent: str | None, policy: Policy,
    own_rows: tuple[list[tuple[float, bool]], str] | None = None,
) -> dict[str, Any]:
    """The record for `version` serving `project` (see the module docstring): `rows` are its accepted annotations,
    `trained` the task ids the served version (or one of its ancestors) trained on, `parent` a version that
    predates them, `own_rows` the version's own scored rows (calibration.own_rows), which give the threshold while
    the project has no accepted annotation at all."""
    out_of_sample = [r for r in rows if r.task_id not in trained]
    trained_on = [r for r in rows if r.task_id in trained]
    if trained:
        source = f"accepted annotations never trained on ({len(out_of_sample)}; the frozen holdout and newer ones)"
    else:
        source = f"every accepted annotation of the project ({len(out_of_sample)}): the version never trained on it"
    scored = (score_annotations(classifier_of(version), out_of_sample, version=version, side=Side.HOLDOUT)
              if out_of_sample else [])
    threshold_rows = [(s.p_predicted, s.predicted == s.label) for s in scored]
    if not rows and own_rows is not None:
        threshold_rows, described = own_rows
        source = (f"no accepted annotation yet: the version's own labelled rows, {described} "
                  f"({len(threshold_rows)}); the guarantee holds for data like those rows only")
    threshold = choose_threshold(threshold_rows, target=policy.target_precision, confidence=policy.confidence)
    if trained_on and parent:
        scored += score_annotations(classifier_of(parent), trained_on, version=parent, side=Side.TRAIN)
    errors = likely_label_errors(scored, max_p=policy.label_error_max_p)
    return {
        "project": project, "version": version, "computed_at": _now(), "rows_source": source,
        "prefill": threshold.to_dict(),
        "label_errors": {"max_p": policy.label_error_max_p, "scored": len(scored), "found": len(errors),
                         "parent": parent if trained_on else None,
                         "rows": [e.to_dict() for e in errors[:MAX_LISTED_ERRORS]]},
    }


def save(model_dir: Path | str, project: int, record: dict[str, Any]) -> None:
    """Replace the project's stored record atomically."""
    target = project_dir(model_dir, project)
    target.mkdir(parents=True, exist_ok=True)
    atomic_write(target / FILE, json.dumps(record, indent=2, sort_keys=True))


def load(model_dir: Path | str, project: int) -> dict[str, Any] | None:
    """The project's stored record, None before the worker computed one (or when it is unreadable)."""
    try:
        found: dict[str, Any] = json.loads((project_dir(model_dir, project) / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found


def threshold_for(model_dir: Path | str, project: int | None, version: str) -> float | None:
    """The project's pre-fill threshold for the version it is served, None when there is none (yet)."""
    if project is None:
        return None
    record = load(model_dir, project)
    if not record or record.get("version") != version:
        return None
    value = (record.get("prefill") or {}).get("threshold")
    return float(value) if value is not None else None


class Thresholds:
    """threshold_for with a memory: a project's threshold is re-read from MODEL_DIR at most once per interval_s
    (the worker rewrites quality.json after each assessment; the API sees it within the interval), and at once
    when the project is served another version. Plain dict operations, safe from any thread."""

    def __init__(self, model_dir: Path | str, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.model_dir = model_dir
        self._seen: FreshValues[float | None] = FreshValues(interval_s, clock=clock)  # project → its threshold

    def lookup(self, project: int | None, version: str) -> tuple[bool, float | None]:
        """(True, the threshold) while the remembered one is fresh; (False, None) when it must be read."""
        return self._seen.get(project, version)

    def read(self, project: int | None, version: str) -> float | None:
        """threshold_for, read now and remembered (a small file read: call it off the event loop)."""
        threshold = threshold_for(self.model_dir, project, version)
        self._seen.put(project, version, threshold)
        return threshold


def report(model_dir: Path | str, project: int) -> dict[str, Any]:
    """What GET /projects/{id}/label-errors and `label-errors` show: the stored record's threshold and errors."""
    record = load(model_dir, project)
    if record is None:
        return {"project": project, "assessed": False, "version": None, "computed_at": None, "prefill": None,
                "max_p": None, "scored": 0, "found": 0, "rows": []}
    errors = record.get("label_errors") or {}
    return {"project": project, "assessed": True, "version": record.get("version"),
            "computed_at": record.get("computed_at"), "rows_source": record.get("rows_source"),
            "prefill": record.get("prefill"), "max_p": errors.get("max_p"), "scored": errors.get("scored", 0),
            "found": errors.get("found", 0), "rows": [e.to_dict() for e in label_errors(record)]}


def label_errors(record: dict[str, Any] | None) -> list[ScoredAnnotation]:
    """The stored likely label errors, lowest self-confidence first."""
    rows = ((record or {}).get("label_errors") or {}).get("rows") or []
    return [ScoredAnnotation.from_dict(row) for row in rows]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
