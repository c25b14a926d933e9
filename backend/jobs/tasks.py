"""The rq entry points (enqueued by dotted path, JSON arguments) and the worker context they run in.

A task reads its run, calls backend.jobs.prelabel and counts the outcome on the run once. Errors split in two:
a LabelStudioUnavailable (5xx, timeout, connection) propagates, so rq's Retry runs the job again with backoff
and the final failure lands in rq's failed registry; a permanent error (unknown project, bad token, unusable
label config) ends the run, or the chunk, at once with a message saying what to fix.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rq import get_current_job
from rq.job import Job

from backend import quality, report
from backend.annotations import AnnotationSet
from backend.config import Settings
from backend.errors import BackendError, JobNotFound, LabelStudioError
from backend.jobs import metrics
from backend.jobs.prelabel import RunCancelled, check_project, finish_run, plan_chunks
from backend.jobs.prelabel import prelabel_chunk as prelabel_chunk_impl
from backend.jobs.queues import again_key, enqueue_assessment, enqueue_chunks, enqueue_prelabel
from backend.jobs.runs import Run, RunState, RunStore
from backend.labeling.spec import LabelingSpec
from backend.lines import follow_in_studio
from backend.model.cache import ModelCache
from backend.model.memo import remembering
from backend.model.types import Classifier
from backend.retention import collect
from backend.retraining import RetrainOutcome, RetrainPolicy, retrain
from backend.store import ModelStore
from backend.studio import StudioClient

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    """What the tasks of one worker process share: settings, the store, the loaded models (the same ModelCache the
    API uses: a run stays on its pinned version whatever the lines do meanwhile), a Label Studio client."""

    settings: Settings
    store: ModelStore
    models: ModelCache
    studio_factory: Callable[[], StudioClient]
    candidate_loader: Callable[[Any], Any] | None = None  # a freshly trained checkpoint dir → classifier
    _studio: StudioClient | None = None
    _specs: OrderedDict[str, LabelingSpec] = field(default_factory=OrderedDict)

    def studio(self) -> StudioClient:
        """The Label Studio client, made once; LabelStudioAuthError when no token is configured."""
        if self._studio is None:
            self._studio = self.studio_factory()
        return self._studio

    def spec(self, run: Run, classifier: Classifier) -> LabelingSpec:
        """The run's labeling spec, read from Label Studio once per run per worker."""
        if run.id not in self._specs:
            _, self._specs[run.id] = check_project(self.studio(), run.project, classifier.labels)
            while len(self._specs) > 64:
                self._specs.popitem(last=False)
        return self._specs[run.id]


_context: WorkerContext | None = None


def install(context: WorkerContext | None) -> None:
    """Make `context` the one the tasks of this process use (run_worker does it; tests do it with fakes)."""
    global _context
    _context = context


def context() -> WorkerContext:
    """The installed context; a task run outside a worker made by run_worker fails loudly."""
    if _context is None:
        raise RuntimeError("no worker context: run jobs with `sentiment-backend worker`")
    return _context


def _permanent(exc: Exception) -> bool:
    """True for errors a retry cannot fix."""
    if isinstance(exc, LabelStudioError):
        return not exc.retryable
    return isinstance(exc, BackendError)


def plan_prelabel(run_id: str) -> dict[str, Any]:
    """Check the project, list the tasks still lacking a prediction of the run's version, enqueue their chunks."""
    ctx, runs, job = context(), _runs(), get_current_job()
    run = runs.get(run_id)
    if run.state.final:
        return {"state": run.state.value}
    runs.set_state(run_id, RunState.PLANNING)
    try:
        studio = ctx.studio()
        classifier = ctx.models.get(run.model_version)
        check_project(studio, run.project, classifier.labels)
        if "chunks_total" not in run.counters:  # a retried plan keeps the chunks it already saved
            chunk_size = run.chunk_size or ctx.settings.prelabel_chunk_size
            chunks, already = plan_chunks(studio, run.project, run.model_version, chunk_size,
                                          unlabeled_only=bool(run.info.get("unlabeled_only")))
            runs.save_chunks(run_id, chunks)
            runs.add(run_id, skipped=already)
    except Exception as exc:
        if not _permanent(exc):
            raise
        return _fail(runs, run, f"{type(exc).__name__}: {exc}")
    run = runs.get(run_id)
    runs.set_state(run_id, RunState.RUNNING)
    if run.count("chunks_total") == 0:
        _finish(runs, run_id)
    else:
        assert job is not None
        enqueue_chunks(job.connection, run_id, run.count("chunks_total"), ctx.settings.job_retries)
    log.info("job %s: %d task(s) to pre-label in %d chunk(s), %d already done", run_id, run.count("total"),
             run.count("chunks_total"), run.count("skipped"))
    return {"chunks": run.count("chunks_total"), "total": run.count("total"), "skipped": run.count("skipped")}


