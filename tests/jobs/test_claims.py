"""A training's project claim on a real Redis with our worker in burst mode and a fake training: a cancel keeps
the claim until the job has stopped, and a job rq finds abandoned releases it through on_train_failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from rq.job import Job

from backend import keys
from backend.jobs import tasks
from backend.jobs.queues import SERIALIZER, cancel_run, enqueue_training, train_job_id, train_queue
from backend.jobs.runs import RunState, RunStore
from tests.jobs.conftest import work

pytestmark = pytest.mark.redis

Step = Callable[[str], None]


@pytest.fixture
def training(context: tasks.WorkerContext, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Step]]:
    """Replace the fine-tuning with a fake that runs the steps the test appends (with the run id), then reports
    progress, switching phase on every report so the reporter checks the cancel each time, until stopped."""
    steps: list[Step] = []

    def fake_retrain(*args: Any, report: Callable[..., None], label: str, **kwargs: Any) -> Any:
        report("loading annotations")
        for step in steps:
            step(label)
        for i in range(200):
            report("training" if i % 2 else "evaluating", step=i, total_steps=200)
        raise AssertionError("the fake training was never stopped")

    monkeypatch.setattr(tasks, "retrain", fake_retrain)
    yield steps


def claim(connection: redis.Redis, project: int = 1) -> str | None:
    return RunStore(connection).active_claim(project, "train")


def test_a_running_training_that_is_cancelled_keeps_its_claim_until_it_has_stopped(
    redis_conn: redis.Redis, training: list[Step]
) -> None:
    run, _ = enqueue_training(redis_conn, 1, "model-v1", max_seconds=60)
    seen: dict[str, Any] = {}

    def cancel_while_running(run_id: str) -> None:
        assert Job.fetch(train_job_id(run_id), connection=redis_conn, serializer=SERIALIZER).is_started
        shown = cancel_run(redis_conn, run_id)
        seen["state"], seen["summary"], seen["claim"] = shown.state, shown.summary, claim(redis_conn)
        seen["retrigger"] = enqueue_training(redis_conn, 1, "model-v1", max_seconds=60)

    training.append(cancel_while_running)
    work(redis_conn)
    assert seen["state"] == RunState.CANCELLED and seen["summary"] == "cancelled during training"
    assert seen["claim"] == run.id  # the job had not stopped yet
    again, created = seen["retrigger"]
    assert again.id == run.id and created is False  # a new trigger could not start a second training meanwhile
    job = Job.fetch(train_job_id(run.id), connection=redis_conn, serializer=SERIALIZER)
    assert job.return_value() == {"cancelled": True}
    assert claim(redis_conn) is None  # released by the job as it stopped
    assert RunStore(redis_conn).get(run.id).state == RunState.CANCELLED
    assert enqueue_training(redis_conn, 1, "model-v1", max_seconds=60)[1] is True


def test_a_queued_training_that_is_cancelled_releases_at_once(redis_conn: redis.Redis, training: list[Step]) -> None:
    run, _ = enqueue_training(redis_conn, 1, "model-v1", max_seconds=60)
    shown = cancel_run(redis_conn, run.id)
    assert shown.summary == "cancelled before the training started" and claim(redis_conn) is None
    assert train_queue(redis_conn).count == 0
    # a worker that had taken the job just before the cancel sees it at the job's start and stops there
    redis_conn.set(keys.active_run(1, "train"), run.id)  # as if the cancel had found the job started
    train_queue(redis_conn).enqueue("backend.jobs.tasks.train_project", run.id, job_id=f"{run.id}-late")
    work(redis_conn)
    late = Job.fetch(f"{run.id}-late", connection=redis_conn, serializer=SERIALIZER)
    assert late.return_value() == {"state": "cancelled"} and claim(redis_conn) is None
    newer, created = enqueue_training(redis_conn, 1, "model-v1", max_seconds=60)
    assert created and claim(redis_conn) == newer.id
    assert RunStore(redis_conn).release_project(1, run.id, "train") is False  # the old run frees no newer claim
    assert claim(redis_conn) == newer.id


def abandon(connection: redis.Redis, run_id: str, *, retries_left: int | None = None) -> None:
    """What another worker's maintenance does once this job's heartbeat has expired (the worker was killed)."""
    if retries_left is not None:
        connection.hset(Job.key_for(train_job_id(run_id)), "retries_left", retries_left)
    registry = train_queue(connection).started_job_registry
    assert train_job_id(run_id) in registry.get_job_ids()
    registry.cleanup(timestamp=4_102_444_800)  # 2100: every heartbeat has expired by then


@pytest.mark.parametrize("retries_left", [0, 1])
def test_a_training_abandoned_after_its_cancel_releases_its_claim(
    redis_conn: redis.Redis, training: list[Step], retries_left: int
) -> None:
    run, _ = enqueue_training(redis_conn, 1, "model-v1", max_seconds=60)
    seen: list[str | None] = []

    def cancelled_then_killed(run_id: str) -> None:
        cancel_run(redis_conn, run_id)
        seen.append(claim(redis_conn))
        abandon(redis_conn, run_id, retries_left=retries_left)
        seen.append(claim(redis_conn))

    training.append(cancelled_then_killed)
    work(redis_conn)
    assert seen == [run.id, None]  # kept while running, released by on_train_failure, not after 30 days
    shown = RunStore(redis_conn).get(run.id)
    assert shown.state == RunState.CANCELLED
    assert any("AbandonedJobError" in e and "already ended: cancelled" in e for e in shown.errors), shown.errors


def test_a_training_abandoned_with_no_retries_left_fails_and_releases_its_claim(
    redis_conn: redis.Redis, training: list[Step]
) -> None:
    run, _ = enqueue_training(redis_conn, 1, "model-v1", max_seconds=60)
    seen: list[Any] = []

    def killed(run_id: str) -> None:
        abandon(redis_conn, run_id, retries_left=0)
        seen.append((claim(redis_conn), RunStore(redis_conn).get(run_id).state))
        raise RuntimeError("killed")  # stands for the death: this process would not have gone on

    training.append(killed)
    work(redis_conn)
    assert seen == [(None, RunState.FAILED)]
    shown = RunStore(redis_conn).get(run.id)
    assert "AbandonedJobError" in shown.summary and "nothing was promoted" in shown.summary
    assert enqueue_training(redis_conn, 1, "model-v1", max_seconds=60)[1] is True
