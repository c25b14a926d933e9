"""Queue names, the Redis connection, and how bulk jobs are enqueued, inspected and cancelled.

Options are explicit on every enqueue: job_timeout, result_ttl, failure_ttl, Retry with backoff, and an
on_failure callback that records each failed attempt on the run (the final one marks the chunk failed).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import redis
from rq import Callback, Queue, Retry
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from backend import keys
from backend.errors import JobQueueFull, JobQueueUnavailable
from backend.jobs.runs import Run, RunState, RunStore
from backend.redaction import mask_url

log = logging.getLogger(__name__)

PRELABEL_QUEUE = "sentiment-prelabel"
TRAIN_QUEUE = "sentiment-train"
# a worker takes training first: an annotator-triggered training should not wait behind a whole bulk run
QUEUES = (TRAIN_QUEUE, PRELABEL_QUEUE)
TRAIN_TIMEOUT_MARGIN_S = 900  # on top of TRAIN_MAX_SECONDS: export, evaluation, publishing
TRAIN_RETRIES = 1  # a training whose worker died runs once more from the start
PLAN_TIMEOUT_S = 1800
CHUNK_TIMEOUT_S = 900
RETRY_INTERVALS_S = [5, 20, 60]
# job arguments are ids and strings: JSON, never pickle
SERIALIZER = JSONSerializer
RESULT_TTL_S = 24 * 3600
FAILURE_TTL_S = 7 * 24 * 3600
# a new run is refused while this many jobs wait on its queue: an unauthenticated flood of START_TRAINING or
# TASKS_CREATED webhooks for made-up projects can then fill Redis only this far (a project's chunks count too)
MAX_QUEUED = {TRAIN_QUEUE: 100, PRELABEL_QUEUE: 50_000}


def connect(redis_url: str, *, timeout_s: float = 5.0) -> redis.Redis:
    """A Redis client for queues and run records (raw bytes, as rq wants); JobQueueUnavailable when unreachable."""
    client = redis.Redis.from_url(redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        client.ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        log.warning("Redis at %s is unreachable: %s", mask_url(redis_url), exc)
        raise JobQueueUnavailable(
            f"the job queue (Redis at REDIS_URL) is unreachable ({type(exc).__name__}); see the server log"
        ) from None
    return client


def plan_job_id(run_id: str) -> str:
    """The rq job id of a run's plan job."""
    return f"{run_id}-plan"


def chunk_job_id(run_id: str, index: int) -> str:
    """The deterministic rq job id of one chunk of a run."""
    return f"{run_id}-c{index}"


def train_job_id(run_id: str) -> str:
    """The rq job id of a training run's one job."""
    return f"{run_id}-train"


def run_job_ids(run: Run) -> list[str]:
    """Every rq job id a run has: a training's one job, or a pre-labeling's plan and then each planned chunk."""
    if run.kind == "train":
        return [train_job_id(run.id)]
    return [plan_job_id(run.id)] + [chunk_job_id(run.id, i) for i in range(run.count("chunks_total"))]


def prelabel_queue(connection: redis.Redis) -> Queue:
    """The queue plan and chunk jobs run on."""
    return Queue(PRELABEL_QUEUE, connection=connection, serializer=SERIALIZER)


def enqueue_prelabel(
    connection: redis.Redis, project: int, model_version: str, chunk_size: int, *, again_if_busy: bool = False,
    unlabeled_only: bool = False,
) -> tuple[Run, bool]:
    """(the run, True) for a new pre-labeling run of the project, or (its active run, False) when one is going;
    with again_if_busy the active run enqueues one more run when it ends (tasks created meanwhile); with
    unlabeled_only, tasks that already have an annotation are not pre-labeled."""
    _refuse_if_full(prelabel_queue(connection))
    runs = RunStore(connection)
    run = runs.create("prelabel", project, model_version, chunk_size=str(chunk_size))
    if unlabeled_only:
        runs.set_info(run.id, unlabeled_only=True)
    active = runs.claim_project(project, run.id)
    if active is not None:
        runs.delete(run.id)  # never started: the active run answers for the project
        if again_if_busy:
            connection.set(again_key(project), chunk_size, ex=keys.FOLLOW_UP_TTL_S)
        return runs.get(active), False
    prelabel_queue(connection).enqueue(
        "backend.jobs.tasks.plan_prelabel", run.id,
        job_id=plan_job_id(run.id), job_timeout=PLAN_TIMEOUT_S, result_ttl=RESULT_TTL_S, failure_ttl=FAILURE_TTL_S,
        retry=Retry(max=3, interval=RETRY_INTERVALS_S),
        on_failure=Callback("backend.jobs.tasks.on_plan_failure"),
        description=f"plan pre-labeling of project {project} ({run.id})",
    )
    return run, True


def train_queue(connection: redis.Redis) -> Queue:
    """The queue training jobs run on."""
    return Queue(TRAIN_QUEUE, connection=connection, serializer=SERIALIZER)


def enqueue_training(
    connection: redis.Redis, project: int, model_version: str, *, max_seconds: float, force: bool = False,
    reason: str = "",
) -> tuple[Run, bool]:
    """(the run, True) for a new training of the project, or (its queued or running training, False): two
    triggers at once give one training."""
    _refuse_if_full(train_queue(connection))
    runs = RunStore(connection)
    run = runs.create("train", project, model_version)
    active = runs.claim_project(project, run.id, "train")
    if active is not None:
        runs.delete(run.id)
        return runs.get(active), False
    runs.set_info(run.id, phase="queued", progress=0.0, force=force, reason=reason)
    train_queue(connection).enqueue(
        "backend.jobs.tasks.train_project", run.id,
        job_id=train_job_id(run.id), job_timeout=int(max_seconds + TRAIN_TIMEOUT_MARGIN_S), result_ttl=RESULT_TTL_S,
        failure_ttl=FAILURE_TTL_S, retry=Retry(max=TRAIN_RETRIES, interval=RETRY_INTERVALS_S[:1]),
        on_failure=Callback("backend.jobs.tasks.on_train_failure"),
        description=f"train on project {project}'s annotations ({run.id})",
    )
    return runs.get(run.id), True


