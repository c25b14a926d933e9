"""The backend against a real Label Studio 1.23.2: connect, Retrieve predictions, task open, webhook, auth, secrets.

Everything runs on loopback: the backend subprocess (Basic auth + webhook secret on), Label Studio from its own
venv, the SDK with a personal access token. Fixtures: tests/e2e/conftest.py.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

import pytest
import requests
from label_studio_sdk.core.api_error import ApiError

from tests.e2e.conftest import (
    N_TASKS,
    SENTIMENT_XML,
    Backend,
    SentimentProject,
    Studio,
    task_ids,
)

pytestmark = pytest.mark.e2e

LABELS = {"Positive", "Negative"}
WEBHOOK_HEADER = "X-Webhook-Secret"
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>/\S*) HTTP/[\d.]+" (?P<status>\d{3})')


def backend_requests(backend: Backend, path: str) -> list[int]:
    """HTTP statuses of every request to `path` in the backend's access log, oldest first."""
    return [int(m["status"]) for m in ACCESS_LINE.finditer(backend.log_text()) if m["path"].split("?")[0] == path]


def setup_version(backend: Backend, studio: Studio, project_id: int) -> str:
    """The model_version the backend's /setup answers, asked exactly the way Label Studio asks."""
    body = {
        "project": f"{project_id}.{int(time.time())}",
        "schema": SENTIMENT_XML.read_text(),
        "hostname": studio.url,
        "access_token": "unused",
        "extra_params": None,
    }
    reply = requests.post(backend.url + "/setup", json=body, auth=backend.auth, timeout=10)
    assert reply.status_code == 200, reply.text
    version: str = reply.json()["model_version"]
    return version


def only_choice(prediction: object) -> str:
    """The single choice a stored prediction holds."""
    result = prediction.result  # type: ignore[attr-defined]
    assert len(result) == 1, result
    item = result[0]
    assert (item["from_name"], item["to_name"], item["type"]) == ("sentiment", "text", "choices"), item
    choices = item["value"]["choices"]
    assert len(choices) == 1, choices
    choice: str = choices[0]
    return choice


def test_connect_reports_our_version(
    label_studio: Studio, sentiment_project: SentimentProject, backend: Backend
) -> None:
    studio, project = label_studio, sentiment_project
    assert project.connection["error"] is None
    ml = studio.client.ml.get(id=project.ml_backend_id)
    assert ml.state == "CO", (ml.state, ml.error_message)
    assert ml.auth_method == "BASIC_AUTH"
    assert ml.model_version == backend.version == setup_version(backend, studio, project.id)


def test_retrieve_predictions_labels_every_task(
    label_studio: Studio, sentiment_project: SentimentProject, backend: Backend
) -> None:
    studio, project = label_studio, sentiment_project
    assert len(project.task_ids) == N_TASKS
    predictions = studio.client.predictions.list(project=project.id)
    per_task = Counter(p.task for p in predictions)
    assert set(per_task) == set(project.task_ids)
    assert set(per_task.values()) == {1}, "every task holds exactly one prediction"
    for p in predictions:
        assert p.model_version == backend.version
        assert only_choice(p) in LABELS
        assert isinstance(p.score, float) and 0.5 <= p.score <= 1.0, p.score
        assert p.result[0].get("score") in (None, p.score)
    assert len({only_choice(p) for p in predictions}) >= 1


def test_second_retrieve_adds_nothing(label_studio: Studio, sentiment_project: SentimentProject) -> None:
    studio, project = label_studio, sentiment_project
    studio.client.actions.create(
        id="retrieve_tasks_predictions", project=project.id, selected_items={"all": True, "excluded": []}
    )
    assert len(studio.client.predictions.list(project=project.id)) == N_TASKS


