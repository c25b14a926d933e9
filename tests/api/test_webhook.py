"""POST /webhook: every real Label Studio event answered at once; actions later features use are recorded as ids."""

from __future__ import annotations

import time

import pytest

from backend.events import RedisEventLog
from tests.api.conftest import Backend, MakeBackend, ls_payload

pytestmark = pytest.mark.api

FIXTURES = [
    "webhook_start_training.json",
    "webhook_annotation_created.json",
    "webhook_annotation_updated.json",
    "webhook_annotations_deleted.json",
    "webhook_project_updated.json",
]


@pytest.mark.parametrize("name", FIXTURES)
def test_real_webhooks_are_answered_fast(backend: Backend, name: str) -> None:
    body = ls_payload(name)
    started = time.monotonic()
    reply = backend.client.post("/webhook", json=body)
    assert time.monotonic() - started < 1.0
    if body["action"] == "START_TRAINING":  # this tier has no Redis: the training cannot be queued, and says so
        assert reply.status_code == 503 and "Redis" in reply.json()["detail"]
        return
    assert reply.status_code == 200
    expected = "ignored" if body["action"] == "PROJECT_UPDATED" else "recorded"
    assert {k: reply.json()[k] for k in ("status", "action")} == {"status": expected, "action": body["action"]}


def test_recorded_events_hold_ids_only(backend: Backend) -> None:
    created = ls_payload("webhook_annotation_created.json")
    for name in FIXTURES:
        backend.client.post("/webhook", json=ls_payload(name))
    recorded = backend.recorded
    assert [e.action for e in recorded] == [
        "START_TRAINING",
        "ANNOTATION_CREATED",
        "ANNOTATION_UPDATED",
        "ANNOTATIONS_DELETED",
    ]
    event = recorded[1]
    assert event.project_id == created["project"]["id"]
    assert event.annotation_ids == (created["annotation"]["id"],)
    assert event.task_ids == (created["task"]["id"],)


@pytest.mark.parametrize("action", ["ANNOTATIONS_CREATED", "TASKS_CREATED"])
def test_bulk_actions_are_recorded(backend: Backend, action: str) -> None:
    body = {"action": action, "tasks": [{"id": 4}, {"id": 5}], "project": {"id": 9}}
    assert backend.client.post("/webhook", json=body).json() == {"status": "recorded", "action": action}
    assert backend.recorded[-1].task_ids == (4, 5)


@pytest.mark.parametrize("action", ["PROJECT_UPDATED", "TASKS_DELETED", "LABEL_LINK_CREATED", "SOMETHING_NEW"])
def test_other_actions_are_ignored(backend: Backend, action: str) -> None:
    assert backend.client.post("/webhook", json={"action": action}).json() == {"status": "ignored", "action": action}
    assert backend.recorded == []


def test_an_unreachable_redis_still_answers_200_quickly(make_backend: MakeBackend) -> None:
    app = make_backend(events=RedisEventLog("redis://127.0.0.1:1/0"))
    started = time.monotonic()
    reply = app.client.post("/webhook", json=ls_payload("webhook_annotation_created.json"))
    assert time.monotonic() - started < 1.0
    assert reply.status_code == 200
    assert reply.json()["status"] == "dropped"


def test_the_webhook_works_while_the_model_loads(make_backend: MakeBackend) -> None:
    app = make_backend(loader=lambda version: (_ for _ in ()).throw(OSError("no model")))
    assert app.client.get("/health").status_code == 503
    assert app.client.post("/webhook", json=ls_payload("webhook_annotation_created.json")).status_code == 200


@pytest.mark.parametrize("body", [{}, {"action": ""}, {"action": 5}, {"project": {"id": 1}}])
def test_a_body_without_an_action_is_a_422(backend: Backend, body: dict) -> None:
    reply = backend.client.post("/webhook", json=body)
    assert reply.status_code == 422 and "action" in reply.json()["detail"]
