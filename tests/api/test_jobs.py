"""/jobs and /metrics through the app, on a real Redis (database 15, flushed); no worker runs here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.api.conftest import AUTH, PASSWORD, USER, Backend, MakeBackend, assert_no_traceback
from tests.redisdb import flushed_test_db

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_url() -> Iterator[str]:
    for _, url in flushed_test_db():
        yield url


def managed(make_backend: MakeBackend, **overrides: Any) -> Backend:
    """The app with Basic auth configured and its client presenting it: management routes need both."""
    backend = make_backend(basic_auth_user=USER, basic_auth_pass=PASSWORD, **overrides)
    backend.client.auth = AUTH
    return backend


def test_start_watch_list_and_cancel_a_prelabel_job(make_backend: MakeBackend, redis_url: str) -> None:
    backend = managed(make_backend, redis_url=redis_url)
    started = backend.client.post("/jobs/prelabel", json={"project": 7, "chunk_size": 100})
    assert started.status_code == 202
    job = started.json()
    assert job["job"].startswith("prelabel-") and job["created"] is True
    assert (job["state"], job["project"], job["model_version"], job["percent"]) == ("queued", 7, backend.version, 0.0)
    again = backend.client.post("/jobs/prelabel", json={"project": 7})
    assert again.status_code == 200 and again.json()["job"] == job["job"] and again.json()["created"] is False
    shown = backend.client.get(f"/jobs/{job['job']}").json()
    assert shown["state"] == "queued" and shown["failed_jobs"] == [] and shown["eta_s"] is None
    listed = backend.client.get("/jobs").json()["jobs"]
    assert job["job"] in [j["id"] for j in listed]
    cancelled = backend.client.delete(f"/jobs/{job['job']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    restarted = backend.client.post("/jobs/prelabel", json={"project": 7})
    assert restarted.status_code == 202 and restarted.json()["job"] != job["job"]


@pytest.mark.parametrize(
    ("body", "status"),
    [({"project": "seven"}, 422), ({"project": 0}, 422), ({}, 422), ({"project": 7, "extra": 1}, 422),
     ({"project": 7, "chunk_size": 0}, 422)],
)
def test_bad_prelabel_requests_are_4xx_with_a_message(
    make_backend: MakeBackend, redis_url: str, body: dict[str, object], status: int
) -> None:
    reply = managed(make_backend, redis_url=redis_url).client.post("/jobs/prelabel", json=body)
    assert reply.status_code == status and reply.json()["detail"]
    assert_no_traceback(reply.text)


def test_malformed_json_is_400(make_backend: MakeBackend, redis_url: str) -> None:
    reply = make_backend(redis_url=redis_url).client.post(
        "/jobs/prelabel", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400 and "malformed JSON" in reply.json()["detail"]


def test_an_unknown_job_is_404(make_backend: MakeBackend, redis_url: str) -> None:
    backend = managed(make_backend, redis_url=redis_url)
    for reply in (backend.client.get("/jobs/prelabel-0000000000"), backend.client.delete("/jobs/prelabel-0000000000")):
        assert reply.status_code == 404 and "no job 'prelabel-0000000000'" in reply.json()["detail"]


def test_redis_down_is_503_with_a_message_and_metrics_say_so(make_backend: MakeBackend) -> None:
    backend = managed(make_backend)  # REDIS_URL points at a closed port
    reply = backend.client.post("/jobs/prelabel", json={"project": 7})
    assert reply.status_code == 503 and "is unreachable" in reply.json()["detail"]
    assert_no_traceback(reply.text)
    assert backend.client.get("/jobs").status_code == 503


def test_metrics_expose_queue_depth_and_counters(make_backend: MakeBackend, redis_url: str) -> None:
    backend = managed(make_backend, redis_url=redis_url)
    backend.client.post("/jobs/prelabel", json={"project": 7})
    text = backend.client.get("/metrics").text
    assert 'sentiment_queue_jobs{queue="sentiment-prelabel",state="queued"} 1.0' in text
    assert "sentiment_jobs_redis_up 1.0" in text
    assert "sentiment_prelabel_predictions_written_total 0.0" in text
    assert "sentiment_prelabel_chunk_seconds_count 0.0" in text


def test_jobs_and_metrics_require_basic_auth_when_it_is_set(make_backend: MakeBackend, redis_url: str) -> None:
    backend = make_backend(redis_url=redis_url, basic_auth_user=USER, basic_auth_pass=PASSWORD)
    for method, path in (("post", "/jobs/prelabel"), ("get", "/jobs"), ("get", "/metrics")):
        assert getattr(backend.client, method)(path).status_code == 401
    assert backend.client.post("/jobs/prelabel", json={"project": 7}, auth=AUTH).status_code == 202


def test_tasks_created_starts_a_prelabel_run_when_enabled(make_backend: MakeBackend, redis_url: str) -> None:
    backend = make_backend(redis_url=redis_url, prelabel_on_tasks_created=True)
    event = {"action": "TASKS_CREATED", "tasks": [{"id": 1}], "project": {"id": 7}}
    first = backend.client.post("/webhook", json=event).json()["prelabel"]
    assert first["created"] is True and first["job"].startswith("prelabel-")
    second = backend.client.post("/webhook", json=event).json()["prelabel"]
    assert second == {"job": first["job"], "created": False}  # one run at a time; it runs again when it ends
    assert redis.Redis.from_url(redis_url).get("sentiment:project:7:prelabel-again") == b"500"


def test_tasks_created_is_only_recorded_when_disabled(make_backend: MakeBackend, redis_url: str) -> None:
    backend = make_backend(redis_url=redis_url)
    reply = backend.client.post("/webhook", json={"action": "TASKS_CREATED", "project": {"id": 7}}).json()
    assert "prelabel" not in reply
    assert backend.client.get("/jobs").json()["jobs"] == []


def test_start_training_answers_with_a_job_at_once_and_a_second_trigger_gets_the_same(
    make_backend: MakeBackend, redis_url: str
) -> None:
    from tests.api.conftest import ls_payload

    backend = managed(make_backend, redis_url=redis_url)
    hook = ls_payload("webhook_start_training.json")
    first = backend.client.post("/webhook", json=hook)
    assert first.status_code == 200 and first.json()["job"].startswith("train-") and first.json()["created"]
    again = backend.client.post("/webhook", json=hook)
    assert again.json()["job"] == first.json()["job"] and again.json()["created"] is False
    shown = backend.client.get(f"/jobs/{first.json()['job']}").json()
    assert (shown["kind"], shown["state"], shown["phase"], shown["project"]) == (
        "train", "queued", "queued", hook["project"]["id"])
    via_api = backend.client.post("/jobs/train", json={"project": hook["project"]["id"]})
    assert via_api.status_code == 200 and via_api.json()["job"] == first.json()["job"]
    other = backend.client.post("/jobs/train", json={"project": 999, "force": True})
    assert other.status_code == 202 and other.json()["force"] is True
    queued = redis.Redis.from_url(redis_url).llen("rq:queue:sentiment-train")
    assert queued == 2


def test_accepted_annotations_start_one_training_at_the_threshold(make_backend: MakeBackend, redis_url: str) -> None:
    from tests.api.conftest import ls_payload

    backend = make_backend(redis_url=redis_url, train_after_annotations=3)
    hook = ls_payload("webhook_annotation_created.json")

    def annotation(annotation_id: int, **fields: object) -> dict[str, object]:
        return {**hook, "annotation": {**hook["annotation"], "id": annotation_id, **fields}}

    updated = {**annotation(1), "action": "ANNOTATION_UPDATED"}
    bodies = (annotation(1), annotation(2, was_cancelled=True), annotation(1), updated, annotation(3))
    replies = [backend.client.post("/webhook", json=body).json() for body in bodies]
    assert [r.get("training", {}).get("since_last") for r in replies] == [1, None, 1, 1, 2]
    third = backend.client.post("/webhook", json=annotation(4)).json()["training"]
    assert third["since_last"] == 3 and third["created"] and third["job"].startswith("train-")
    fourth = backend.client.post("/webhook", json=annotation(1)).json()["training"]
    assert fourth["since_last"] == 1  # counting starts again after the training was queued
    assert redis.Redis.from_url(redis_url).llen("rq:queue:sentiment-train") == 1


@pytest.mark.parametrize(("body", "status"), [
    ({"project": "x"}, 422), ({}, 422), ({"project": 1, "force": "maybe"}, 422), ({"project": 1, "epochs": 3}, 422)])
def test_bad_training_requests_are_4xx_with_a_message(
    make_backend: MakeBackend, redis_url: str, body: dict[str, object], status: int
) -> None:
    reply = managed(make_backend, redis_url=redis_url).client.post("/jobs/train", json=body)
    assert reply.status_code == status and reply.json()["detail"]
    assert_no_traceback(reply.text)


def test_start_training_without_a_project_id_is_a_422(make_backend: MakeBackend, redis_url: str) -> None:
    reply = make_backend(redis_url=redis_url).client.post("/webhook", json={"action": "START_TRAINING"})
    assert reply.status_code == 422 and "project" in reply.json()["detail"]


def test_promote_and_rollback_over_http_need_auth_and_switch_the_served_version(
    make_backend: MakeBackend, redis_url: str, tmp_path
) -> None:
    open_backend = make_backend(redis_url=redis_url)
    first = open_backend.version
    staged = tmp_path / "ckpt"
    staged.mkdir()
    (staged / "config.json").write_text("{}")
    second = open_backend.store.publish(staged, {"status": "rejected"}, name="second", make_current=False).version
    refused = open_backend.client.post(f"/models/{second}/promote")
    assert refused.status_code == 403 and "BASIC_AUTH_USER" in refused.json()["detail"]

    backend = make_backend(redis_url=redis_url, basic_auth_user=USER, basic_auth_pass=PASSWORD)
    assert backend.client.post(f"/models/{second}/promote", json={"default": True}).status_code == 401
    unnamed = backend.client.post(f"/models/{second}/promote", json={}, auth=AUTH)
    assert unnamed.status_code == 422 and "name the line" in unnamed.text and backend.store.current_version() == first

    # a project's own line: only that project moves, and Label Studio is told (no token here: said so)
    own = backend.client.post(f"/models/{second}/promote", json={"project": 5}, auth=AUTH).json()
    assert own == {"current": second, "line": "project-5", "project": 5,
                   "label_studio": "not set: LabelStudioAuthError"}
    assert backend.store.current_version(5) == second and backend.store.current_version() == first
    listing = backend.client.get("/models?project=5", auth=AUTH).json()
    assert listing["line"] == "project-5" and listing["current"] == second
    assert listing["lines"] == {"default": first, "project-5": second}
    assert {m["version"]: m["status"] for m in listing["models"]}[second] == "promoted"
    assert listing["history"][-1]["version"] == second and listing["history"][-1]["previous"] is None
    assert backend.client.get("/models", auth=AUTH).json()["current"] == first
    back = backend.client.post("/models/rollback", json={"project": 5}, auth=AUTH).json()
    assert back["current"] == first and back["line"] == "default"  # past its first promotion: the default line
    again = backend.client.post("/models/rollback", json={"project": 5}, auth=AUTH)
    assert again.status_code == 409 and "default line" in again.json()["detail"]

    # the default line: its own explicit act; /health follows once the version is loaded
    moved = backend.client.post(f"/models/{second}/promote", json={"default": True}, auth=AUTH).json()
    assert moved == {"current": second, "line": "default", "project": None, "label_studio": None}
    assert backend.served.wait(10) and backend.client.get("/health").json()["model_version"] == second
    rolled = backend.client.post("/models/rollback", json={"default": True}, auth=AUTH).json()
    assert rolled["current"] == first
    assert backend.served.wait(10) and backend.client.get("/health").json()["model_version"] == first
    unknown = backend.client.post("/models/nope/promote", json={"default": True}, auth=AUTH)
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
    bad = backend.client.post("/models/rollback", json={"version": 5, "default": True}, auth=AUTH)
    assert bad.status_code == 422


@pytest.mark.parametrize("setting", [False, True])
def test_annotations_copied_from_predictions_count_only_with_the_setting(
    make_backend: MakeBackend, redis_url: str, setting: bool
) -> None:
    from backend import keys
    from tests.api.conftest import ls_payload

    backend = make_backend(redis_url=redis_url, train_after_annotations=50, train_on_prediction_copies=setting)
    person = ls_payload("webhook_annotation_created.json")["annotation"]
    # what "Create Annotations From Predictions" sends: a bulk ANNOTATIONS_CREATED of copies nobody opened
    copies = [{**person, "id": 100 + i, "task": 10 + i, "parent_prediction": 500 + i, "lead_time": None,
               "updated_by": None} for i in range(5)]
    bulk = {"action": "ANNOTATIONS_CREATED", "annotation": copies, "task": [{"id": 10 + i} for i in range(5)],
            "project": {"id": 1}}
    reply = backend.client.post("/webhook", json=bulk).json()
    assert reply["status"] == "recorded"
    assert reply.get("training") == ({"since_last": 5, "threshold": 50} if setting else None)
    prefilled = {**ls_payload("webhook_annotation_created.json")}
    prefilled["annotation"] = {**person, "id": 7, "parent_prediction": 501, "lead_time": 2.5, "updated_by": 1}
    assert backend.client.post("/webhook", json=prefilled).json()["training"]["since_last"] == (6 if setting else 1)
    held = redis.Redis.from_url(redis_url).smembers(keys.annotations_since_training(1))
    assert held == ({b"7"} | ({str(100 + i).encode() for i in range(5)} if setting else set()))
