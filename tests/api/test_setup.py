"""POST /setup: the real Label Studio body, config checks with messages, a cheap refresh to a promoted version."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from backend.api.served import Classifier
from backend.store import ModelVersion
from tests.api.conftest import Backend, FakeClassifier, MakeBackend, assert_no_traceback, ls_payload, sentiment_config

pytestmark = pytest.mark.api


def test_setup_returns_the_served_version(backend: Backend) -> None:
    reply = backend.client.post("/setup", json=ls_payload("setup_request.json"))
    assert reply.status_code == 200
    assert reply.json() == {"model_version": backend.version}
    assert backend.loads == [backend.version], "setup never loads weights again"


def test_setup_tolerates_unknown_keys(backend: Backend) -> None:
    body = ls_payload("setup_request.json") | {"model_version": "old", "hostname": None, "future_key": [1, 2]}
    body["extra_params"] = {"threshold": 0.7}
    assert backend.client.post("/setup", json=body).status_code == 200


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ('<View><Text name="text" value="$text"/></View>', "no <Choices> bound to a <Text>"),
        ('<View><Text name="text" value="$text"/><Choices', "not valid XML"),
        (
            sentiment_config(choices='<Choice value="Good"/><Choice value="Bad"/>'),
            "model label NEGATIVE maps to no choice of 'sentiment' (Good, Bad)",
        ),
    ],
)
def test_a_bad_config_is_a_400_naming_the_problem(backend: Backend, schema: str, message: str) -> None:
    body = ls_payload("setup_request.json") | {"schema": schema}
    reply = backend.client.post("/setup", json=body)
    assert reply.status_code == 400
    assert message in reply.json()["detail"]
    assert_no_traceback(reply.text)


@pytest.mark.parametrize("project", ["abc", "", "1.2.3", None, ["1"], {"id": 1}])
def test_a_garbage_project_is_a_422_with_a_message(backend: Backend, project: object) -> None:
    body = ls_payload("setup_request.json") | {"project": project}
    reply = backend.client.post("/setup", json=body)
    assert reply.status_code == 422
    assert "project" in reply.json()["detail"]
    assert_no_traceback(reply.text)


def test_a_missing_schema_is_a_422(backend: Backend) -> None:
    body = ls_payload("setup_request.json")
    del body["schema"]
    reply = backend.client.post("/setup", json=body)
    assert reply.status_code == 422 and "schema" in reply.json()["detail"]


def test_the_access_token_is_never_echoed(backend: Backend) -> None:
    body = ls_payload("setup_request.json") | {"access_token": "legacy-TOKEN-abc123", "project": "x"}
    reply = backend.client.post("/setup", json=body)
    assert reply.status_code == 422
    assert "legacy-TOKEN-abc123" not in reply.text


def publish_second_version(app: Backend, tiny_checkpoint: Path, tmp_path: Path) -> str:
    staged = tmp_path / "second"
    shutil.copytree(tiny_checkpoint, staged)
    return app.store.publish(staged, {"source": "promoted"}, name="second").version


def test_setup_answers_a_promoted_version_at_once_and_predict_waits_for_its_load(
    make_backend: MakeBackend, fake_classifier: FakeClassifier, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    gate = threading.Event()
    gate.set()
    loads: list[str] = []

    def loader(version: ModelVersion) -> Classifier:
        loads.append(version.version)
        assert gate.wait(10)
        return fake_classifier

    app = make_backend(loader=loader)
    first = app.version
    setup = ls_payload("setup_request.json")
    assert app.client.post("/setup", json=setup).json() == {"model_version": first}

    gate.clear()
    second = publish_second_version(app, tiny_checkpoint, tmp_path)
    assert second != first
    # /setup answers the promoted version at once, without loading it; /predict waits for its load
    assert app.client.post("/setup", json=setup).json() == {"model_version": second}
    answered: list[Any] = []
    waiting = threading.Thread(target=lambda: answered.append(
        app.client.post("/predict", json=ls_payload("predict_request_one_task.json")).json()))
    waiting.start()
    time.sleep(0.2)
    assert answered == [] and loads == [first, second]
    gate.set()
    waiting.join(10)
    assert answered[0]["model_version"] == second and answered[0]["results"][0]["model_version"] == second
