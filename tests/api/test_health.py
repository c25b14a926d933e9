"""GET /health and GET /: 200 UP with the model version only once loaded, 503 before; always instant."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from backend.api.served import Classifier
from backend.store import ModelVersion
from tests.api.conftest import Backend, FakeClassifier, MakeBackend, assert_no_traceback, ls_payload

pytestmark = pytest.mark.api


@pytest.mark.parametrize("path", ["/health", "/"])
def test_up_once_loaded(backend: Backend, path: str) -> None:
    reply = backend.client.get(path)
    assert reply.status_code == 200
    assert reply.json() == {"status": "UP", "model_version": backend.version}


def test_loading_answers_503_at_once(make_backend: MakeBackend, fake_classifier: FakeClassifier) -> None:
    gate = threading.Event()

    def slow_loader(version: ModelVersion) -> Classifier:
        assert gate.wait(10)
        return fake_classifier

    app = make_backend(loader=slow_loader, wait=False)
    started = time.monotonic()
    reply = app.client.get("/health")
    assert time.monotonic() - started < 0.5
    assert reply.status_code == 503 and reply.json() == {"status": "LOADING"}
    setup = app.client.post("/setup", json=ls_payload("setup_request.json"))
    assert setup.status_code == 200 and setup.json() == {"model_version": app.version}  # no load needed
    answered: list[Any] = []
    waiting = threading.Thread(target=lambda: answered.append(
        app.client.post("/predict", json=ls_payload("predict_request_one_task.json"))))
    waiting.start()
    time.sleep(0.2)
    assert answered == []  # /predict waits for the load
    gate.set()
    waiting.join(10)
    assert answered[0].status_code == 200 and answered[0].json()["model_version"] == app.version
    assert app.served.wait(10)
    assert app.client.get("/health").json() == {"status": "UP", "model_version": app.version}


def test_a_failed_load_is_an_error_without_a_traceback(make_backend: MakeBackend) -> None:
    def broken_loader(version: ModelVersion) -> Classifier:
        raise OSError("config.json is not readable")

    app = make_backend(loader=broken_loader)
    reply = app.client.get("/health")
    assert reply.status_code == 503
    body = reply.json()
    assert body == {"status": "ERROR", "detail": "the model failed to load; see the server log"}
    assert_no_traceback(reply.text)
    predict = app.client.post("/predict", json=ls_payload("predict_request_one_task.json"))
    assert predict.status_code == 503 and predict.json() == {"detail": "the model failed to load; see the server log"}
    assert_no_traceback(predict.text)


def test_health_stays_instant_during_a_long_predict(backend: Backend) -> None:
    backend.classifier.gate = threading.Event()
    body = ls_payload("predict_request.json")
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(backend.client.post("/predict", json=body).status_code))
    worker.start()
    try:
        assert backend.classifier.started.wait(5), "predict never reached the classifier"
        started = time.monotonic()
        reply = backend.client.get("/health")
        assert reply.status_code == 200
        assert time.monotonic() - started < 0.5
        assert not done, "the predict was still running"
    finally:
        backend.classifier.gate.set()
        worker.join(10)
    assert done == [200]