def test_opening_a_new_task_predicts_it_once(
    label_studio: Studio, sentiment_project: SentimentProject, backend: Backend
) -> None:
    studio, project = label_studio, sentiment_project
    before = set(task_ids(studio.client, project.id))
    new_task: list[Any] = [{"text": "a gorgeous , witty , seductive movie ."}]
    studio.client.projects.import_tasks(id=project.id, request=new_task)
    (new_id,) = set(task_ids(studio.client, project.id)) - before
    task = studio.client.tasks.get(id=str(new_id))  # GET /api/tasks/{id}: LS asks the backend for a task without any
    assert len(task.predictions or []) == 1, task.predictions
    stored = studio.client.predictions.list(task=new_id)
    assert len(stored) == 1
    assert stored[0].model_version == backend.version
    assert only_choice(stored[0]) in LABELS
    studio.client.tasks.get(id=str(new_id))
    assert len(studio.client.predictions.list(task=new_id)) == 1, "opening it again adds none"


def test_auto_created_webhook_carries_the_secret(
    label_studio: Studio, sentiment_project: SentimentProject, backend: Backend
) -> None:
    studio, project = label_studio, sentiment_project
    hooks = [h for h in studio.client.webhooks.list(project=str(project.id)) if h.url == backend.url + "/webhook"]
    assert len(hooks) == 1, [h.url for h in studio.client.webhooks.list(project=str(project.id))]
    assert hooks[0].is_active
    assert (hooks[0].headers or {}).get(WEBHOOK_HEADER) == backend.webhook_secret
    assert project.connection["webhook_secured"] is True


def test_annotation_event_reaches_the_webhook(
    label_studio: Studio, sentiment_project: SentimentProject, backend: Backend
) -> None:
    studio, project = label_studio, sentiment_project
    seen = len(backend_requests(backend, "/webhook"))
    task_id = project.task_ids[0]
    result = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Negative"]}}]
    studio.client.annotations.create(id=task_id, result=result, project=project.id)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(backend_requests(backend, "/webhook")) == seen:
        time.sleep(0.2)
    statuses = backend_requests(backend, "/webhook")[seen:]
    assert statuses, "Label Studio sent no ANNOTATION_CREATED to /webhook"
    assert 401 not in statuses and all(200 <= s < 300 for s in statuses), statuses


def test_backend_refuses_requests_without_credentials(backend: Backend) -> None:
    assert requests.get(backend.url + "/health", timeout=5).status_code == 200, "/health stays open for probes"
    assert requests.post(backend.url + "/predict", json={"tasks": []}, timeout=5).status_code == 401
    wrong = requests.post(backend.url + "/predict", json={"tasks": []}, auth=(backend.user, "wrong"), timeout=5)
    assert wrong.status_code == 401
    unsigned = requests.post(backend.url + "/webhook", json={"action": "ANNOTATION_CREATED"}, timeout=5)
    assert unsigned.status_code == 401


def test_a_config_without_choices_is_refused_at_connect(label_studio: Studio, backend: Backend) -> None:
    """Label Studio 1.23.2 shows only the status line of a failed /setup; the reason is in the backend's reply."""
    studio = label_studio
    config = '<View><Text name="text" value="$text"/></View>'
    project = studio.client.projects.create(title="e2e no choices", label_config=config)
    assert project.id is not None
    auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": backend.user, "basic_auth_pass": backend.password}
    with pytest.raises(ApiError) as refused:
        studio.client.ml.create(url=backend.url, project=project.id, title="bad-config", **auth)
    assert refused.value.status_code == 400
    message = str(refused.value.body)
    assert "400 Client Error" in message and "/setup" in message, message
    assert not [ml for ml in studio.client.ml.list(project=project.id) if ml.url == backend.url]

    setup = {"project": f"{project.id}.{int(time.time())}", "schema": config, "hostname": studio.url}
    reply = requests.post(backend.url + "/setup", json=setup, auth=backend.auth, timeout=10)
    assert reply.status_code == 400
    assert "choices" in reply.text.lower(), reply.text


def test_backend_log_holds_no_secret(
    label_studio: Studio, sentiment_project: SentimentProject, backend: Backend
) -> None:
    studio = label_studio
    text = backend.log_text()
    assert "POST /predict" in text, "the access log is in the file"
    for name, secret in (("basic-auth password", backend.password), ("webhook secret", backend.webhook_secret)):
        assert secret not in text, f"the {name} leaked into the backend log"
    assert studio.pat not in text, "the personal access token leaked into the backend log"
