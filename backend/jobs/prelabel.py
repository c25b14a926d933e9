"""Bulk pre-labeling of one project, as plain functions over a StudioClient, a classifier and a RunStore.

Exactly once, as Label Studio's users see it (Label Studio has no upsert):

1. plan: page through the task ids; a task that already holds a prediction of the run's model version is
   skipped, the rest is cut into chunks of fixed task ids;
2. chunk: read the chunk's tasks *with their predictions* → delete extra copies of our version (keeping the
   lowest id) → predict only tasks still without one → write them in bulk requests → compare the count
   Label Studio says it created with the count sent → read the tasks again and repair the same way.

Inside a chunk, predicting and writing overlap: the tasks to write are cut into write batches
(`write_batches`), one background thread sends batch k to Label Studio while this thread predicts batch k+1
(torch releases the GIL), and at most one write is in flight. Label Studio spends more CPU storing a
prediction than we spend computing it, so the chunk then takes about as long as its writes alone. A batch is
sent only after the one before it was answered, a cancel is checked before each, and the chunk never returns
or raises while a write is still in flight; the check before and the verify after cover the whole chunk, so
a chunk stopped between two batches (killed, a 5xx, a cancel) is completed by its retry like any other.

Every step is safe to repeat. A chunk that crashed after its write finds its predictions on the retry and
writes nothing; two writers racing on a task (a re-trigger while a lost run still works) both end with the
same repair, which keeps the lowest id, so the task is left with exactly one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from backend.errors import InvalidLabelingConfig, LabelStudioError
from backend.jobs.runs import Run, RunState, RunStore
from backend.labeling.results import build_prediction, texts_from_tasks
from backend.labeling.spec import LabelingSpec, parse_spec
from backend.model.types import Classifier
from backend.studio import ProjectInfo, StudioClient, TaskPredictions

log = logging.getLogger(__name__)


# predictions per Label Studio write inside a chunk (the PRELABEL_WRITE_BATCH default); 0: the chunk in one write.
# Label Studio 1.23.2's cost of one import request grows with the predictions the project already holds
# (bench/prelabel_throughput.py), so on it more writes per chunk cost more than the overlap saves
DEFAULT_WRITE_BATCH = 0


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
    write_s: float = 0.0  # the writes' own time, overlapping inference
    write_wait_s: float = 0.0  # time this thread waited for a write to be answered
    writes: int = 0
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
    cancelled: Callable[[], bool] = lambda: False,
    prefill_from: float | None = None,
    write_batch: int = DEFAULT_WRITE_BATCH,
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
    usable, no_text = _usable(todo, spec)
    if no_text:
        out.failed += len(no_text)
        out.problems.append(f"{len(no_text)} task(s) without a text in data[{spec.data_key!r}]: {_ids(no_text)}")
    if not usable:
        return out
    writer = _Pipeline(studio, project_id, cancelled, out)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prelabel-write") as pool:
        for batch in write_batches(usable, write_batch):
            payload = _predictions(batch, spec, classifier, model_version, out, prefill_from)
            writer.send(pool, payload)  # waits for the previous write, then sends this one in the background
        writer.drain()
    _verify(studio, project_id, writer.sent, model_version, writer.created, out)
    return out


def write_batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """items in one write when size is 0 or at least len(items); else cut into writes of `size`, the first a
    quarter of that (Label Studio, idle while the chunk's first batch is predicted, gets its first write sooner)."""
    if size <= 0 or len(items) <= size:
        yield items
        return
    first = max(1, size // 4)
    yield items[:first]
    for start in range(first, len(items), size):
        yield items[start : start + size]


class _Pipeline:
    """The chunk's writes: one in flight at a time on a background thread, each sent once the previous one was
    answered and no cancel was asked for; the created counts and the task ids sent add up here."""

    def __init__(self, studio: StudioClient, project_id: int, cancelled: Callable[[], bool], out: ChunkOutcome):
        self.studio, self.project_id, self.cancelled, self.out = studio, project_id, cancelled, out
        self.sent: list[int] = []
        self.created = 0
        self._pending: Future[int] | None = None

    def send(self, pool: ThreadPoolExecutor, payload: list[dict[str, Any]]) -> None:
        """Wait for the write in flight (its error is raised here), then start writing payload."""
        self.drain()
        if not payload:
            return
        if self.cancelled():
            raise RunCancelled()
        self.sent += [p["task"] for p in payload]
        self.out.writes += 1
        self._pending = pool.submit(self._write, payload)

    def drain(self) -> None:
        """Wait for the write in flight, if any; a write that failed raises its error (LabelStudioError)."""
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        started = time.monotonic()
        try:
            self.created += pending.result()
        finally:
            self.out.write_wait_s += time.monotonic() - started

    def _write(self, payload: list[dict[str, Any]]) -> int:
        started = time.monotonic()
        try:
            return self.studio.import_predictions(self.project_id, payload)
        finally:
            self.out.write_s += time.monotonic() - started


def _read(
    studio: StudioClient, project_id: int, task_ids: Sequence[int], out: ChunkOutcome, *, with_data: bool = True
) -> list[TaskPredictions]:
    started = time.monotonic()
    tasks = studio.tasks(project_id, task_ids, with_data=with_data)
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


def _usable(todo: Sequence[TaskPredictions], spec: LabelingSpec) -> tuple[list[tuple[int, str]], list[int]]:
    """([(task id, text)] of the tasks with a text, [ids of those without one])."""
    texts = texts_from_tasks([{"data": t.data} for t in todo], spec.data_key)
    usable = [(t.id, text) for t, text in zip(todo, texts, strict=True) if text is not None]
    no_text = [t.id for t, text in zip(todo, texts, strict=True) if text is None]
    return usable, no_text


def _predictions(
    batch: Sequence[tuple[int, str]], spec: LabelingSpec, classifier: Classifier, model_version: str,
    out: ChunkOutcome, prefill_from: float | None,
) -> list[dict[str, Any]]:
    started = time.monotonic()
    preds = classifier.predict([text for _, text in batch]) if batch else []
    out.infer_s += time.monotonic() - started
    return [{"task": task_id, **build_prediction(p, spec, model_version, prefill_from=prefill_from)}
            for (task_id, _), p in zip(batch, preds, strict=True)]


def _verify(
    studio: StudioClient, project_id: int, sent: list[int], model_version: str, created: int, out: ChunkOutcome
) -> None:
    """Read the written tasks back (their predictions only): repair duplicates, count what Label Studio dropped."""
    tasks = _read(studio, project_id, sent, out, with_data=False)
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