def prelabel_chunk(run_id: str, index: int) -> dict[str, Any]:
    """Pre-label one chunk exactly once (backend.jobs.prelabel) and count it on the run."""
    ctx, runs = context(), _runs()
    run = runs.get(run_id)
    if run.state.final:
        return {"state": run.state.value}
    runs.mark_started(run_id)
    task_ids = runs.chunk(run_id, index)
    started = time.monotonic()
    try:
        classifier = ctx.models.get(run.model_version)
        spec = ctx.spec(run, classifier)
        prefill_from = (quality.threshold_for(ctx.store.root, run.project, run.model_version)
                        if ctx.settings.prefill == "confident" else None)
        out = prelabel_chunk_impl(ctx.studio(), run.project, task_ids, spec, classifier, run.model_version,
                                  cancelled=lambda: runs.is_cancelled(run_id), prefill_from=prefill_from,
                                  write_batch=ctx.settings.prelabel_write_batch)
    except RunCancelled:
        return {"cancelled": True}
    except Exception as exc:
        if not _permanent(exc):
            raise
        runs.error(run_id, f"chunk {index}: {type(exc).__name__}: {exc}")
        _count_chunk(runs, run_id, index, ok=False, failed=len(task_ids))
        return {"failed": len(task_ids)}
    for problem in out.problems:
        runs.error(run_id, f"chunk {index}: {problem}")
    metrics.record_chunk(runs.redis, out, time.monotonic() - started)
    _count_chunk(runs, run_id, index, ok=True, done=out.written + out.already, failed=out.failed,
                 deduped=out.deduped, skipped=out.gone, total=-out.gone)
    log.info("job %s chunk %d: %d written, %d already there, %d failed (read %.2fs, infer %.2fs, %d write(s) "
             "%.2fs, of which waited for %.2fs)", run_id, index, out.written, out.already, out.failed, out.read_s,
             out.infer_s, out.writes, out.write_s, out.write_wait_s)
    return {"written": out.written, "already": out.already, "failed": out.failed, "deduped": out.deduped}



# share of a training's progress reached when each phase starts; training itself fills TRAINING..EVALUATING
PHASE_PROGRESS = {"queued": 0.0, "loading annotations": 0.02, "training": 0.05, "evaluating": 0.9,
                  "building engine": 0.92, "publishing": 0.95, "promoting": 0.98}
REPORT_EVERY_S = 1.0


class TrainReporter:
    """Writes a training's phase, step, epoch, loss and ETA onto its run (at most once a second while training)
    and stops the training when the run was cancelled."""

    def __init__(self, runs: RunStore, run_id: str) -> None:
        self.runs, self.run_id = runs, run_id
        self._phase, self._last = "", 0.0
        self._held: dict[str, Any] = {}  # the newest training progress not written yet (throttled)

    def __call__(self, phase: str, **details: Any) -> None:
        now = time.monotonic()
        if phase == self._phase and now - self._last < REPORT_EVERY_S:
            self._held = details
            return
        if phase != self._phase and self._held:  # leaving training: its last step, epoch and loss are kept
            details = {**{k: v for k, v in self._held.items() if k != "eta_s"}, **details}
        self._held = {}
        if self.runs.is_cancelled(self.run_id):
            raise RunCancelled(self.run_id)
        self._phase, self._last = phase, now
        progress = PHASE_PROGRESS.get(phase, 0.0)
        if phase == "training" and details.get("total_steps"):
            span = PHASE_PROGRESS["evaluating"] - PHASE_PROGRESS["training"]
            progress += span * details["step"] / details["total_steps"]
        if "annotations" in details:
            details = {"counts": details}
        eta = details.pop("eta_s", None) if phase == "training" else None
        self.runs.set_info(self.run_id, phase=phase, progress=round(progress, 4), eta_s=eta, **details)