def enqueue_assessment(connection: redis.Redis, project: int) -> Job:
    """One assessment of the project's served version (backend.quality: pre-fill threshold, label errors)."""
    queue = prelabel_queue(connection)
    _refuse_if_full(queue)
    return queue.enqueue(
        "backend.jobs.tasks.assess_project", int(project),
        job_id=f"assess-{int(project)}-{secrets.token_hex(4)}", job_timeout=PLAN_TIMEOUT_S, result_ttl=RESULT_TTL_S,
        failure_ttl=FAILURE_TTL_S, retry=Retry(max=2, interval=RETRY_INTERVALS_S[:2]),
        description=f"assess project {int(project)}'s served version",
    )


def _refuse_if_full(queue: Queue) -> None:
    """JobQueueFull when the queue already holds its MAX_QUEUED waiting jobs."""
    waiting = queue.count  # one LLEN
    if waiting >= MAX_QUEUED[queue.name]:
        raise JobQueueFull(f"{waiting} jobs are already waiting on {queue.name}; try again when the workers "
                           "have caught up")


def again_key(project: int) -> str:
    """Set while a project wants one more pre-labeling run after its active one (see enqueue_prelabel)."""
    return keys.prelabel_again(project)


def enqueue_chunks(connection: redis.Redis, run_id: str, count: int, retries: int) -> None:
    """One job per planned chunk, with deterministic ids (`<run>-c<index>`)."""
    queue = prelabel_queue(connection)
    jobs = [
        Queue.prepare_data(
            "backend.jobs.tasks.prelabel_chunk", (run_id, index),
            job_id=chunk_job_id(run_id, index), timeout=CHUNK_TIMEOUT_S, result_ttl=RESULT_TTL_S,
            failure_ttl=FAILURE_TTL_S, retry=Retry(max=retries, interval=RETRY_INTERVALS_S) if retries else None,
            on_failure=Callback("backend.jobs.tasks.on_chunk_failure"),
            description=f"pre-label chunk {index} of {run_id}",
        )
        for index in range(count)
    ]
    for start in range(0, len(jobs), 500):
        queue.enqueue_many(jobs[start : start + 500])


def cancel_run(connection: redis.Redis, run_id: str) -> Run:
    """Mark the run cancelled and drop its jobs still waiting; a chunk already running stops before it writes.

    A training whose job already runs keeps the project's claim (marked `stopping`) until the job sees the
    cancel and stops, or rq reports it abandoned: the next training can never overlap it. Otherwise the claim is
    released at once."""
    runs = RunStore(connection)
    run = runs.get(run_id)
    if run.state.final:
        return run
    jobs = _unfinished_jobs(connection, run_job_ids(run))
    stopping = run.kind == "train" and any(job.is_started for job in jobs)
    runs.set_state(run_id, RunState.CANCELLED, summary=_cancelled_summary(run, stopping),
                   **({"stopping": 1} if stopping else {}))
    for job in jobs:
        if not job.is_started:
            _cancel(job)
    if not stopping:
        runs.release_project(run.project, run_id, run.kind)
    return runs.get(run_id)


def _unfinished_jobs(connection: redis.Redis, ids: list[str]) -> list[Job]:
    found: list[Job] = []
    for start in range(0, len(ids), 1000):
        batch = Job.fetch_many(ids[start : start + 1000], connection=connection, serializer=SERIALIZER)
        found += [job for job in batch if job is not None and not job.is_finished]
    return found


def _cancelled_summary(run: Run, stopping: bool) -> str:
    if run.kind != "train":
        return f"cancelled after {run.count('done')} prediction(s) written"
    return "cancelled during training" if stopping else "cancelled before the training started"


def _cancel(job: Job) -> None:
    try:
        job.cancel()
    except (InvalidJobOperation, NoSuchJobError):
        pass


def queue_depths(connection: redis.Redis) -> dict[str, dict[str, int]]:
    """Per queue: jobs waiting, running, scheduled (retry backoff) and failed."""
    depths: dict[str, dict[str, int]] = {}
    for name in QUEUES:
        queue = Queue(name, connection=connection, serializer=SERIALIZER)
        depths[name] = {
            "queued": queue.count,
            "started": queue.started_job_registry.count,
            "scheduled": queue.scheduled_job_registry.count,
            "failed": queue.failed_job_registry.count,
        }
    return depths


def job_errors(connection: redis.Redis, run: Run) -> list[dict[str, Any]]:
    """The run's jobs in rq's failed registry, with the last line of their exception."""
    queue = train_queue(connection) if run.kind == "train" else prelabel_queue(connection)
    failed = set(queue.failed_job_registry.get_job_ids())
    ids = [i for i in run_job_ids(run) if i in failed]
    found = []
    for job in Job.fetch_many(ids, connection=connection, serializer=SERIALIZER):
        if job is not None:
            latest = job.latest_result()
            text = (latest.exc_string or "") if latest else ""
            found.append({"job": job.id, "error": text.strip().splitlines()[-1] if text.strip() else ""})
    return found
