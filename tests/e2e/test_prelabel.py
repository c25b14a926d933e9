"""Bulk pre-labeling end to end: real Label Studio 1.23.2, a real redis-server of our own, real worker processes.

Each test builds its own project through the Label Studio API and checks what Label Studio holds at the end:
every task has exactly one prediction of our model version with a valid choice, and nothing else was written.
Faults are real too: SIGKILL of a worker's process group, a redis-server stopped and started again, and a
proxy in front of Label Studio that answers 502 or holds replies back after Label Studio did the work.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import ARTIFACTS, REPO, SENTIMENT_XML, Backend, Studio, clean_environment, cli_executable
from tests.e2e.faultproxy import FaultProxy, Rule
from tests.redisdb import RedisServer

pytestmark = pytest.mark.e2e

CHOICES = {"Positive", "Negative"}
STEADY_LOG = "Listening on"


def catches_sigterm(pid: int) -> bool:
    """True once the process has a handler of its own for SIGTERM (Linux: SigCgt in /proc/<pid>/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next((line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), "0")
    return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))


@dataclass
class Workers:
    """`sentiment-backend worker` processes (each in its own session, so SIGKILL takes its whole group)."""

    env: dict[str, str]
    log_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, n: int = 1) -> None:
        for _ in range(n):
            log_path = self.log_dir / f"worker-{len(self.processes)}.log"
            with log_path.open("ab") as out:
                self.processes.append(subprocess.Popen(
                    [cli_executable(), "worker"], env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                ))
        self.wait_ready()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        for i, process in enumerate(self.processes):
            if process.poll() is not None:
                continue
            log_path = self.log_dir / f"worker-{i}.log"
            # rq logs "Listening on" before it installs its SIGTERM handler: wait for both, or a SIGTERM sent in
            # between takes the default action (found as a flaky SIGTERM test under load)
            while STEADY_LOG not in log_path.read_text(errors="replace") or not catches_sigterm(process.pid):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"worker {i} did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
                time.sleep(0.2)

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        process = self.processes[index]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        process.wait(15)

    def stop_all(self) -> None:
        for i, process in enumerate(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    self.kill(i)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("worker-*.log")))


