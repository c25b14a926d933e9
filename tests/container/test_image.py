"""The image the README promises, built with podman and run with buildah (`podman run` cannot start containers here).

Every check runs the built image's filesystem, user and environment: who the process is, what its store holds,
`serve` (the image's CMD) answering from the host and inside a network namespace with nothing but loopback, and
`sentiment-backend worker` from the image pre-labeling a real Label Studio through a real Redis on the host.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.labelstudio_server import free_port
from tests.container.conftest import MODEL_NAME, BuiltImage, Studio
from tests.container.podman import REPO, working_container
from tests.e2e.test_prelabel import STEADY_LOG, RedisServer

pytestmark = pytest.mark.container

SENTIMENT_XML = (REPO / "labeling_config" / "sentiment.xml").read_text()
CHOICES = {"Positive", "Negative"}
N_TASKS = 120


def predict_request(texts: list[str]) -> dict[str, Any]:
    """A /predict body the way Label Studio sends it (inline texts, the project's label config)."""
    tasks = [{"id": i + 1, "data": {"text": text}} for i, text in enumerate(texts)]
    return {"tasks": tasks, "label_config": SENTIMENT_XML, "project": "1.1700000000"}


def assert_predicted(body: dict[str, Any], version: str, n: int) -> None:
    """n results, each one choice of the config with a score, all of the baked version."""
    assert body["model_version"] == version
    assert len(body["results"]) == n
    for result in body["results"]:
        assert result["model_version"] == version
        assert result["result"][0]["value"]["choices"][0] in CHOICES
        assert 0.5 <= result["score"] <= 1.0


def loopback_command(command: list[str]) -> list[str]:
    """The image's CMD with its bind address swapped for 127.0.0.1 (traffic on this machine stays on loopback)."""
    assert command[:2] == ["sentiment-backend", "serve"], command
    out = list(command)
    if "--host" in out:
        out[out.index("--host") + 1] = "127.0.0.1"
    return out


def wait_healthy(url: str, log: Any, timeout: float = 120) -> dict[str, Any]:
    """/health's body once it answers 200; fails with the server log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = requests.get(url + "/health", timeout=2)
            if reply.status_code == 200:
                body: dict[str, Any] = reply.json()
                return body
        except requests.RequestException:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url}/health is not 200 after {timeout} s:\n{log()[-3000:]}")


def test_the_image_runs_as_the_non_root_user(built_image: BuiltImage) -> None:
    assert built_image.inspected["OCIv1"]["config"]["User"] == "app"
    with working_container(built_image.tag) as container:
        who = container.run(["sh", "-c", "id -u; id -un; stat -c %u /models /models/lines/default/CURRENT"])
    assert who.returncode == 0, who.stderr
    assert who.stdout.split() == ["10001", "app", "10001", "10001"]


def test_models_list_shows_the_baked_version_as_current(built_image: BuiltImage) -> None:
    assert built_image.version.startswith(MODEL_NAME + "-")
    with working_container(built_image.tag) as container:
        listed = container.run(["sentiment-backend", "models", "list", "--json"])
    assert listed.returncode == 0, listed.stderr
    assert built_image.version in listed.stdout
    with working_container(built_image.tag) as container:
        plain = container.run(["sentiment-backend", "models", "list"]).stdout.splitlines()
    assert [line.split()[:2] for line in plain] == [
        ["*", built_image.version], ["lines:", f"default={built_image.version}"]]


def test_healthcheck_and_offline_settings_survive_the_build(built_image: BuiltImage) -> None:
    docker = built_image.inspected["Docker"]["config"]
    assert docker["Healthcheck"]["Test"][0] == "CMD" and "/health" in docker["Healthcheck"]["Test"][-1]
    env = dict(item.split("=", 1) for item in docker["Env"])
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1" and env["MODEL_DIR"] == "/models"


def test_serve_answers_health_and_predict_from_the_host(built_image: BuiltImage, tmp_path: Path) -> None:
    port = free_port()
    with working_container(built_image.tag) as container:
        server = container.start([*loopback_command(built_image.command), "--port", str(port)], tmp_path / "serve.log")
        try:
            url = f"http://127.0.0.1:{port}"
            health = wait_healthy(url, server.log)
            body = requests.post(url + "/predict", json=predict_request(["a great film", "dull"]), timeout=30).json()
        finally:
            server.stop()
    assert health == {"status": "UP", "model_version": built_image.version}
    assert_predicted(body, built_image.version, 2)
    assert server.popen.returncode is not None


def test_serve_works_with_no_network_at_all(built_image: BuiltImage, tmp_path: Path) -> None:
    request = predict_request(["the best film of the year", "a waste of time", "fine"])
    with working_container(built_image.tag) as container:
        probe = subprocess.run(
            ["unshare", "--net", "--", sys.executable, "-m", "tests.container.offline_probe", container.name,
             "9090", str(tmp_path / "serve-offline.log"), json.dumps(request), json.dumps(built_image.command)],
            cwd=REPO, capture_output=True, text=True, timeout=240,
        )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    seen = json.loads(probe.stdout.splitlines()[-1])
    assert seen["interfaces"] == ["lo"]
    assert seen["outbound_errno"] != 0  # ENETUNREACH: no route out of the namespace
    assert seen["health"]["model_version"] == built_image.version
    assert_predicted(seen["predict"], built_image.version, 3)


def test_worker_from_the_image_prelabels_a_real_label_studio(
    built_image: BuiltImage, studio: Studio, redis_server: RedisServer, tmp_path: Path
) -> None:
    project_id, task_ids = _project(studio, N_TASKS)
    env = {"REDIS_URL": redis_server.url, "LABEL_STUDIO_URL": studio.server.base_url,
           "LABEL_STUDIO_API_KEY": studio.pat, "LOG_LEVEL": "INFO"}
    with working_container(built_image.tag) as container:
        worker = container.start(["sentiment-backend", "worker"], tmp_path / "worker.log", env)
        try:
            _wait_for_log(worker.log, STEADY_LOG)
            with working_container(built_image.tag) as client:
                done = client.run(["sentiment-backend", "prelabel", "--project", str(project_id), "--chunk-size",
                                   "50", "--follow"], env, timeout=300)
        finally:
            worker.stop()
    assert done.returncode == 0, done.stdout + done.stderr + worker.log()[-3000:]
    assert "chunk" in worker.log()
    predictions = list(studio.client.predictions.list(project=project_id))
    per_task = Counter(p.task for p in predictions)
    assert sorted(per_task) == task_ids and set(per_task.values()) == {1}
    for prediction in predictions:
        assert prediction.model_version == built_image.version
        assert prediction.result[0]["value"]["choices"][0] in CHOICES
        assert prediction.score is not None and 0.5 <= prediction.score <= 1.0


def _project(studio: Studio, n: int) -> tuple[int, list[int]]:
    client = studio.client
    project = client.projects.create(title="container prelabel", label_config=SENTIMENT_XML)
    assert project.id is not None
    tasks: list[Any] = [{"text": f"row {i}: the film is {'great' if i % 2 else 'dull'}"} for i in range(n)]
    client.projects.import_tasks(id=project.id, request=tasks)
    listed: Any = client.tasks.list(project=project.id, fields="task_only")  # a pager over every page
    ids = sorted(int(task.id) for task in listed if task.id is not None)
    assert len(ids) == n
    return project.id, ids


def _wait_for_log(log: Any, needle: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while needle not in log():
        if time.monotonic() > deadline:
            pytest.fail(f"{needle!r} never logged:\n{log()[-3000:]}")
        time.sleep(0.3)