def train_project(run_id: str) -> dict[str, Any]:
    """Retrain on the project's accepted annotations (backend.retraining), promoting only a candidate that is at
    least as good on the frozen holdout."""
    ctx, runs = context(), _runs()
    run = runs.get(run_id)
    if run.state.final:  # cancelled while queued, or a retry of a run that ended: its claim must not outlive it
        runs.release_project(run.project, run.id, run.kind)
        return {"state": run.state.value}
    runs.set_state(run_id, RunState.RUNNING)
    runs.mark_started(run_id)
    try:
        outcome = retrain(
            ctx.studio(), ctx.store, run.project, RetrainPolicy.from_settings(ctx.settings),
            classifier_of=ctx.models.get, load_candidate=ctx.candidate_loader or ctx.models.load_dir,
            force=bool(run.info.get("force")), report=TrainReporter(runs, run_id), label=run_id,
            may_promote=lambda: _not_cancelled(runs, run_id),
        )
    except RunCancelled:  # cancel_run kept the claim while this job ran; it has stopped now
        runs.release_project(run.project, run.id, run.kind)
        log.info("job %s: cancelled; the training stopped", run_id)
        return {"cancelled": True}
    except Exception as exc:
        if not _permanent(exc):
            raise
        return _fail(runs, run, f"{type(exc).__name__}: {exc}", consequence="nothing was promoted")
    _finish_training(ctx, runs, run, outcome)
    return {"candidate": outcome.candidate, "promoted": outcome.promoted}


def _finish_training(ctx: WorkerContext, runs: RunStore, run: Run, outcome: RetrainOutcome) -> None:
    runs.set_info(run.id, phase="done", progress=1.0, eta_s=0.0, candidate=outcome.candidate,
                  promoted=outcome.promoted, metrics=outcome.candidate_metrics,
                  compared_metrics=outcome.current_metrics, counts=outcome.counts)
    runs.set_state(run.id, RunState.FINISHED, summary=outcome.summary())
    runs.release_project(run.project, run.id, run.kind)
    log.info("job %s: %s", run.id, outcome.summary())
    if outcome.promoted:
        runs.set_info(run.id, label_studio=follow_in_studio(ctx.studio, run.project, outcome.candidate))
    if outcome.promoted and ctx.settings.prelabel_after_promotion:
        again, _ = enqueue_prelabel(runs.redis, run.project, outcome.candidate, ctx.settings.prelabel_chunk_size,
                                    unlabeled_only=True)
        runs.set_info(run.id, prelabel_job=again.id)
        log.info("job %s: %s pre-labels the unlabeled tasks with %s", run.id, again.id, outcome.candidate)
    try:  # retention (backend.retention) frees old rejected candidates' weights; it never fails the training
        spare = [ctx.settings.train_base] if ctx.settings.train_base else []
        freed = collect(ctx.store, ctx.settings.keep_rejected, keep=spare).bytes_freed
        runs.set_info(run.id, gc_bytes_freed=freed)
    except Exception:
        log.warning("job %s: removing old rejected candidates' weights failed", run.id, exc_info=True)
    _assess(runs, run.project)


def assess_project(project: int) -> dict[str, Any]:
    """Recompute the project's pre-fill threshold and likely label errors for the version it is served now
    (backend.quality); enqueued after each training and each bulk run."""
    ctx = context()
    version = ctx.store.current_version(project)
    if version is None:
        return {"skipped": "the model store is empty"}
    copies = ctx.settings.train_on_prediction_copies
    classifier_of = remembering(ctx.models.get)  # the threshold and the report score the same rows: once
    accepted = quality.read_accepted(ctx.studio(), project, classifier_of(version).labels,
                                     include_prediction_copies=copies)  # one export for both
    record = quality.assess_project(ctx.studio(), ctx.store, project, classifier_of=classifier_of,
                                    policy=quality.Policy.from_settings(ctx.settings), accepted=accepted)
    if record is None:
        return {"skipped": "the model store is empty"}
    return {"version": record["version"], "threshold": record["prefill"]["threshold"],
            "label_errors": record["label_errors"]["found"],
            "report": _render_report(ctx, project, record["version"], accepted, classifier_of)}


def _render_report(ctx: WorkerContext, project: int, version: str, accepted: AnnotationSet,
                   classifier_of: Callable[[str], Classifier]) -> bool:
    """Render and store the version's evaluation report (backend.report); a failure is logged, never raised: the
    assessment it follows is what the job is for."""
    try:
        report.build(ctx.studio(), ctx.store, project, version, classifier_of, accepted=accepted)
    except Exception:  # the page is a by-product: matplotlib, a full disk or Label Studio must not fail the job
        log.warning("project %s: the evaluation report of %s was not rendered", project, version, exc_info=True)
        return False
    return True


def _not_cancelled(runs: RunStore, run_id: str) -> None:
    """Called under the store lock right before a promotion: a cancelled training never moves a line."""
    if runs.is_cancelled(run_id):
        raise RunCancelled(run_id)


