"""The training job on a real Redis, run by our worker in burst mode: a tiny real model, a fake Label Studio."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from backend import quality, report
from backend.config import Settings
from backend.jobs import queues, tasks
from backend.jobs.queues import cancel_run, enqueue_training, job_errors
from backend.jobs.runs import RunState, RunStore
from backend.model.cache import ModelCache
from backend.model.classifier import SentimentClassifier
from backend.store import ModelStore
from tests.jobs.conftest import work
from tests.jobs.fakes import FakeStudio, exported_task, learnable_text
from tests.modelfactory import build_distilbert

pytestmark = pytest.mark.redis

SETTINGS = dict(train_epochs=6, train_learning_rate=3e-3, train_min_annotations=20, train_holdout_fraction=0.25,
                train_min_holdout=20, train_max_seconds=120, build_engine=False)  # engine builds: the unit tier


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    store = ModelStore(tmp_path / "models")
    store.publish(build_distilbert(tmp_path / "random"), {"source": "random tiny"}, name="random")
    return store


@pytest.fixture
def trainer(store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStudio]:
    """The worker context with the real loader over the store and a fake Label Studio holding 160 annotations."""
    monkeypatch.setattr(queues, "RETRY_INTERVALS_S", [0])
    studio = FakeStudio(0, exported=[exported_task(i + 1, learnable_text(i, i % 2 == 0),
                                                   "Positive" if i % 2 == 0 else "Negative") for i in range(160)])
    models = ModelCache(store, lambda v: SentimentClassifier.from_path(v.path))
    tasks.install(tasks.WorkerContext(settings=Settings(**SETTINGS, model_dir=store.root), store=store,
                                      models=models, studio_factory=lambda: studio))  # type: ignore[arg-type,return-value]
    yield studio
    tasks.install(None)


def train(connection: redis.Redis, store: ModelStore, project: int = 1, **kw: object) -> str:
    run, created = enqueue_training(connection, project, str(store.current_version()), max_seconds=120, **kw)  # type: ignore[arg-type]
    assert created
    work(connection)
    return run.id


def test_a_training_job_promotes_a_better_model_and_reports_it(redis_conn, store: ModelStore, trainer) -> None:
    parent = store.current_version()
    run = RunStore(redis_conn).get(train(redis_conn, store))
    shown = run.as_dict()
    assert run.state == RunState.FINISHED, (run.summary, run.errors)
    assert shown["promoted"] is True and shown["phase"] == "done" and shown["percent"] == 100.0
    assert store.current_version(1) == shown["candidate"] != parent
    assert store.current_version() == parent and store.current_version(2) == parent  # only project 1's line moved
    assert shown["counts"]["annotations"] == 160 and run.info["metrics"]["accuracy"] == 1.0
    assert shown["label_studio"] == "set" and shown["gc_bytes_freed"] == 0  # Label Studio follows; nothing to collect
    assessed = quality.load(store.root, 1)  # the assessment the training enqueued ran on the new version
    assert assessed is not None and assessed["version"] == shown["candidate"]
    assert assessed["prefill"]["rows"] == shown["counts"]["holdout"]  # scored only on rows it never trained on
    assert assessed["label_errors"]["parent"] == parent
    assert report.path(store.root, 1, shown["candidate"]).is_file()  # and rendered its evaluation report
    assert {v["sentiment_backend"]["tab"] for v in trainer.saved_views.values()} == {  # and refreshed the tabs
        "Uncertain", "Likely label errors", "Audit sample"}
    assert shown["summary"].startswith(f"promoted {shown['candidate']}")
    assert 0 < shown["step"] <= shown["total_steps"] and shown["epoch"] > 0 and shown["loss"] is not None


def test_two_triggers_give_one_training_and_the_next_one_starts_after_it(redis_conn, store, trainer) -> None:
    version = str(store.current_version())
    first, created = enqueue_training(redis_conn, 1, version, max_seconds=120)
    again, created_again = enqueue_training(redis_conn, 1, version, max_seconds=120)
    assert created and not created_again and again.id == first.id
    work(redis_conn)
    assert len(store.list()) == 2  # one candidate
    assert enqueue_training(redis_conn, 1, version, max_seconds=120)[1]  # the first one ended


@pytest.mark.parametrize(("case", "message"), [
    ("no annotations", "has 0 accepted annotation"),
    ("unknown project", "no project 2"),
    ("label studio down", "LabelStudioUnavailable"),
])
def test_a_training_that_cannot_run_fails_clearly_and_promotes_nothing(
    redis_conn, store: ModelStore, trainer: FakeStudio, case: str, message: str
) -> None:
    before = store.current_version()
    if case == "no annotations":
        trainer.exported = []
    if case == "label studio down":
        trainer.fail_next = {"project": 10}
    run = RunStore(redis_conn).get(train(redis_conn, store, project=2 if case == "unknown project" else 1))
    assert run.state == RunState.FAILED and message in run.summary and "nothing was promoted" in run.summary
    assert store.current_version() == before and len(store.list()) == 1
    if case == "label studio down":  # retried once, then rq's failed registry holds it
        assert [e["job"] for e in job_errors(redis_conn, run)] == [f"{run.id}-train"]


def test_a_cancelled_training_stops_and_promotes_nothing(redis_conn, store: ModelStore, trainer) -> None:
    run, _ = enqueue_training(redis_conn, 1, str(store.current_version()), max_seconds=120)
    cancel_run(redis_conn, run.id)
    work(redis_conn)
    assert RunStore(redis_conn).get(run.id).state == RunState.CANCELLED
    assert len(store.list()) == 1


def test_a_promotion_can_pre_label_the_unlabeled_tasks_with_the_new_version(
    redis_conn, store: ModelStore, trainer
) -> None:
    tasks.context().settings.prelabel_after_promotion = True
    run = RunStore(redis_conn).get(train(redis_conn, store))
    follow_up = RunStore(redis_conn).get(run.info["prelabel_job"])
    assert follow_up.kind == "prelabel" and follow_up.model_version == run.info["candidate"] == store.current_version(1)
    assert follow_up.info["unlabeled_only"] is True and follow_up.state == RunState.FINISHED


def test_jobs_list_shows_training_and_prelabel_runs_side_by_side(redis_conn, store: ModelStore) -> None:
    from click.testing import CliRunner

    from backend.cli import main
    from backend.jobs.queues import enqueue_prelabel

    training, _ = enqueue_training(redis_conn, 3, "v1", max_seconds=60)
    prelabel, _ = enqueue_prelabel(redis_conn, 3, "v1", chunk_size=10)
    url = redis_conn.connection_pool.connection_kwargs
    env = {"REDIS_URL": f"redis://{url['host']}:{url['port']}/{url['db']}", "MODEL_DIR": str(store.root)}
    listed = CliRunner().invoke(main, ["jobs", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    lines = {line.split()[0]: line for line in listed.output.splitlines()}
    assert "phase=queued candidate=- promoted=None" in lines[training.id]
    assert "done=0 failed=0" in lines[prelabel.id]


def test_follow_shows_a_training_until_it_ends(redis_conn, capsys: pytest.CaptureFixture[str]) -> None:
    from backend.cli import _follow

    run, _ = enqueue_training(redis_conn, 3, "v1", max_seconds=60)
    runs = RunStore(redis_conn)
    runs.set_info(run.id, phase="training", progress=0.5, epoch=1.5, loss=0.3)
    runs.set_state(run.id, RunState.FINISHED, summary="promoted v2 (compared with v1): better")
    assert _follow(redis_conn, run.id, poll_s=0.01) == 0
    assert f"{run.id} finished: promoted v2" in capsys.readouterr().out
    failed, _ = enqueue_training(redis_conn, 4, "v1", max_seconds=60)
    runs.set_state(failed.id, RunState.FAILED, summary="failed: no annotations; nothing was promoted")
    assert _follow(redis_conn, failed.id, poll_s=0.01) == 1


def test_counters_a_late_worker_adds_to_a_run_redis_lost_are_not_a_run(redis_conn) -> None:
    from backend.errors import JobNotFound

    runs = RunStore(redis_conn)
    runs.add("prelabel-00000000aa", done=100)  # a chunk finishing after Redis restarted empty
    runs.mark_started("prelabel-00000000aa")
    assert not runs.exists("prelabel-00000000aa")
    with pytest.raises(JobNotFound, match="Redis lost it"):
        runs.get("prelabel-00000000aa")
    assert 0 < redis_conn.ttl("sentiment:run:prelabel-00000000aa") <= 30 * 24 * 3600
