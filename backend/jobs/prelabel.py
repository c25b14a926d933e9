"""Bulk pre-labeling of one project, as plain functions over a StudioClient, a classifier and a RunStore.

Exactly once, as Label Studio's users see it (Label Studio has no upsert):

1. plan: page through the task ids; a task that already holds a prediction of the run's model version is
   skipped, the rest is cut into chunks of fixed task ids;
2. chunk: read the chunk's tasks *with their predictions* → delete extra copies of our version (keeping the
   lowest id) → predict only tasks still without one → write them in one bulk request → compare the count
   Label Studio says it created with the count sent → read the tasks again and repair the same way.

Every step is safe to repeat. A chunk that crashed after its write finds its predictions on the retry and
writes nothing; two writers racing on a task (a re-trigger while a lost run still works) both end with the
same repair, which keeps the lowest id, so the task is left with exactly one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.errors import InvalidLabelingConfig, LabelStudioError
from backend.jobs.runs import Run, RunState, RunStore
from backend.labeling.results import build_prediction, texts_from_tasks
from backend.labeling.spec import LabelingSpec, parse_spec
from backend.model.types import Classifier
from backend.studio import ProjectInfo, StudioClient, TaskPredictions

log = logging.getLogger(__name__)


class RunCancelled(Exception):
    """The run was cancelled while this chunk worked; nothing more is written."""


@dataclass
class ChunkOutcome:
    """What one chunk did, and where its time went."""

    written: int = 0
    already: int = 0
    deduped: int = 0
    failed: int = 0
    gone: int = 0
    read_s: float = 0.0
    infer_s: float = 0.0
    write_s: float = 0.0
    problems: list[str] = field(default_factory=list)


def check_project(studio: StudioClient, project_id: int, labels: Sequence[str]) -> tuple[ProjectInfo, LabelingSpec]:
    """The project and how our labels go into its config; ProjectNotFound, LabelStudioAuthError or
    InvalidLabelingConfig (naming the project) when it cannot be pre-labeled."""
    project = studio.project(project_id)
    try:
        spec = parse_spec(project.label_config, labels)
    except InvalidLabelingConfig as exc:
        raise InvalidLabelingConfig(f"project {project_id} ({project.title!r}) cannot be pre-labeled: {exc}") from None
    return project, spec


def plan_chunks(
    studio: StudioClient, project_id: int, model_version: str, chunk_size: int, *, unlabeled_only: bool = False
) -> tuple[list[list[int]], int]:
    """(chunks of task ids that lack a prediction of model_version, how many tasks already had one); with
    unlabeled_only, annotated tasks are left out altogether."""
    todo: list[int] = []
    already = 0
    for task_id, versions in studio.task_versions(project_id, unlabeled_only=unlabeled_only):
        if model_version in versions:
            already += 1
        else:
            todo.append(task_id)
    todo.sort()
    return [todo[i : i + chunk_size] for i in range(0, len(todo), chunk_size)], already


def prelabel_chunk(
    studio: StudioClient,
    project_id: int,
    task_ids: Sequence[int],
    spec: LabelingSpec,
    classifier: Classifier,
    model_version: str,
    *,
    cancelled: Any = lambda: False,
    prefill_from: float | None = None,
) -> ChunkOutcome:
    """Give every task of the chunk exactly one prediction of model_version (see the module docstring)."""
    out = ChunkOutcome()
    tasks = _read(studio, project_id, task_ids, out)
    out.gone = len(set(task_ids) - {t.id for t in tasks})
    out.deduped += _repair(studio, tasks, model_version)
    todo = [t for t in tasks if not t.prediction_ids(model_version)]
    out.already = len(tasks) - len(todo)
    if not todo:
        return out
    payload, no_text = _predictions(todo, spec, classifier, model_version, out, prefill_from)
    if no_text:
        out.failed += len(no_text)
        out.problems.append(f"{len(no_text)} task(s) without a text in data[{spec.data_key!r}]: {_ids(no_text)}")
    if not payload:
        return out
    if cancelled():
        raise RunCancelled()
    started = time.monotonic()
    created = studio.import_predictions(project_id, payload)
    out.write_s += time.monotonic() - started
    _verify(studio, project_id, [p["task"] for p in payload], model_version, created, out)
    return out


def _read(studio: StudioClient, project_id: int, task_ids: Sequence[int], out: ChunkOutcome) -> list[TaskPredictions]:
    started = time.monotonic()
    tasks = studio.tasks(project_id, task_ids)
    out.read_s += time.monotonic() - started
    return tasks


def _repair(studio: StudioClient, tasks: Sequence[TaskPredictions], model_version: str) -> int:
    """Delete all but the lowest-id prediction of model_version on each task; how many were deleted."""
    deleted = 0
    for task in tasks:
        for extra in task.prediction_ids(model_version)[1:]:
            studio.delete_prediction(extra)
            deleted += 1
    if deleted:
        log.warning("removed %d duplicate prediction(s) of %s", deleted, model_version)
    return deleted


def _predictions(
    todo: Sequence[TaskPredictions], spec: LabelingSpec, classifier: Classifier, model_version: str,
    out: ChunkOutcome, prefill_from: float | None,
) -> tuple[list[dict[str, Any]], list[int]]:
    texts = texts_from_tasks([{"data": t.data} for t in todo], spec.data_key)
    usable = [(t, text) for t, text in zip(todo, texts, strict=True) if text is not None]
    no_text = [t.id for t, text in zip(todo, texts, strict=True) if text is None]
    started = time.monotonic()
    preds = classifier.predict([text for _, text in usable]) if usable else []
    out.infer_s += time.monotonic() - started
    pairs = zip(usable, preds, strict=True)
    payload = [{"task": t.id, **build_prediction(p, spec, model_version, prefill_from=prefill_from)}
               for (t, _), p in pairs]
    return payload, no_text


def _verify(
    studio: StudioClient, project_id: int, sent: list[int], model_version: str, created: int, out: ChunkOutcome
) -> None:
    """Read the written tasks back: repair duplicates, count what Label Studio dropped."""
    tasks = _read(studio, project_id, sent, out)
    out.deduped += _repair(studio, tasks, model_version)
    have = {t.id for t in tasks if t.prediction_ids(model_version)}
    missing = [t for t in sent if t not in have]
    out.written += len(sent) - len(missing)
    if created != len(sent) or missing:
        out.failed += len(missing)
        out.problems.append(
            f"Label Studio reported {created} of {len(sent)} predictions created; "
            f"{len(missing)} task(s) still without one: {_ids(missing)}"
        )


def _ids(ids: Sequence[int], shown: int = 10) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(str(i) for i in ids[:shown]) + more


def finish_run(runs: RunStore, studio: StudioClient | None, run_id: str, current_version: str | None) -> Run:
    """Close a run whose chunks are all counted: select its version on the project, write an honest summary."""
    run = runs.get(run_id)
    if run.state.final:
        return run
    problems = run.count("failed") or run.count("chunks_failed")
    selected = ""
    if studio is not None and run.count("done") + run.count("skipped") > 0:
        try:
            if run.count("done") or studio.project(run.project).model_version != run.model_version:
                studio.select_model_version(run.project, run.model_version)
            selected = f"; the project shows {run.model_version}"
        except LabelStudioError as exc:
            runs.error(run_id, f"could not select model version {run.model_version} on the project: {exc}")
            problems = True
    summary = (
        f"wrote {run.count('done')} prediction(s) of {run.model_version}, {run.count('skipped')} task(s) already "
        f"had one, {run.count('failed')} row(s) failed, {run.count('chunks_failed')} chunk(s) failed"
        f"{', ' + str(run.count('deduped')) + ' duplicate(s) removed' if run.count('deduped') else ''}{selected}"
    )
    if current_version and current_version != run.model_version:
        summary += (f". The current model changed to {current_version} during the run: run prelabel again "
                    "to pre-label with it")
    state = RunState.FINISHED_WITH_ERRORS if problems else RunState.FINISHED
    runs.set_state(run_id, state, summary=summary)
    runs.release_project(run.project, run_id)
    log.info("job %s %s: %s", run_id, state.value, summary)
    return runs.get(run_id)
