"""/jobs and /metrics through the app, on a real Redis (database 15, flushed); no worker runs here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.api.conftest import AUTH, PASSWORD, USER, MakeBackend, assert_no_traceback
from tests.redisdb import flushed_test_db

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_url() -> Iterator[str]:
    for _, url in flushed_test_db():
        yield url


def test_start_watch_list_and_cancel_a_prelabel_job(make_backend: MakeBackend, redis_url: str) -> None:
    backend = make_backend(redis_url=redis_url)
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
    reply = make_backend(redis_url=redis_url).client.post("/jobs/prelabel", json=body)
    assert reply.status_code == status and reply.json()["detail"]
    assert_no_traceback(reply.text)


def test_malformed_json_is_400(make_backend: MakeBackend, redis_url: str) -> None:
    reply = make_backend(redis_url=redis_url).client.post(
        "/jobs/prelabel", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400 and "malformed JSON" in reply.json()["detail"]


def test_an_unknown_job_is_404(make_backend: MakeBackend, redis_url: str) -> None:
    backend = make_backend(redis_url=redis_url)
    for reply in (backend.client.get("/jobs/prelabel-0000000000"), backend.client.delete("/jobs/prelabel-0000000000")):
        assert reply.status_code == 404 and "no job 'prelabel-0000000000'" in reply.json()["detail"]


def test_redis_down_is_503_with_a_message_and_metrics_say_so(make_backend: MakeBackend) -> None:
    backend = make_backend()  # REDIS_URL points at a closed port
    reply = backend.client.post("/jobs/prelabel", json={"project": 7})
    assert reply.status_code == 503 and "is unreachable" in reply.json()["detail"]
    assert_no_traceback(reply.text)
    assert backend.client.get("/jobs").status_code == 503


def test_metrics_expose_queue_depth_and_counters(make_backend: MakeBackend, redis_url: str) -> None:
    backend = make_backend(redis_url=redis_url)
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
