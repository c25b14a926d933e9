"""The rq side of pre-labeling on a real Redis: plan and chunk jobs, counting, retries, failures, cancel."""

from __future__ import annotations

import pytest

from backend.errors import JobNotFound
from backend.jobs.queues import cancel_run, enqueue_prelabel, job_errors, queue_depths
from backend.jobs.runs import RunState, RunStore
from tests.jobs.conftest import work
from tests.jobs.fakes import FakeStudio

pytestmark = pytest.mark.redis
V = "model-v1"


def test_a_run_pre_labels_every_task_and_selects_its_version(redis_conn, context, studio: FakeStudio) -> None:
    run, created = enqueue_prelabel(redis_conn, 1, V, chunk_size=10)
    assert created
    work(redis_conn)
    done = RunStore(redis_conn).get(run.id)
    assert done.state == RunState.FINISHED
    assert (done.count("total"), done.count("done"), done.count("failed")) == (25, 25, 0)
    assert done.count("chunks_total") == 3 and done.count("chunks_done") == 3
    assert done.as_dict()["percent"] == 100.0 and done.as_dict()["eta_s"] == 0.0
    assert all(studio.count(t, V) == 1 for t in range(1, 26))
    assert studio.selected == V
    assert "wrote 25 prediction(s) of model-v1" in done.summary


def test_a_second_trigger_while_one_runs_returns_the_active_run(redis_conn, context) -> None:
    first, _ = enqueue_prelabel(redis_conn, 1, V, chunk_size=10)
    again, created = enqueue_prelabel(redis_conn, 1, V, chunk_size=10)
    assert not created and again.id == first.id
    work(redis_conn)
    third, created = enqueue_prelabel(redis_conn, 1, V, chunk_size=10)  # the first one ended: a new run
    assert created and third.id != first.id


def test_rerunning_a_finished_project_plans_nothing(redis_conn, context, studio: FakeStudio) -> None:
    enqueue_prelabel(redis_conn, 1, V, chunk_size=10)
    work(redis_conn)
    writes = studio.calls.count("import_predictions")
    run, _ = enqueue_prelabel(redis_conn, 1, V, chunk_size=10)
    work(redis_conn)
    again = RunStore(redis_conn).get(run.id)
    assert again.state == RunState.FINISHED and again.count("skipped") == 25 and again.count("total") == 0
    assert studio.calls.count("import_predictions") == writes
    assert studio.calls.count("select_model_version") == 1  # the project already shows the version


def test_label_studio_5xx_is_retried_and_recorded(redis_conn, context, studio: FakeStudio) -> None:
    studio.fail_next = {"import_predictions": 2, "task_versions": 1}
    run, _ = enqueue_prelabel(redis_conn, 1, V, chunk_size=10)
    work(redis_conn)
    done = RunStore(redis_conn).get(run.id)
    assert done.state == RunState.FINISHED and done.count("done") == 25
    assert sum("retrying" in e for e in done.errors) == 3  # the plan's failed listing and two failed writes
    assert any(e.startswith("plan: LabelStudioUnavailable") for e in done.errors)
    assert all(studio.count(t, V) == 1 for t in range(1, 26))


def test_a_chunk_that_keeps_failing_lands_in_the_failed_registry(redis_conn, context, studio: FakeStudio) -> None:
    run, _ = enqueue_prelabel(redis_conn, 1, V, chunk_size=10)
    studio.poison = {1}  # every attempt of the first chunk fails (1 + job_retries=2)
    work(redis_conn)
    done = RunStore(redis_conn).get(run.id)
    assert done.state == RunState.FINISHED_WITH_ERRORS
    assert (done.count("chunks_failed"), done.count("failed"), done.count("done")) == (1, 10, 15)
    assert any("no retries left" in e for e in done.errors)
    failed = job_errors(redis_conn, done)
    assert [f["job"] for f in failed] == [f"{run.id}-c0"] and "HTTP 502" in failed[0]["error"]
    assert queue_depths(redis_conn)["sentiment-prelabel"]["failed"] == 1
    assert "1 chunk(s) failed" in done.summary


@pytest.mark.parametrize(
    ("project", "config", "message"),
    [(99, None, "has no project 99"), (1, '<View><Text name="t" value="$t"/></View>', "no <Choices>")],
)
def test_bad_projects_fail_the_run_and_write_nothing(redis_conn, context, studio, project, config, message) -> None:
    if config:
        studio.label_config = config
    run, _ = enqueue_prelabel(redis_conn, project, V, chunk_size=10)
    work(redis_conn)
    failed = RunStore(redis_conn).get(run.id)
    assert failed.state == RunState.FAILED and message in failed.summary
    assert studio.predictions == []


def test_cancel_drops_the_queued_chunks(redis_conn, context, studio: FakeStudio) -> None:
    run, _ = enqueue_prelabel(redis_conn, 1, V, chunk_size=5)
    worker_plan_only(redis_conn)
    cancelled = cancel_run(redis_conn, run.id)
    assert cancelled.state == RunState.CANCELLED
    work(redis_conn)
    assert studio.predictions == []
    assert RunStore(redis_conn).get(run.id).state == RunState.CANCELLED


def test_an_unknown_job_id_is_job_not_found(redis_conn) -> None:
    with pytest.raises(JobNotFound, match="Redis lost it"):
        RunStore(redis_conn).get("prelabel-00000000ff")
    with pytest.raises(JobNotFound, match="job ids look like prelabel-"):
        RunStore(redis_conn).get("prelabel-nope")


def worker_plan_only(connection) -> None:  # type: ignore[no-untyped-def]
    from backend.jobs.queues import QUEUES, SERIALIZER
    from backend.jobs.worker import HeartbeatWorker

    HeartbeatWorker(list(QUEUES), connection=connection, serializer=SERIALIZER).work(burst=True, max_jobs=1)


def test_tasks_created_during_a_run_get_a_follow_up_run(redis_conn, context, studio: FakeStudio) -> None:
    context.store.current_version = lambda project=None: V  # type: ignore[method-assign]
    first, _ = enqueue_prelabel(redis_conn, 1, V, chunk_size=10)
    _, created = enqueue_prelabel(redis_conn, 1, V, chunk_size=10, again_if_busy=True)
    assert not created
    worker_plan_only(redis_conn)  # the first run has planned its chunks
    for t in range(26, 31):  # new tasks arrive while it works
        studio.texts[t] = f"late task {t}"
    work(redis_conn)
    runs = RunStore(redis_conn).list()
    assert [r.state for r in runs] == [RunState.FINISHED, RunState.FINISHED]
    assert runs[1].id == first.id and runs[0].count("total") == 5
    assert all(studio.count(t, V) == 1 for t in range(1, 31))