def on_train_failure(job: Job, connection: Any, exc_type: Any, exc_value: Any, traceback: Any) -> None:
    """Record a failed training attempt (a Label Studio outage, a killed worker); the last one fails the run."""
    _record_attempt(job, connection, exc_type, exc_value, "training", consequence="nothing was promoted")


def on_chunk_failure(job: Job, connection: Any, exc_type: Any, exc_value: Any, traceback: Any) -> None:
    """rq calls this on every failed attempt (and for a chunk whose worker died): record it; the last attempt
    counts the chunk as failed so the run can still finish with an honest summary."""
    run_id, index = job.args[0], int(job.args[1])
    runs = RunStore(connection)
    final = not (job.retries_left and job.retries_left > 0)
    name, text = getattr(exc_type, "__name__", "Error"), str(exc_value or "")
    reason = f"{name}: {text}" if text else f"{name}: the worker died or was killed during the chunk"
    tail = "no retries left" if final else f"retrying, {job.retries_left} attempt(s) left"
    try:
        runs.error(run_id, f"chunk {index}: {reason} ({tail})")
        metrics.record_failure(connection, final=final)
        if final:
            _count_chunk(runs, run_id, index, ok=False, failed=len(runs.chunk(run_id, index)))
    except JobNotFound:
        log.warning("job %s is gone from Redis; chunk %d's failure is not recorded", run_id, index)


def on_plan_failure(job: Job, connection: Any, exc_type: Any, exc_value: Any, traceback: Any) -> None:
    """Record a failed planning attempt; after the last one the run fails with the reason."""
    _record_attempt(job, connection, exc_type, exc_value, "plan", consequence="nothing was written")


def _record_attempt(job: Job, connection: Any, exc_type: Any, exc_value: Any, step: str, *, consequence: str) -> None:
    """A run-level job's failed attempt: an error line while retries are left, then the run fails with the reason."""
    runs = RunStore(connection)
    reason = f"{getattr(exc_type, '__name__', 'Error')}: {exc_value or 'the worker died or was killed'}"
    try:
        run = runs.get(job.args[0])
        if run.state.final:  # cancelled while the job ran, then the job died or failed: it will never release
            runs.error(run.id, f"{step}: {reason} (the run had already ended: {run.state.value})")
            runs.release_project(run.project, run.id, run.kind)
        elif job.retries_left and job.retries_left > 0:
            runs.error(job.args[0], f"{step}: {reason} (retrying, {job.retries_left} attempt(s) left)")
        else:
            _fail(runs, run, reason, consequence=consequence)
    except JobNotFound:
        pass


def _count_chunk(runs: RunStore, run_id: str, index: int, *, ok: bool, **amounts: int) -> None:
    if runs.finish_chunk(run_id, index, ok=ok, **amounts):
        _finish(runs, run_id)


def _finish(runs: RunStore, run_id: str) -> None:
    """Close the run; when new tasks asked for pre-labeling meanwhile, start the next run with the current model."""
    project = runs.get(run_id).project
    current = _context.store.current_version(project) if _context else None
    run = finish_run(runs, _studio_or_none(), run_id, current)
    chunk_size = runs.redis.getdel(again_key(run.project))
    if chunk_size is not None and current:
        again, _ = enqueue_prelabel(runs.redis, run.project, current, int(chunk_size))
        log.info("job %s: tasks were created during the run; %s pre-labels them", run_id, again.id)
    _assess(runs, run.project)


def _assess(runs: RunStore, project: int) -> None:
    """Enqueue the project's assessment (threshold, label errors); a failure to enqueue only logs."""
    try:
        enqueue_assessment(runs.redis, project)
    except Exception as exc:  # Redis away or the queue full: the next run or training tries again
        log.warning("project %s: assessment not enqueued: %s", project, type(exc).__name__)


def _studio_or_none() -> StudioClient | None:
    try:
        return context().studio()
    except (RuntimeError, LabelStudioError):
        return None


def _fail(runs: RunStore, run: Run, reason: str, consequence: str = "nothing was written") -> dict[str, Any]:
    runs.error(run.id, reason)
    runs.set_state(run.id, RunState.FAILED, summary=f"failed: {reason}; {consequence}")
    runs.release_project(run.project, run.id, run.kind)
    log.warning("job %s failed: %s", run.id, reason)
    return {"failed": reason}


def _runs() -> RunStore:
    job = get_current_job()
    if job is None:
        raise RuntimeError("not inside an rq job")
    return RunStore(job.connection)
