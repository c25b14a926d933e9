"""Retraining end to end: real Label Studio 1.23.2 and its real webhooks, our own redis-server, a real worker process,
our backend process on its own model store (the session backend's store is never touched).

The model is a tiny random DistilBERT, and the tasks are sentences whose adjectives give their sentiment away, so a
few seconds of training on them makes a measurably better model: what is tested is the machinery (triggers, the
holdout, the promotion rule, the store, serving without restart), not accuracy.
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from backend import keys
from backend.holdout import Holdout
from backend.studio import StudioClient
from devtools.labelstudio_server import free_port
from tests.e2e.conftest import (
    ARTIFACTS,
    SENTIMENT_XML,
    Backend,
    Studio,
    _stop,
    _wait_for_backend,
    clean_environment,
    cli_executable,
    connect_with_cli,
    run_cli,
)
from tests.e2e.test_prelabel import RedisServer, Workers
from tests.jobs.fakes import learnable_text
from tests.modelfactory import build_distilbert

pytestmark = pytest.mark.e2e

N_TASKS = 120
TRAIN_SETTINGS = {
    "TRAIN_AFTER_ANNOTATIONS": str(N_TASKS), "TRAIN_EPOCHS": "8", "TRAIN_LEARNING_RATE": "0.003",
    "TRAIN_MIN_ANNOTATIONS": "20", "TRAIN_HOLDOUT_FRACTION": "0.25", "TRAIN_MIN_HOLDOUT": "10",
    "TRAIN_MAX_SECONDS": "120", "TRAIN_MAX_LENGTH": "64",
    "PREFILL_TARGET_PRECISION": "0.8",  # a tiny model on a 30-row holdout rarely earns a threshold at 97 %
}


@dataclass
class Retraining:
    """Label Studio, our backend on its own store, Redis and one worker, as one test module uses them."""

    studio: Studio
    backend: Backend
    redis: RedisServer
    workers: Workers
    env: dict[str, str]

    @property
    def store_dir(self) -> Path:
        return self.backend.model_dir

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli_executable(), *args], env=env or self.env, capture_output=True, text=True,
                              timeout=timeout)

    def current(self, project: int | None = None) -> str:
        """The version a project is served (no project: the default line's), as the CLI says."""
        args = ("--project", str(project)) if project is not None else ()
        return run_cli("models", "current", *args, env=self.env).stdout.strip()

    def job(self, job_id: str) -> dict[str, Any]:
        reply = requests.get(f"{self.backend.url}/jobs/{job_id}", auth=self.backend.auth, timeout=10)
        assert reply.status_code == 200, reply.text
        found: dict[str, Any] = reply.json()
        return found

    def jobs(self, kind: str = "train") -> list[dict[str, Any]]:
        reply = requests.get(f"{self.backend.url}/jobs", auth=self.backend.auth, timeout=10)
        return [j for j in reply.json()["jobs"] if j["kind"] == kind]

    def wait_job(self, job_id: str, predicate: Any = lambda j: j["state"] not in ("queued", "running"),
                 timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if predicate(job):
                return job
            time.sleep(0.5)
        pytest.fail(f"{job_id} never got there: {job}\n{self.workers.logs()[-3000:]}")

    def project(self, n: int, title: str) -> tuple[int, list[int], dict[int, bool]]:
        """A project of n learnable tasks connected to our backend (its webhook carries the secret header)."""
        client = self.studio.client
        project = client.projects.create(title=title, label_config=SENTIMENT_XML.read_text())
        assert project.id is not None
        client.projects.import_tasks(id=project.id, request=[{"text": learnable_text(i, i % 2 == 0)} for i in range(n)])
        tasks = sorted(client.tasks.list(project=project.id, fields="all"), key=lambda t: t.id)
        truth = {int(t.id): t.data["text"].split()[1] in ("wonderful", "great", "superb", "delightful", "moving",
                                                          "brilliant", "charming", "excellent") for t in tasks}
        connect_with_cli(self.studio, self.backend, project.id)
        return project.id, sorted(truth), truth

    def annotate(self, task_id: int, positive: bool) -> int:
        created = self.studio.client.annotations.create(id=task_id, result=[_choice(positive)])
        assert created.id is not None
        return int(created.id)

    def setup_version(self, project: int) -> str:
        body = {"project": f"{project}.1700000000", "label_config": SENTIMENT_XML.read_text()}
        reply = requests.post(f"{self.backend.url}/setup", json=body, auth=self.backend.auth, timeout=10)
        assert reply.status_code == 200, reply.text
        return str(reply.json()["model_version"])

    def opened_task_versions(self, project: int, text: str) -> list[str]:
        """Import a task and open it: Label Studio asks our /predict; the model_versions of its predictions."""
        client = self.studio.client
        client.projects.import_tasks(id=project, request=[{"text": text}])
        newest = max(int(t.id) for t in client.tasks.list(project=project, fields="task_only"))
        client.tasks.get(id=str(newest))  # GET /api/tasks/{id}
        return [str(p.model_version) for p in client.predictions.list(task=newest)]

    def studio_version(self, project: int) -> str:
        """The model_version Label Studio's project settings select."""
        return str(self.studio.client.projects.get(id=project).model_version)


def _choice(positive: bool) -> dict[str, Any]:
    return {"from_name": "sentiment", "to_name": "text", "type": "choices",
            "value": {"choices": ["Positive" if positive else "Negative"]}}


@pytest.fixture(scope="module")
def retraining(
    tmp_path_factory: pytest.TempPathFactory, label_studio: Studio, backend: Backend
) -> Iterator[Retraining]:
    """Our own backend process (Basic auth, webhook secret, the training settings), Redis and one worker."""
    root = tmp_path_factory.mktemp("retraining")
    redis_server = RedisServer(root)
    redis_server.start()
    model_dir = root / "models"
    env = clean_environment(
        MODEL_DIR=str(model_dir), REDIS_URL=redis_server.url, LABEL_STUDIO_URL=label_studio.url,
        LABEL_STUDIO_API_KEY=label_studio.pat, BASIC_AUTH_USER=backend.user, BASIC_AUTH_PASS=backend.password,
        WEBHOOK_SECRET=backend.webhook_secret, LOG_LEVEL="INFO", **TRAIN_SETTINGS,
        MODEL_CHECK_INTERVAL_S="0",  # the worker and the CLI promote; the checks right after must see it at once
    )
    version = run_cli("models", "import", str(build_distilbert(root / "tiny")), env=env).stdout.strip().splitlines()[-1]
    port = free_port()
    ours = Backend(url=f"http://127.0.0.1:{port}", user=backend.user, password=backend.password,
                   webhook_secret=backend.webhook_secret, version=version, model_dir=model_dir,
                   log_path=root / "backend.log", env=env)
    with ours.log_path.open("ab") as out:
        process = subprocess.Popen([cli_executable(), "serve", "--port", str(port)], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    workers = Workers(env, root)
    try:
        _wait_for_backend(ours, process)
        workers.start(1)
        yield Retraining(label_studio, ours, redis_server, workers, env)
    finally:
        workers.stop_all()
        _stop(process)
        redis_server.stop()
        with contextlib.suppress(OSError):
            target = ARTIFACTS / "e2e" / "retraining"
            target.mkdir(parents=True, exist_ok=True)
            (target / "backend.log").write_text(ours.log_text())
            (target / "workers.log").write_text(workers.logs())


@dataclass
class Promoted:
    project: int
    parent: str
    promoted: str
    truth: dict[int, bool]
    annotations: dict[int, int]
    other: int  # project B: on the same backend, never trained


@pytest.fixture(scope="module")
def promoted(retraining: Retraining) -> Promoted:
    """Project A: annotate every task through the Label Studio API; the N-th ANNOTATION_CREATED webhook starts a
    training of A. Project B, on the same backend and worker, is only connected."""
    parent = retraining.current()
    other, _, _ = retraining.project(4, "retraining e2e: project B")
    project, task_ids, truth = retraining.project(N_TASKS, "retraining e2e")
    annotations = {t: retraining.annotate(t, truth[t]) for t in task_ids}
    deadline = time.monotonic() + 30
    while not retraining.jobs() and time.monotonic() < deadline:
        time.sleep(0.2)
    jobs = retraining.jobs()
    assert len(jobs) == 1, f"expected one training from the annotation webhooks, got {jobs}"
    job = retraining.wait_job(jobs[0]["id"])
    assert job["state"] == "finished" and job["promoted"] is True, job
    assert job["project"] == project
    return Promoted(project, parent, job["candidate"], truth, annotations, other)


def test_annotations_in_a_train_and_promote_a_only_and_b_keeps_the_default_version(
    retraining: Retraining, promoted: Promoted
) -> None:
    a, b = promoted.project, promoted.other
    assert retraining.current(a) == promoted.promoted != promoted.parent
    assert retraining.current() == promoted.parent == retraining.current(b)  # the default line never moved
    assert retraining.setup_version(a) == promoted.promoted and retraining.setup_version(b) == promoted.parent
    # a task imported now has no prediction: opening it makes Label Studio ask our backend for one
    assert retraining.opened_task_versions(a, learnable_text(999, True)) == [promoted.promoted]
    assert retraining.opened_task_versions(b, learnable_text(998, True)) == [promoted.parent]
    bulk = retraining.cli("prelabel", "--project", str(b), "--follow")
    assert bulk.returncode == 0, bulk.stderr
    assert {p.model_version for p in retraining.studio.client.predictions.list(project=b)} == {promoted.parent}
    assert retraining.studio_version(b) == promoted.parent  # the run selected the version it wrote
    listing = requests.get(f"{retraining.backend.url}/models", params={"project": a}, auth=retraining.backend.auth,
                           timeout=10).json()
    assert listing["line"] == f"project-{a}" and listing["current"] == promoted.promoted
    entry = next(m for m in listing["models"] if m["version"] == promoted.promoted)
    assert entry["parent"] == promoted.parent and entry["status"] == "promoted" and entry["project"] == a
    holdout = entry["metrics"]["holdout"]
    assert holdout["accuracy"] > entry["compared_metrics"]["holdout"]["accuracy"]
    assert entry["counts"]["annotations"] == N_TASKS and entry["counts"]["holdout"] >= 10


def test_after_a_training_the_review_tabs_and_the_threshold_are_in_label_studio(
    retraining: Retraining, promoted: Promoted
) -> None:
    a = promoted.project
    deadline = time.monotonic() + 120
    while True:  # the training enqueued an assessment of A's new version
        stored = requests.get(f"{retraining.backend.url}/projects/{a}/label-errors", auth=retraining.backend.auth,
                              timeout=10).json()
        if stored["assessed"] and stored["version"] == promoted.promoted:
            break
        assert time.monotonic() < deadline, f"never assessed: {stored}\n{retraining.workers.logs()[-3000:]}"
        time.sleep(1)
    threshold = stored["prefill"]["threshold"]
    assert stored["prefill"]["rows"] >= 10 and stored["rows_source"].startswith("accepted annotations never trained")
    studio = StudioClient(retraining.studio.client)
    ours = {v["data"]["sentiment_backend"]["tab"]: v for v in studio.views(a) if "sentiment_backend" in v["data"]}
    assert set(ours) == {"Uncertain", "Likely label errors", "Audit sample"}, ours
    uncertain = ours["Uncertain"]["data"]
    items = uncertain["filters"]["items"]
    assert items[0]["filter"] == "filter:tasks:total_annotations"
    assert uncertain["ordering"] == ["tasks:predictions_score"]
    if threshold is not None:
        assert uncertain["title"] == "Uncertain" and items[1]["value"] == threshold
    errors = ours["Likely label errors"]["data"]["filters"]["items"][0]
    assert errors["filter"] == "filter:tasks:annotations_ids"
    assert errors["value"] == (",".join(str(r["annotation_id"]) for r in stored["rows"]) or "0")
    # what Label Studio lists in the Uncertain tab: exactly the unlabeled tasks scoring under t, lowest first
    assert _uncertain_ids(studio, a, ours["Uncertain"]["id"]) == _expected_uncertain(studio, a, threshold)
    # B (default line, no annotations) has no threshold: its tab lists every unlabeled task, lowest score first
    b_tabs = {v["data"]["sentiment_backend"]["tab"]: v for v in studio.views(promoted.other)
              if "sentiment_backend" in v["data"]}
    assert b_tabs["Uncertain"]["data"]["title"] == "Uncertain (no threshold yet)"
    listed_b = _uncertain_ids(studio, promoted.other, b_tabs["Uncertain"]["id"])
    assert len(listed_b) >= 5 and listed_b == _expected_uncertain(studio, promoted.other, None)


def _uncertain_ids(studio: StudioClient, project: int, view: int) -> list[int]:
    listed = studio._get("api/tasks", {"project": project, "view": view, "fields": "all"}, "listing a tab")
    return [int(t["id"]) for t in listed["tasks"]]


def _expected_uncertain(studio: StudioClient, project: int, threshold: float | None) -> list[int]:
    every = studio._get("api/tasks", {"project": project, "fields": "all", "page_size": 1000}, "listing tasks")
    rows = [(t["predictions_score"], int(t["id"])) for t in every["tasks"] if t["total_annotations"] == 0
            and (threshold is None or (t["predictions_score"] is not None and t["predictions_score"] < threshold))]
    return [task for _, task in sorted(rows, key=lambda r: (r[0] is None, r[0] or 0.0, r[1]))]


def test_a_candidate_trained_on_shuffled_labels_is_rejected_and_the_current_version_stays(
    retraining: Retraining, promoted: Promoted
) -> None:
    split = Holdout(retraining.store_dir, promoted.project).load()
    rng = random.Random(1)
    for task_id in sorted(split.train):  # the holdout keeps its true labels: it is what versions are judged on
        retraining.studio.client.annotations.update(id=promoted.annotations[task_id],
                                                    result=[_choice(rng.random() < 0.5)])
    ml = retraining.studio.client.ml.list(project=promoted.project)
    retraining.studio.client.ml.train(id=int(ml[0].id))  # the "Start training" button: START_TRAINING webhook
    job = retraining.wait_job(retraining.jobs()[0]["id"])
    assert job["state"] == "finished" and job["promoted"] is False, job
    assert "did not promote" in job["summary"]
    assert retraining.current(promoted.project) == promoted.promoted
    assert retraining.setup_version(promoted.project) == promoted.promoted


def test_rolling_a_back_and_moving_the_default_line_each_move_only_their_own_projects(
    retraining: Retraining, promoted: Promoted
) -> None:
    a, b = promoted.project, promoted.other
    rolled = run_cli("models", "rollback", "--project", str(a), env=retraining.env).stdout.strip()
    assert rolled.startswith(promoted.parent)  # past A's first promotion: A is back on the default line
    assert "pending" in rolled  # Label Studio selects only a version A has predictions of: the run below
    assert retraining.setup_version(a) == promoted.parent
    assert retraining.current() == promoted.parent == retraining.setup_version(b)  # B untouched
    done = retraining.cli("prelabel", "--project", str(a), "--follow")
    assert done.returncode == 0, done.stderr
    versions = {p.model_version for p in retraining.studio.client.predictions.list(project=a)}
    assert promoted.parent in versions  # the worker, never restarted, pre-labeled with the rolled-back version
    assert retraining.studio_version(a) == promoted.parent
    back = requests.post(f"{retraining.backend.url}/models/{promoted.promoted}/promote", json={"project": a},
                         auth=retraining.backend.auth, timeout=10)
    assert back.status_code == 200 and back.json()["label_studio"] == "set", back.text  # A has its predictions
    assert retraining.current(a) == promoted.promoted == retraining.studio_version(a)

    # the default line: an explicit act that moves B (and every project without a line), not A
    listing = json.loads(run_cli("models", "list", "--json", env=retraining.env).stdout)
    rejected = next(m["version"] for m in listing["models"] if m["status"] == "rejected")
    moved = requests.post(f"{retraining.backend.url}/models/{rejected}/promote", json={"default": True},
                          auth=retraining.backend.auth, timeout=10)
    assert moved.status_code == 200 and moved.json()["line"] == "default", moved.text
    try:
        assert retraining.setup_version(b) == rejected and retraining.current(b) == rejected
        assert retraining.opened_task_versions(b, learnable_text(997, False)) == [rejected]
        assert retraining.setup_version(a) == promoted.promoted == retraining.current(a)
    finally:
        run_cli("models", "promote", promoted.parent, "--default", env=retraining.env)
    assert retraining.current() == promoted.parent


def test_kill_9_of_the_worker_during_training_leaves_the_store_serving(
    retraining: Retraining, promoted: Promoted
) -> None:
    before = retraining.current(promoted.project)
    slow = {**retraining.env, "TRAIN_EPOCHS": "50", "TRAIN_BATCH_SIZE": "1", "TRAIN_MAX_SECONDS": "300"}
    extra = Workers(slow, retraining.workers.log_dir / "slow")
    extra.log_dir.mkdir(exist_ok=True)
    retraining.workers.stop_all()  # only the slow worker may take the job
    try:
        extra.start(1)
        done = retraining.cli("train", "--project", str(promoted.project))
        job_id = done.stdout.split()[0]
        retraining.wait_job(job_id, lambda j: j.get("phase") == "training" and (j.get("step") or 0) > 5)
        extra.kill(0)
        assert retraining.current(promoted.project) == before
        assert retraining.setup_version(promoted.project) == before
        listed = json.loads(run_cli("models", "list", "--json", "--project", str(promoted.project),
                                    env=retraining.env).stdout)
        assert listed["current"] == before and all(m["status"] != "candidate" for m in listed["models"])
        predict = {"tasks": [{"id": 1, "data": {"text": "fine"}}], "label_config": SENTIMENT_XML.read_text(),
                   "project": f"{promoted.project}.1700000000"}
        reply = requests.post(f"{retraining.backend.url}/predict", json=predict, auth=retraining.backend.auth,
                              timeout=30)
        assert reply.status_code == 200 and reply.json()["results"][0]["model_version"] == before
        run_cli("jobs", "cancel", job_id, env=retraining.env)  # no retry of the long training in this test
        claim = keys.active_run(promoted.project, "train")
        assert _redis(retraining).get(claim) == job_id.encode()  # the killed job never said it stopped
    finally:
        extra.stop_all()
        retraining.workers.processes.clear()
        retraining.workers.start(1)
    # the live worker's abandoned-job handling releases the claim (well before the run record's 30-day TTL)
    deadline = time.monotonic() + 120
    while _redis(retraining).get(claim) is not None:
        assert time.monotonic() < deadline, f"the claim of {job_id} was never released:\n{retraining.workers.logs()}"
        time.sleep(1)
    again = retraining.cli("train", "--project", str(promoted.project))
    assert again.stdout.split()[0] != job_id and "queued:" in again.stdout, again.stdout
    retraining.wait_job(again.stdout.split()[0])


def _redis(retraining: Retraining) -> redis.Redis:
    return redis.Redis.from_url(retraining.redis.url, socket_timeout=5)


@pytest.mark.parametrize("case", ["no annotations", "unknown project", "wrong token"])
def test_bad_training_input_fails_the_job_clearly_and_promotes_nothing(
    retraining: Retraining, promoted: Promoted, case: str
) -> None:
    before = retraining.current(promoted.project), retraining.current()
    project = {"no annotations": retraining.project(5, "empty")[0], "unknown project": 987654}.get(
        case, promoted.project)
    env = retraining.env
    if case == "wrong token":
        env = {**env, "LABEL_STUDIO_API_KEY": "not-a-token"}
        retraining.workers.stop_all()
    try:
        done = retraining.cli("train", "--project", str(project))
        job_id = done.stdout.split()[0]
        if case == "wrong token":
            burst = subprocess.run([cli_executable(), "worker", "--burst"], env=env, capture_output=True, text=True,
                                   timeout=300)
            assert burst.returncode == 0, burst.stderr[-2000:]
        job = retraining.wait_job(job_id)
    finally:
        if case == "wrong token":
            retraining.workers.processes.clear()
            retraining.workers.start(1)
    expected = {"no annotations": "has 0 accepted annotation", "unknown project": "no project 987654",
                "wrong token": "LabelStudioAuthError"}[case]
    assert job["state"] == "failed" and expected in job["summary"] and "nothing was promoted" in job["summary"], job
    assert (retraining.current(promoted.project), retraining.current()) == before
    assert "not-a-token" not in json.dumps(job)

