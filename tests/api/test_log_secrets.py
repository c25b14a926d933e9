"""A whole authenticated session with every backend logger at DEBUG leaves no secret in the log."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.api.conftest import AUTH, PASSWORD, WEBHOOK_SECRET, Backend, ls_payload

pytestmark = pytest.mark.api

ACCESS_TOKEN = "legacy-access-token-9f8e7d6c5b4a39281706"
PROJECT_TOKEN = "project-invite-token-0a1b2c3d4e5f6a7b8c9d"
TASK_DATA_PASSWORD = "task-data-password-77ee66dd55cc"
TASK_TEXT = "a very private customer sentence 4242"


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()}")
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_no_secret_reaches_the_log(secured: Backend, captured: Capture) -> None:
    client = secured.client
    setup = ls_payload("setup_request.json") | {"access_token": ACCESS_TOKEN}
    setup["extra_params"] = {"api_key": ACCESS_TOKEN}
    predict = ls_payload("predict_request.json")
    predict["params"] = {"login": "task-login", "password": TASK_DATA_PASSWORD, "context": None}
    predict["tasks"][0]["data"]["text"] = TASK_TEXT
    predict["tasks"][1]["data"] = {"text": None, "secret_field": TASK_DATA_PASSWORD}
    hooks = []
    for name in ("webhook_start_training.json", "webhook_annotation_created.json", "webhook_project_updated.json"):
        hook = ls_payload(name)
        hook["project"]["token"] = PROJECT_TOKEN
        hook["project"]["task_data_password"] = TASK_DATA_PASSWORD
        hooks.append(hook)

    assert client.get("/health", auth=AUTH).status_code == 200
    assert client.post("/setup", json=setup, auth=AUTH).status_code == 200
    assert client.post("/predict", json=predict, auth=AUTH).status_code == 200
    assert client.get("/versions", auth=AUTH).status_code == 200
    for hook in hooks:
        expected = 503 if hook["action"] == "START_TRAINING" else 200  # no Redis in this tier to queue a training
        assert client.post("/webhook", json=hook, headers={"X-Webhook-Secret": WEBHOOK_SECRET}).status_code == expected
        assert client.post("/webhook", json=hook, auth=AUTH).status_code == expected
    # failures log too: wrong credentials, a bad body carrying secrets, a crash inside predict
    assert client.post("/predict", json=predict, auth=("label-studio", "wrong-" + PASSWORD)).status_code == 401
    assert client.post("/webhook", json=hooks[0], headers={"X-Webhook-Secret": WEBHOOK_SECRET + "x"}).status_code == 401
    assert client.post("/setup", json=setup | {"project": "x"}, auth=AUTH).status_code == 422
    assert client.post("/predict", json=predict | {"tasks": "x"}, auth=AUTH).status_code == 422
    secured.classifier.error = RuntimeError("boom")
    assert client.post("/predict", json=predict, auth=AUTH).status_code == 500

    text = "\n".join(captured.lines)
    assert "backend." in text, "the backend's loggers were captured"
    assert "boom" in text, "the crash was logged"
    for name, secret in {
        "basic auth password": PASSWORD,
        "webhook secret": WEBHOOK_SECRET,
        "setup access_token": ACCESS_TOKEN,
        "project token": PROJECT_TOKEN,
        "task_data_password": TASK_DATA_PASSWORD,
        "task text": TASK_TEXT,
    }.items():
        assert secret not in text, f"the {name} reached the log"
