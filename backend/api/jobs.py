"""Bulk jobs over HTTP: start a pre-labeling run, watch it (percent, rows/s, ETA, errors), cancel it; /metrics.

The handlers only touch Redis (a few small reads and writes): the work itself runs on `sentiment-backend worker`.
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from backend.api.auth import require_management
from backend.api.schemas import MAX_ID, JobBody, JobsBody, error_responses
from backend.config import Settings
from backend.errors import ModelNotReady
from backend.jobs.runs import RUN_ID_PATTERN

log = logging.getLogger(__name__)


class PrelabelRequest(BaseModel):
    """POST /jobs/prelabel."""

    model_config = ConfigDict(extra="forbid")

    project: int = Field(ge=1, le=MAX_ID, description="Label Studio project id")
    chunk_size: int | None = Field(default=None, ge=1, le=5000, description="tasks per chunk job")


class TrainRequest(BaseModel):
    """POST /jobs/train."""

    model_config = ConfigDict(extra="forbid")

    project: int = Field(ge=1, le=MAX_ID, description="Label Studio project id")
    force: bool = Field(default=False, description="promote even if the candidate loses on the holdout")


class JobsState:
    """The Redis client of the jobs routes, made on first use (the app starts even while Redis is down)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._redis: Any = None
        self._lock = threading.Lock()

    def redis(self) -> Any:
        """A connected client; JobQueueUnavailable (503) when Redis cannot be reached."""
        from backend.jobs.queues import connect

        with self._lock:
            if self._redis is None:
                self._redis = connect(self.settings.redis_url)
            return self._redis


def _jobs(request: Request) -> JobsState:
    state: JobsState = request.app.state.jobs
    return state


Jobs = Annotated[JobsState, Depends(_jobs)]
JobPath = Annotated[str, Path(pattern=RUN_ID_PATTERN, max_length=40, description="e.g. prelabel-3f9a1c2b7d")]
MANAGEMENT = [Depends(require_management)]
router = APIRouter()


@router.post("/jobs/prelabel", status_code=202, response_model=JobBody, dependencies=MANAGEMENT,
             responses={200: {"model": JobBody}, **error_responses(403, 422, 503)})
async def start_prelabel(body: PrelabelRequest, jobs: Jobs, request: Request) -> JSONResponse:
    """Enqueue a pre-labeling run of a whole project with the project's current version; answers with its job id."""
    version = request.app.state.backend.served.store.current_version(body.project)
    if version is None:
        raise ModelNotReady("the model store has no current version to pre-label with")
    chunk_size = body.chunk_size or jobs.settings.prelabel_chunk_size
    run, created = await run_in_threadpool(_enqueue, jobs, body.project, version, chunk_size)
    reply = {"job": run.id, "created": created, **run.as_dict()}
    return JSONResponse(reply, status_code=202 if created else 200)


@router.post("/jobs/train", status_code=202, response_model=JobBody, dependencies=MANAGEMENT,
             responses={200: {"model": JobBody}, **error_responses(403, 422, 503)})
async def start_training(body: TrainRequest, request: Request) -> JSONResponse:
    """Enqueue a training on the project's accepted annotations; 200 with the active one's id if one is going."""
    started = await run_in_threadpool(start_training_run, request, body.project, "POST /jobs/train", body.force)
    run = await run_in_threadpool(lambda: _runs(request).get(started["job"]))
    return JSONResponse({**started, **run.as_dict()}, status_code=202 if started["created"] else 200)


def start_training_run(request: Request, project_id: int, reason: str, force: bool = False) -> dict[str, Any]:
    """Enqueue a training of the project, or find the one queued or running: {"job", "created"}."""
    from backend.jobs.queues import enqueue_training

    settings: Settings = request.app.state.jobs.settings
    version = request.app.state.backend.served.store.current_version(project_id)
    if version is None:
        raise ModelNotReady("the model store has no current version to fine-tune")
    run, created = enqueue_training(request.app.state.jobs.redis(), project_id, version,
                                    max_seconds=settings.train_max_seconds, force=force, reason=reason)
    log.info("training of project %s: %s (%s)", project_id, run.id, "enqueued" if created else "already active")
    return {"job": run.id, "created": created}


def _runs(request: Request) -> Any:
    from backend.jobs.runs import RunStore

    return RunStore(request.app.state.jobs.redis())


def _enqueue(jobs: JobsState, project: int, version: str, chunk_size: int) -> Any:
    from backend.jobs.queues import enqueue_prelabel

    return enqueue_prelabel(jobs.redis(), project, version, chunk_size)


@router.get("/jobs", response_model=JobsBody, responses=error_responses(422, 503))
async def list_jobs(jobs: Jobs, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    """The newest runs first."""
    from backend.jobs.runs import RunStore

    runs = await run_in_threadpool(lambda: RunStore(jobs.redis()).list(limit))
    return {"jobs": [r.as_dict() for r in runs]}


@router.get("/jobs/{job_id}", response_model=JobBody, responses=error_responses(404, 422, 503))
async def show_job(job_id: JobPath, jobs: Jobs) -> dict[str, Any]:
    """State, counts, percent, rows/s, ETA, errors and the run's jobs in rq's failed registry."""
    return await run_in_threadpool(_show, jobs, job_id)


def _show(jobs: JobsState, job_id: str) -> dict[str, Any]:
    from backend.jobs.queues import job_errors
    from backend.jobs.runs import RunStore

    run = RunStore(jobs.redis()).get(job_id)
    return {**run.as_dict(), "failed_jobs": job_errors(jobs.redis(), run)}


@router.delete("/jobs/{job_id}", response_model=JobBody, dependencies=MANAGEMENT,
               responses=error_responses(403, 404, 422, 503))
async def cancel_job(job_id: JobPath, jobs: Jobs) -> dict[str, Any]:
    """Cancel a run: queued chunks are dropped, a running chunk stops before its write."""
    from backend.jobs.queues import cancel_run

    run = await run_in_threadpool(cancel_run, jobs.redis(), job_id)
    return run.as_dict()


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}, **error_responses(503)})
async def metrics(jobs: Jobs) -> Response:
    """Prometheus text format: bulk-job counters from Redis and queue depths."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from backend.jobs.metrics import JobsCollector

    registry = CollectorRegistry()
    registry.register(JobsCollector(jobs.redis))
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
