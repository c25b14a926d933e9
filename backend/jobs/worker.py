"""`sentiment-backend worker`: one process, the model loaded once, jobs run in-process (rq SimpleWorker).

SimpleWorker keeps the model warm and never forks a process that holds torch's thread pools (a forked
work-horse would run torch single-threaded). rq notices a dead SimpleWorker only when its job's entry in the
started registry expires, which by default is the job timeout plus a minute; ours renews that entry every
HEARTBEAT_S with a HEARTBEAT_TTL_S lifetime instead, and workers, busy or idle, run rq's maintenance every
MAINTENANCE_INTERVAL_S, so a chunk whose worker was killed (-9, OOM, a lost machine) is retried by a live worker
within about half a minute.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from typing import Any

import redis
from rq import SimpleWorker

from backend.config import Settings
from backend.errors import JobQueueUnavailable
from backend.jobs import tasks
from backend.jobs.queues import QUEUES, SERIALIZER, connect
from backend.model.cache import ModelCache, checkpoint_loader
from backend.store import ModelStore
from backend.studio import studio_for

log = logging.getLogger(__name__)

HEARTBEAT_S = 5
HEARTBEAT_TTL_S = 20
MAINTENANCE_INTERVAL_S = 15
# an idle rq worker blocks in its dequeue for worker_ttl - 15 s and runs maintenance only between dequeues:
# 30 s keeps an idle worker's maintenance (the abandoned-job check) on the 15 s beat too
WORKER_TTL_S = MAINTENANCE_INTERVAL_S + 15


class HeartbeatWorker(SimpleWorker):
    """A SimpleWorker whose running job stays registered only while the process is alive (see module doc)."""

    def get_heartbeat_ttl(self, job: Any, working_time: float = 0.0) -> int:
        return HEARTBEAT_TTL_S

    def execute_job(self, job: Any, queue: Any) -> None:
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, stop), name="job-heartbeat", daemon=True)
        beat.start()
        try:
            super().execute_job(job, queue)
        finally:
            stop.set()
            beat.join(timeout=HEARTBEAT_S)

    def _beat(self, job: Any, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                execution = self.execution
                with self.connection.pipeline() as pipe:
                    if execution is not None:
                        execution.heartbeat(job.started_job_registry, HEARTBEAT_TTL_S, pipe)
                    self.heartbeat(HEARTBEAT_TTL_S + 60, pipeline=pipe)
                    pipe.execute()
            except Exception as exc:  # Redis away for a moment: the next beat tries again
                log.warning("job heartbeat failed: %s", type(exc).__name__)


def build_context(settings: Settings) -> tasks.WorkerContext:
    """The worker's context: store, model cache (the default line's version preloaded) and a lazy Label Studio
    client."""
    store = ModelStore(settings.model_dir)
    # a training killed mid-way leaves its half-built checkpoint in staging/: clear those older than any live one
    if removed := store.clean_staging(older_than_s=settings.train_max_seconds + 3600):
        log.info("removed %d abandoned staging director(ies) from %s", removed, store.staging_root)
    models = ModelCache(store, checkpoint_loader(settings, "worker"), max_loaded=settings.max_loaded_models)
    current = store.current_version()
    if current:
        models.get(current)
    else:
        log.warning("the model store %s is empty: jobs will fail until a model is imported", store.root)
    key = settings.label_studio_api_key.get_secret_value() if settings.label_studio_api_key else None
    return tasks.WorkerContext(
        settings=settings, store=store, models=models,
        studio_factory=lambda: studio_for(settings.label_studio_url, key, settings.label_studio_timeout_s),
    )


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None) -> bool:
    """Preload the model, then work the queues until stopped (or, with burst, until they are empty).

    rq's work loop ends when Redis goes away; this one waits for Redis to answer again and starts a new loop
    with the same loaded model, so a restarted Redis never leaves the machine without a worker.
    """
    started = time.monotonic()
    tasks.install(build_context(settings))
    worked = False
    while True:
        connection = _wait_for_redis(settings.redis_url)
        worker = HeartbeatWorker(
            list(QUEUES), connection=connection, serializer=SERIALIZER, maintenance_interval=MAINTENANCE_INTERVAL_S,
            worker_ttl=WORKER_TTL_S,
            name=name or f"sentiment-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}",
        )
        log.info("worker %s ready in %.1f s on %s", worker.name, time.monotonic() - started, ", ".join(QUEUES))
        try:
            worked = bool(worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)) or worked
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("worker %s lost Redis (%s)", worker.name, type(exc).__name__)
        if burst or _stop_asked(worker):
            return worked
        log.warning("worker %s: work loop ended without a stop request; waiting for Redis", worker.name)


def _stop_asked(worker: HeartbeatWorker) -> bool:
    """True when SIGTERM/SIGINT ended the loop: rq 3 sets _stop_requested only when a job was running, and stamps
    _shutdown_requested_date on every stop request, idle or busy."""
    return bool(worker._stop_requested or getattr(worker, "_shutdown_requested_date", None))


def _wait_for_redis(redis_url: str, max_delay_s: float = 10.0) -> redis.Redis:
    """A connected client, retrying with backoff for as long as Redis does not answer."""
    delay = 0.5
    while True:
        try:
            return connect(redis_url)
        except JobQueueUnavailable as exc:
            log.warning("%s; retrying in %.0f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, max_delay_s)
