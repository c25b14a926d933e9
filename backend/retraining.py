"""Retraining a project's model from its accepted annotations, and the promotion rule that guards its line.

One `retrain` call: read the project's label config and export from Label Studio, keep the accepted annotations
(backend.annotations), split them with the project's frozen holdout (backend.holdout), fine-tune a copy of the
base version (the project's current one unless TRAIN_BASE names another) on the training side, score candidate
and the project's current version on the holdout, publish the candidate as a new immutable version and, only
when `decide` says it is at least as good, move the project's own model line to it (its first promotion makes
the line; no other project's line, and never the default line, moves). Nothing here knows about rq or Redis:
the job in backend.jobs.tasks calls it and reports its phases.

Crash safety comes from the store: the candidate is built in staging/ and appears whole or not at all, and the
line's pointer moves by one atomic rename (a compare-and-swap under the store lock) after the candidate is
published, so a kill at any point leaves every line on a complete, loadable version.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from backend import calibration
from backend.annotations import AnnotationSet, accepted_annotations
from backend.catalog import record_acceptance
from backend.config import Settings
from backend.datasets import read_examples
from backend.errors import ModelUnavailable, NotEnoughAnnotations, PointerMoved
from backend.holdout import Holdout
from backend.labeling.spec import parse_spec
from backend.model.engine import inference_threads, unbuilt_record
from backend.model.engine_build import EngineBuild, sst2_dev
from backend.model.types import Classifier, Example
from backend.store import ModelStore, ModelVersion
from backend.training import TrainParams, TrainProgress, evaluate, fine_tune, hold_out, score_predictions

log = logging.getLogger(__name__)

# fewer training rows than this: no validation slice, no early stopping (every row is worth more as training)
EARLY_STOPPING_MIN_ROWS = 100
VALIDATION_SHARE = 0.1


class Studio(Protocol):
    """The Label Studio calls retraining makes (backend.studio.StudioClient)."""

    def project(self, project_id: int) -> Any: ...

    def export(self, project_id: int) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class RetrainPolicy:
    """How a training runs and what it takes to be promoted (from Settings; see the README's table)."""

    params: TrainParams
    min_annotations: int = 20
    holdout_fraction: float = 0.2
    min_holdout: int = 30
    margin: float = 0.0
    base: str | None = None
    rehearsal_file: Path | None = None  # the base model's own labelled data, mixed in so it forgets less
    rehearsal_ratio: float = 1.0
    include_prediction_copies: bool = False  # TRAIN_ON_PREDICTION_COPIES: train on Label Studio's bulk copies too
    engine_build: EngineBuild | None = None  # the candidate's ONNX engine, built before it is published

    @classmethod
    def from_settings(cls, settings: Settings) -> RetrainPolicy:
        """The policy the settings describe."""
        params = TrainParams(
            epochs=settings.train_epochs, learning_rate=settings.train_learning_rate,
            batch_size=settings.train_batch_size, token_budget=max(4096, settings.train_batch_size * 64),
            max_length=settings.train_max_length, max_seconds=settings.train_max_seconds,
            warmup_ratio=0.1, weight_decay=0.01, seed=0,
        )
        return cls(
            params=params, min_annotations=settings.train_min_annotations,
            holdout_fraction=settings.train_holdout_fraction, min_holdout=settings.train_min_holdout,
            margin=settings.promote_margin, base=settings.train_base,
            rehearsal_file=settings.train_rehearsal_file, rehearsal_ratio=settings.train_rehearsal_ratio,
            include_prediction_copies=settings.train_on_prediction_copies,
            engine_build=EngineBuild(settings.build_engine, inference_threads(settings.inference_threads, "worker"),
                                     sst2_dev(settings.data_dir) if settings.build_engine else None),
        )


@dataclass(frozen=True)
class Decision:
    """Whether the candidate replaces the current version, and why, in one sentence."""

    promote: bool
    reason: str
    forced: bool = False


def decide(
    candidate: dict[str, Any] | None, current: dict[str, Any] | None, holdout_rows: int, policy: RetrainPolicy,
    *, force: bool = False,
) -> Decision:
    """The promotion rule: with at least min_holdout rows, the candidate's holdout accuracy must reach the
    current one's plus the margin (an exact tie goes to the lower log-loss); force overrides a failed rule."""
    verdict = _verdict(candidate, current, holdout_rows, policy)
    if force and not verdict.promote:
        return Decision(True, f"forced: {verdict.reason}", forced=True)
    return verdict


def _verdict(
    candidate: dict[str, Any] | None, current: dict[str, Any] | None, holdout_rows: int, policy: RetrainPolicy
) -> Decision:
    if candidate is None or current is None or holdout_rows < policy.min_holdout:
        return Decision(False, f"only {holdout_rows} holdout row(s), fewer than "
                               f"TRAIN_MIN_HOLDOUT={policy.min_holdout}: not enough to tell whether the "
                               "candidate is better (force it to promote anyway)")
    gain = candidate["accuracy"] - current["accuracy"]
    scores = (f"holdout accuracy {candidate['accuracy']:.4f} vs current {current['accuracy']:.4f} "
              f"on {holdout_rows} rows")
    if math.isclose(gain, 0.0, abs_tol=1e-12) and policy.margin == 0:
        if candidate["log_loss"] <= current["log_loss"]:
            return Decision(True, f"{scores}: a tie, and log-loss {candidate['log_loss']:.4f} is not worse")
        return Decision(False, f"{scores}: a tie, but log-loss {candidate['log_loss']:.4f} is worse than "
                               f"{current['log_loss']:.4f}")
    if gain >= policy.margin:
        return Decision(True, f"{scores}: {gain:+.4f} reaches the margin {policy.margin:+.4f}")
    return Decision(False, f"{scores}: {gain:+.4f} is below the margin {policy.margin:+.4f}")


@dataclass(frozen=True)
class RetrainOutcome:
    """What one training produced: the candidate version, what it was compared with and whether it is current."""

    candidate: str
    compared_with: str
    decision: Decision
    candidate_metrics: dict[str, Any] | None
    current_metrics: dict[str, Any] | None
    counts: dict[str, Any]

    @property
    def promoted(self) -> bool:
        """True when the candidate became the current version."""
        return self.decision.promote

    def summary(self) -> str:
        """One line for the job's summary."""
        verb = "promoted" if self.promoted else "trained but did not promote"
        return f"{verb} {self.candidate} (compared with {self.compared_with}): {self.decision.reason}"


Report = Callable[..., None]  # report(phase, **details): phase changes and training progress


def retrain(
    studio: Studio, store: ModelStore, project: int, policy: RetrainPolicy, *,
    classifier_of: Callable[[str], Classifier], load_candidate: Callable[[Path], Classifier],
    force: bool = False, report: Report | None = None, label: str = "",
    may_promote: Callable[[], None] | None = None,
) -> RetrainOutcome:
    """Train, evaluate, publish and maybe promote (see the module docstring) on the project's own model line.
    `classifier_of(version)` gives a store version's loaded classifier; `load_candidate(dir)` loads the freshly
    trained checkpoint; `may_promote()` runs under the store lock right before the pointer moves and raises to
    call the promotion off (a cancelled run): the candidate is then recorded as rejected and the error re-raised."""
    say: Report = report or (lambda phase, **details: None)
    say("loading annotations")
    base = _base_version(store, policy, project)
    base_classifier = classifier_of(base.version)
    info = studio.project(project)
    spec = parse_spec(info.label_config, base_classifier.labels)
    annotations = accepted_annotations(studio.export(project), spec,
                                       include_prediction_copies=policy.include_prediction_copies)
    _check_enough(project, annotations, policy)
    record_acceptance(store.root, project, annotations.acceptance())

    split = Holdout(store.root, project).assign([r.task_id for r in annotations.rows], policy.holdout_fraction)
    train = [r.example() for r in annotations.rows if r.task_id in split.train]
    holdout = [r.example() for r in annotations.rows if r.task_id in split.holdout]
    if not train:
        raise NotEnoughAnnotations(f"project {project}: all {len(holdout)} accepted annotations are in the frozen "
                                   "holdout; annotate more tasks to have rows to train on")
    params, train, validation = _with_early_stopping(policy.params, train)
    rehearsal = _rehearsal(policy, len(train))
    counts = {"annotations": len(annotations.rows), "train": len(train), "validation": len(validation),
              "holdout": len(holdout), "rehearsal": len(rehearsal), "skipped": dict(annotations.skipped)}
    train = train + rehearsal
    say("training", **counts)
    with store.staging() as staged:
        result = fine_tune(train, base.path, staged, params, labels=base_classifier.labels,
                           eval_examples=validation or None,
                           progress=lambda p: say("training", **_progress_fields(p)))
        say("evaluating", holdout=len(holdout))
        current = store.current_version(project) or base.version
        calibration_record, candidate_metrics = _calibrate(load_candidate(staged), base, validation, holdout)
        current_metrics = evaluate(classifier_of(current), holdout) if holdout else None
        decision = decide(candidate_metrics, current_metrics, len(holdout), policy, force=force)
        say("building engine")
        engine_record = (policy.engine_build.record(staged, holdout + validation,
                                                    "the project holdout and validation slice")
                         if policy.engine_build else unbuilt_record())
        say("publishing")
        meta = {
            "source": f"fine-tuned on accepted annotations of Label Studio project {project}",
            "kind": "retrain", "project": project, "parent": base.version, "compared_with": current,
            "labels": list(base_classifier.labels),
            "data_hash": annotations.data_hash(), "counts": counts, "params": asdict(params),
            "training": result.summary(), "train_seconds": round(result.train_seconds, 1),
            "metrics": {"holdout": candidate_metrics}, "compared_metrics": {"holdout": current_metrics},
            "calibration": calibration_record, "engine": engine_record,
            "decision": asdict(decision), "status": "candidate", "job": label,
        }
        candidate = store.publish(staged, meta, name=f"p{project}-retrain", make_current=False)
    if decision.promote:
        say("promoting", candidate=candidate.version)
        try:
            decision = _promote_if_unchanged(store, project, candidate, current, decision, label, may_promote)
        except Exception as exc:
            called_off = Decision(False, f"not promoted: {type(exc).__name__} before the switch ({decision.reason})")
            store.update_meta(candidate.version, status="rejected", decision=asdict(called_off))
            raise
    store.update_meta(candidate.version, status="promoted" if decision.promote else "rejected",
                      decision=asdict(decision))
    outcome = RetrainOutcome(candidate.version, current, decision, candidate_metrics, current_metrics, counts)
    log.info("project %s: %s", project, outcome.summary())
    return outcome


def _calibrate(
    candidate: Classifier, base: ModelVersion, validation: list[Example], holdout: list[Example]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The candidate's calibration record and its holdout metrics as it will serve: its temperature is fitted on
    the validation slice (predicted at T=1, `candidate` being the freshly trained checkpoint) or, without one,
    the parent's; ECE and log-loss before/after are measured on the holdout, which neither fit nor training saw."""
    gold = [e.label for e in holdout]
    raw = candidate.predict([e.text for e in holdout]) if holdout else []
    if validation:
        at_one, fitted_on = candidate.predict([e.text for e in validation]), [e.label for e in validation]
        temperature = calibration.fit(at_one, fitted_on)
        own = calibration.own_rows_record(
            calibration.calibrate(at_one, temperature), fitted_on,
            f"the {len(validation)} validation rows of its training (its temperature was fitted on them too)")
        record = calibration.fitted(temperature, "the validation slice (early-stopping rows)", len(validation),
                                    "the project holdout", raw, gold, own)
    else:
        temperature = calibration.temperature_of(base.meta)
        record = calibration.uncalibrated(
            temperature, f"no validation slice (fewer than {EARLY_STOPPING_MIN_ROWS} training rows): keeps the "
                         f"temperature of its parent {base.version}")
    return record, score_predictions(calibration.calibrate(raw, temperature), gold) if holdout else None


def _base_version(store: ModelStore, policy: RetrainPolicy, project: int) -> ModelVersion:
    name = policy.base or store.current_version(project)
    if not name:
        raise ModelUnavailable("the model store (MODEL_DIR) has no current version to fine-tune from")
    return store.get(name)


def _check_enough(project: int, annotations: AnnotationSet, policy: RetrainPolicy) -> None:
    if len(annotations.rows) >= policy.min_annotations:
        return
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(annotations.skipped.items()))
    raise NotEnoughAnnotations(
        f"project {project} has {len(annotations.rows)} accepted annotation(s); training needs at least "
        f"TRAIN_MIN_ANNOTATIONS={policy.min_annotations}" + (f" (left out: {skipped})" if skipped else "")
    )


def _with_early_stopping(
    params: TrainParams, train: list[Example]
) -> tuple[TrainParams, list[Example], list[Example]]:
    """With enough rows, hold a validation slice out of training, score it after every epoch, keep the best epoch
    and stop after two epochs without gain (small data learns late: evaluating more often stops it too soon)."""
    if len(train) < EARLY_STOPPING_MIN_ROWS:
        return params, train, []
    rest, validation = hold_out(train, max(20, round(VALIDATION_SHARE * len(train))), params.seed)
    steps_per_epoch = max(1, math.ceil(len(rest) / params.batch_size))
    return replace(params, eval_every=steps_per_epoch, patience=2), rest, validation


def _rehearsal(policy: RetrainPolicy, project_rows: int) -> list[Example]:
    """A seeded sample of the rehearsal file, rehearsal_ratio rows per project training row (none without a file).
    Validation and holdout stay project-only: promotion is judged on the project's rows."""
    if policy.rehearsal_file is None or policy.rehearsal_ratio <= 0:
        return []
    pool = read_examples(policy.rehearsal_file)
    count = min(len(pool), round(policy.rehearsal_ratio * project_rows))
    return random.Random(policy.params.seed).sample(pool, count)


def _progress_fields(p: TrainProgress) -> dict[str, Any]:
    return {"step": p.step, "total_steps": p.total_steps, "epoch": round(p.epoch, 3), "loss": round(p.loss, 4),
            "eta_s": round(p.eta_s, 1), "elapsed_s": round(p.elapsed_s, 1)}


def _promote_if_unchanged(
    store: ModelStore, project: int, candidate: ModelVersion, compared_with: str, decision: Decision, label: str,
    may_promote: Callable[[], None] | None,
) -> Decision:
    """Move the project's line to the candidate unless the version the project is served changed since the
    comparison (then it stays a candidate): one compare-and-swap under the store lock."""
    try:
        store.set_current(candidate.version, reason=f"promoted by training {label}".strip(), project=project,
                          expect=compared_with, check=may_promote)
    except PointerMoved as exc:
        return Decision(False, f"{exc}; the candidate was compared with {compared_with}, so it is kept but not "
                               "promoted")
    return decision