@dataclass
class Bench:
    """What one test works with: Label Studio (maybe behind a fault proxy), Redis, workers, CLI environment."""

    studio: Studio
    redis: RedisServer
    workers: Workers
    env: dict[str, str]
    version: str
    proxy: FaultProxy

    def project(self, n_tasks: int, label_config: str | None = None, title: str = "prelabel") -> tuple[int, list[int]]:
        client = self.studio.client
        project = client.projects.create(title=title, label_config=label_config or SENTIMENT_XML.read_text())
        assert project.id is not None
        tasks: list[Any] = [{"text": f"row {i}: the film is {'great' if i % 2 else 'dull'}"} for i in range(n_tasks)]
        for start in range(0, n_tasks, 5000):
            client.projects.import_tasks(id=project.id, request=tasks[start : start + 5000])
        ids = sorted(int(t.id) for t in client.tasks.list(project=project.id, fields="task_only") if t.id is not None)
        assert len(ids) == n_tasks
        return project.id, ids

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli_executable(), *args], env=env or self.env, capture_output=True, text=True,
                              timeout=timeout)

    def prelabel(self, project: int, *extra: str, follow: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.cli("prelabel", "--project", str(project), *extra, *(["--follow"] if follow else []), **kw)

    def run_id(self, done: subprocess.CompletedProcess[str]) -> str:
        return done.stdout.split()[0]

    def run_state(self, run_id: str) -> dict[str, Any]:
        import json

        shown = self.cli("jobs", "show", run_id)
        assert shown.returncode == 0, shown.stderr
        state: dict[str, Any] = json.loads(shown.stdout)
        return state

    def wait_for(self, run_id: str, predicate: Any, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run_state(run_id)
            if predicate(state):
                return state
            time.sleep(0.5)
        pytest.fail(f"{run_id} never reached the expected state: {state}\n{self.workers.logs()[-3000:]}")

    def predictions(self, project: int) -> list[Any]:
        return list(self.studio.client.predictions.list(project=project))


@pytest.fixture
def bench(tmp_path: Path, label_studio: Studio, backend: Backend) -> Iterator[Bench]:
    """A fresh Redis and a fault proxy for each test; workers are started by the test itself."""
    server = RedisServer(tmp_path)
    server.start()
    proxy = FaultProxy(label_studio.url).start()
    env = clean_environment(
        MODEL_DIR=str(backend.model_dir), REDIS_URL=server.url, LABEL_STUDIO_URL=proxy.url,
        LABEL_STUDIO_API_KEY=label_studio.pat, LOG_LEVEL="INFO", JOB_RETRIES="3",
    )
    workers = Workers(env, tmp_path)
    bench = Bench(label_studio, server, workers, env, backend.version, proxy)
    try:
        yield bench
    finally:
        workers.stop_all()
        if bench.workers is not workers:  # a test that started workers with its own environment
            bench.workers.stop_all()
        proxy.stop()
        server.stop()
        with contextlib.suppress(OSError):
            target = ARTIFACTS / "e2e" / "workers"
            target.mkdir(parents=True, exist_ok=True)
            (target / f"{tmp_path.name}.log").write_text(workers.logs())


def assert_exactly_one_each(bench: Bench, project: int, task_ids: list[int]) -> None:
    """Every task holds exactly one prediction of our version, with a valid choice and a score; nothing else."""
    predictions = bench.predictions(project)
    per_task = Counter(p.task for p in predictions if p.model_version == bench.version)
    lost = [t for t in task_ids if per_task[t] == 0]
    doubled = {t: n for t, n in per_task.items() if n > 1}
    assert not lost, f"{len(lost)} task(s) without a prediction, e.g. {lost[:5]}"
    assert not doubled, f"{len(doubled)} task(s) with duplicates, e.g. {list(doubled.items())[:5]}"
    assert len(predictions) == len(task_ids)
    for p in predictions:
        assert p.result[0]["value"]["choices"][0] in CHOICES
        assert p.result[0]["from_name"] == "sentiment" and p.result[0]["to_name"] == "text"
        assert p.score is not None and 0.5 <= p.score <= 1.0


def test_5000_tasks_two_workers_exactly_one_prediction_each_and_scores_shown(bench: Bench) -> None:
    project, ids = bench.project(5000, title="prelabel 5000")
    bench.workers.start(2)
    done = bench.prelabel(project, "--chunk-size", "250")
    assert done.returncode == 0, done.stdout + done.stderr
    run = bench.run_state(bench.run_id(done))
    assert run["state"] == "finished" and run["done"] == 5000 and run["failed"] == 0, run
    assert run["percent"] == 100.0 and run["chunks"] == {"total": 20, "done": 20, "failed": 0}
    assert_exactly_one_each(bench, project, ids)
    assert bench.studio.client.projects.get(id=project).model_version == bench.version
    # the Data Manager's "Prediction score" column: filled for every task once the project shows our version
    page = requests.get(f"{bench.studio.url}/api/tasks", params={"project": project, "fields": "all",
                        "include": "id,predictions_score", "page_size": 5000},
                        headers=_auth(bench)).json()["tasks"]
    assert len(page) == 5000 and all(t["predictions_score"] is not None for t in page)
    # both workers took chunks
    logs = [p.read_text() for p in sorted(bench.workers.log_dir.glob("worker-*.log"))]
    assert all("chunk" in log for log in logs), "a worker took no chunk"


def test_rerunning_a_finished_run_writes_nothing(bench: Bench) -> None:
    project, ids = bench.project(300)
    bench.workers.start(1)
    assert bench.prelabel(project, "--chunk-size", "100").returncode == 0
    writes_before = _writes(bench)
    again = bench.prelabel(project)
    assert again.returncode == 0, again.stderr
    run = bench.run_state(bench.run_id(again))
    assert run["total"] == 0 and run["skipped"] == 300 and run["done"] == 0, run
    assert _writes(bench) == writes_before
    assert_exactly_one_each(bench, project, ids)


def serve_int8(bench: Bench, tmp_path: Path) -> str:
    """Point the bench at a copy of the store whose default line serves an optimized copy of the e2e version:
    its int8 engine built and passing the accuracy gate (SST-2 dev), so ENGINE=auto workers run onnx-int8."""
    shutil.copytree(bench.env["MODEL_DIR"], tmp_path / "models")
    bench.env.update(MODEL_DIR=str(tmp_path / "models"), DATA_DIR=str(REPO / "data"))  # the workers' env too
    optimized = bench.cli("models", "optimize", bench.version)
    assert optimized.returncode == 0, optimized.stderr
    assert "engine=onnx-int8" in optimized.stderr, optimized.stderr
    version = optimized.stdout.strip().splitlines()[-1]
    assert bench.cli("models", "promote", version, "--default").returncode == 0
    bench.version = version
    return version


def test_worker_killed_after_label_studio_wrote_then_restarted_loses_and_duplicates_nothing_on_int8(
    bench: Bench, tmp_path: Path
) -> None:
    version = serve_int8(bench, tmp_path)
    project, ids = bench.project(2000)
    bench.workers.start(1)
    # the third bulk write reaches Label Studio, which stores it; the worker never sees the reply: we kill it
    hang = bench.proxy.add(Rule("POST", r"/import/predictions", "hang", times=1, seconds=60))
    bench.proxy.rules.insert(0, Rule("POST", r"/import/predictions", "hang", times=2, seconds=0))
    started = bench.prelabel(project, "--chunk-size", "200", follow=False)
    run_id = bench.run_id(started)
    deadline = time.monotonic() + 120
    while hang.hits == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert hang.hits == 1, "the held-back write never happened"
    time.sleep(2)  # Label Studio has stored the chunk by now; its reply is still held
    bench.workers.kill(0)
    assert 0 < len(bench.predictions(project)) < 2000
    bench.workers.start(1)  # a fresh worker: rq's maintenance finds the abandoned chunk and retries it
    run = bench.wait_for(run_id, lambda s: s["state"] not in ("queued", "planning", "running"), timeout=300)
    assert run["state"] == "finished", run
    assert run["done"] == 2000 and run["failed"] == 0
    assert any("worker died" in e for e in run["errors"]), run["errors"]
    assert run["model_version"] == version
    assert_exactly_one_each(bench, project, ids)
    logs = bench.workers.logs()
    assert "engine=onnx-int8" in logs and "engine=torch" not in logs, logs[-3000:]


def test_redis_restarted_mid_run_resumes_by_retriggering_without_duplicates(bench: Bench) -> None:
    project, ids = bench.project(3000)
    bench.workers.start(2)
    started = bench.prelabel(project, "--chunk-size", "100", follow=False)
    bench.wait_for(bench.run_id(started), lambda s: s["done"] >= 300, timeout=180)
    bench.redis.stop()
    time.sleep(1)
    bench.redis.start()  # empty: the run, its chunks and the queue are gone
    lost = bench.cli("jobs", "show", bench.run_id(started))
    assert lost.returncode == 1 and "Redis lost it" in lost.stderr
    bench.workers.wait_ready()
    again = bench.prelabel(project, "--chunk-size", "100")
    assert again.returncode == 0, again.stdout + again.stderr + bench.workers.logs()[-3000:]
    run = bench.run_state(bench.run_id(again))
    assert run["skipped"] >= 300 and run["skipped"] + run["done"] == 3000, run
    time.sleep(3)  # a chunk that was in flight at the restart writes and repairs on its own
    assert_exactly_one_each(bench, project, ids)


def test_label_studio_5xx_and_stalls_are_retried_and_the_run_completes(bench: Bench) -> None:
    project, ids = bench.project(1000)
    bench.workers.start(1)
    bench.proxy.add(Rule("GET", r"/api/tasks\?", "fail", times=3))
    bench.proxy.add(Rule("POST", r"/import/predictions", "fail", times=2))
    env = {**bench.env, "LABEL_STUDIO_TIMEOUT_S": "3"}
    bench.workers.stop_all()
    bench.workers = Workers(env, bench.workers.log_dir)
    bench.workers.start(1)
    bench.proxy.add(Rule("GET", r"/api/tasks\?", "hang", times=1, seconds=8))  # longer than the 3 s timeout
    done = bench.prelabel(project, "--chunk-size", "200")
    assert done.returncode == 0, done.stdout + done.stderr
    run = bench.run_state(bench.run_id(done))
    assert run["state"] == "finished" and run["done"] == 1000, run
    assert any("retrying" in e for e in run["errors"]), run["errors"]
    assert sum(1 for _, _, status in bench.proxy.calls if status == 502) == 5
    time.sleep(9)  # the stalled read's reply arrives late and is dropped; nothing is written twice
    assert_exactly_one_each(bench, project, ids)


def test_cancel_stops_a_run_promptly(bench: Bench) -> None:
    project, _ = bench.project(3000)
    bench.workers.start(1)
    started = bench.prelabel(project, "--chunk-size", "100", follow=False)
    run_id = bench.run_id(started)
    bench.wait_for(run_id, lambda s: s["done"] >= 100, timeout=180)
    cancelled = bench.cli("jobs", "cancel", run_id)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    at_cancel = len(bench.predictions(project))
    time.sleep(5)
    after = len(bench.predictions(project))
    assert after - at_cancel <= 100, "more than the one running chunk was written after the cancel"
    assert after < 3000
    assert bench.run_state(run_id)["state"] == "cancelled"


@pytest.mark.parametrize("case", ["unknown project", "no Choices", "no token", "wrong token"])
def test_bad_input_fails_the_job_clearly_and_writes_nothing(bench: Bench, case: str) -> None:
    env = dict(bench.env)
    config = None
    if case == "no Choices":
        config = '<View><Text name="text" value="$text"/><TextArea name="note" toName="text"/></View>'
    if case == "no token":
        env.pop("LABEL_STUDIO_API_KEY")
    if case == "wrong token":
        env["LABEL_STUDIO_API_KEY"] = "not-a-token-0123456789"
    project, _ = bench.project(20, label_config=config)
    if case == "unknown project":
        project = 987654
    bench.workers = Workers(env, bench.workers.log_dir)
    bench.workers.start(1)
    done = bench.prelabel(project)
    assert done.returncode == 1
    expected = {
        "unknown project": "has no project 987654",
        "no Choices": "no <Choices> bound to a <Text>",
        "no token": "LABEL_STUDIO_API_KEY is not set",
        "wrong token": "check LABEL_STUDIO_API_KEY",
    }[case]
    assert expected in done.stdout + done.stderr
    assert "failed" in done.stdout
    if case != "unknown project":
        assert bench.predictions(project) == []


def _auth(bench: Bench) -> dict[str, str]:
    headers = bench.studio.client._client_wrapper.get_headers()
    return {"Authorization": headers["Authorization"]}


def _writes(bench: Bench) -> int:
    """Writes to Label Studio's tasks and predictions (the review tabs each assessment refreshes are not counted)."""
    writes = ("POST", "DELETE", "PATCH")
    return sum(1 for method, path, _ in bench.proxy.calls
               if method in writes and "token" not in path and "/api/dm/views" not in path)


def test_sigterm_stops_an_idle_worker_promptly(bench: Bench) -> None:
    bench.workers.start(1)
    process = bench.workers.processes[0]
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(15) == 0
    assert time.monotonic() - started < 10
