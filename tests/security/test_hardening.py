"""The holes a review of the HTTP edge found, each as a regression test through the real app, and the bounds that
close them: management needs Basic auth, ids are checked before any lookup, label configs are bounded and
defused, Redis state is bounded, slow clients time out."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from backend import keys
from backend.events import RedisEventLog
from backend.jobs.runs import RunStore
from backend.labeling import spec as spec_module
from tests.api.conftest import AUTH, Backend, MakeBackend, ls_payload, sentiment_config
from tests.redisdb import RedisServer
from tests.security.conftest import Live

pytestmark = pytest.mark.security

MANAGEMENT = [
    ("POST", "/jobs/prelabel", {"project": 3}),
    ("POST", "/jobs/train", {"project": 3, "force": True}),
    ("DELETE", "/jobs/prelabel-00000000aa", None),
    ("POST", "/models/{version}/promote", None),
    ("POST", "/models/rollback", {}),
]


def call(backend: Backend, method: str, path: str, body: Any, **kwargs: Any) -> Any:
    return backend.client.request(method, path.format(version=backend.version), json=body, **kwargs)


@pytest.mark.parametrize(("method", "path", "body"), MANAGEMENT)
def test_management_routes_refuse_without_basic_auth_configured_and_change_nothing(
    make_backend: MakeBackend, redis_server: RedisServer, method: str, path: str, body: Any
) -> None:
    backend = make_backend(redis_url=redis_server.url)
    history = backend.store.history()
    reply = call(backend, method, path, body)
    assert reply.status_code == 403
    assert "BASIC_AUTH_USER" in reply.json()["detail"] and "BASIC_AUTH_PASS" in reply.json()["detail"]
    assert RunStore(redis.Redis.from_url(redis_server.url)).list() == []
    assert backend.store.history() == history


@pytest.mark.parametrize(("method", "path", "body"), MANAGEMENT)
def test_management_routes_need_the_credentials_presented_when_configured(
    make_backend: MakeBackend, redis_server: RedisServer, method: str, path: str, body: Any
) -> None:
    backend = make_backend(redis_url=redis_server.url, basic_auth_user=AUTH[0], basic_auth_pass=AUTH[1])
    reply = call(backend, method, path, body)
    assert reply.status_code == 401 and reply.json() == {"detail": "authentication required"}
    assert RunStore(redis.Redis.from_url(redis_server.url)).list() == []


def test_a_forced_training_needs_credentials_and_then_is_forced(
    make_backend: MakeBackend, redis_server: RedisServer
) -> None:
    backend = make_backend(redis_url=redis_server.url, basic_auth_user=AUTH[0], basic_auth_pass=AUTH[1])
    started = backend.client.post("/jobs/train", json={"project": 3, "force": True}, auth=AUTH)
    assert started.status_code == 202 and started.json()["force"] is True


def test_nothing_through_the_webhook_forces_a_promotion(make_backend: MakeBackend, redis_server: RedisServer) -> None:
    backend = make_backend(redis_url=redis_server.url)  # nothing configured: Label Studio's protocol stays open
    body = {**ls_payload("webhook_start_training.json"), "force": True, "params": {"force": True}}
    reply = backend.client.post("/webhook", json=body)
    assert reply.status_code == 200 and reply.json()["created"] is True
    (run,) = RunStore(redis.Redis.from_url(redis_server.url)).list()
    assert run.kind == "train" and run.info["force"] is False


def test_a_job_id_naming_another_of_our_keys_is_refused_before_redis(
    make_backend: MakeBackend, redis_server: RedisServer
) -> None:
    backend = make_backend(redis_url=redis_server.url, basic_auth_user=AUTH[0], basic_auth_pass=AUTH[1])
    run = RunStore(redis.Redis.from_url(redis_server.url)).create("prelabel", 3, backend.version)
    RunStore(redis.Redis.from_url(redis_server.url)).error(run.id, "a chunk failed")  # makes the list key
    for method in ("GET", "DELETE"):
        reply = backend.client.request(method, f"/jobs/{run.id}:errors", auth=AUTH)  # a list, not a hash
        assert reply.status_code == 422, reply.text
        assert "job_id" in reply.json()["detail"]
    unknown = backend.client.get("/jobs/prelabel-00000000ff", auth=AUTH)
    assert unknown.status_code == 404 and unknown.json()["detail"].startswith("no job 'prelabel-00000000ff'")
    assert backend.client.get(f"/jobs/{run.id}", auth=AUTH).json()["state"] == "queued"  # untouched


@pytest.mark.parametrize("version", ["..", "...%2F..%2Fetc", ".hidden", "a" * 200, "v%0Aforged"])
def test_a_version_id_that_is_no_version_is_refused_and_nothing_moves(secured: Backend, version: str) -> None:
    current = secured.store.current_version()
    reply = secured.client.post(f"/models/{version}/promote", json={"default": True}, auth=AUTH)
    assert reply.status_code in (404, 422), reply.text
    assert isinstance(reply.json()["detail"], str) and str(secured.store.root) not in reply.text
    rollback = secured.client.post("/models/rollback", json={"version": "../../x", "default": True}, auth=AUTH)
    assert rollback.status_code == 422 and "version" in rollback.json()["detail"]
    assert secured.store.current_version() == current


@pytest.mark.parametrize("project_id", [0, -1, 2**31, 2**40])
def test_webhook_project_ids_out_of_range_are_422_and_nothing_is_recorded(backend: Backend, project_id: int) -> None:
    body = ls_payload("webhook_annotation_created.json")
    body["project"]["id"] = project_id
    reply = backend.client.post("/webhook", json=body)
    assert reply.status_code == 422 and "project ids must be between 1 and 2147483647" in reply.json()["detail"]
    assert backend.recorded == []


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    '<View><Text name="text" value="$text"/><Choices name="s" toName="text"><Choice value="&lol3;"/>'
    '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>'
)
EXTERNAL = '<!DOCTYPE View SYSTEM "http://127.0.0.1:1/evil.dtd">' + sentiment_config()


@pytest.mark.parametrize("config", [BILLION_LAUGHS, EXTERNAL])
def test_a_label_config_with_a_doctype_is_a_400_naming_the_cause(backend: Backend, config: str) -> None:
    body = {**ls_payload("setup_request.json"), "schema": config}
    reply = backend.client.post("/setup", json=body)
    assert reply.status_code == 400
    assert reply.json() == {"detail": "the labeling config has a DOCTYPE: DOCTYPEs, entities and external "
                                      "references are refused"}
    predict = backend.client.post("/predict", json={**ls_payload("predict_request.json"), "label_config": config})
    assert predict.status_code == 400 and "DOCTYPE" in predict.json()["detail"]
    assert backend.classifier.calls == []


def test_a_label_config_over_the_size_limit_is_a_400_naming_the_setting(make_backend: MakeBackend) -> None:
    backend = make_backend(max_label_config_chars=2000)
    padded = sentiment_config().replace("<View>", "<View>" + "<Header value='x'/>" * 200)
    reply = backend.client.post("/setup", json={**ls_payload("setup_request.json"), "schema": padded})
    assert reply.status_code == 400
    assert reply.json()["detail"] == (f"the labeling config has {len(padded)} characters; "
                                      "the limit is MAX_LABEL_CONFIG_CHARS=2000")


def test_label_configs_are_parsed_off_the_event_loop_and_the_cache_stays_bounded(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_loop: list[bool] = []
    check = spec_module.check_xml

    def watched(xml: str) -> None:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        check(xml)

    monkeypatch.setattr(spec_module, "check_xml", watched)
    spec_module._parse_spec_cached.cache_clear()
    for i in range(spec_module.CACHE_SIZE + 20):
        config = sentiment_config(from_name=f"sentiment{i}")
        reply = backend.client.post("/setup", json={**ls_payload("setup_request.json"), "schema": config})
        assert reply.status_code == 200
    assert len(on_loop) == spec_module.CACHE_SIZE + 20 and not any(on_loop)
    assert spec_module._parse_spec_cached.cache_info().currsize == spec_module.CACHE_SIZE


def test_every_redis_key_we_create_expires_or_is_capped(
    make_backend: MakeBackend, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys, "MAX_RUNS_INDEXED", 3)
    backend = make_backend(redis_url=redis_server.url, events=RedisEventLog(redis_server.url), basic_auth_user=AUTH[0],
                           basic_auth_pass=AUTH[1], train_after_annotations=100, prelabel_on_tasks_created=True)
    backend.client.auth = AUTH
    for project in range(1, 6):
        assert backend.client.post("/jobs/prelabel", json={"project": project}).status_code == 202
    annotation = ls_payload("webhook_annotation_created.json")
    assert backend.client.post("/webhook", json=annotation).json()["training"]["since_last"] == 1
    assert backend.client.post("/webhook", json=ls_payload("webhook_start_training.json")).json()["created"]
    tasks_created = {"action": "TASKS_CREATED", "project": {"id": 1}, "tasks": [{"id": 5}]}
    assert backend.client.post("/webhook", json=tasks_created).status_code == 200  # run 1 active: a follow-up
    job = backend.client.get("/jobs").json()["jobs"][0]["id"]
    assert backend.client.delete(f"/jobs/{job}").json()["state"] == "cancelled"
    client = redis.Redis.from_url(redis_server.url)
    ours = sorted(k.decode() for k in client.scan_iter(keys.ALL))
    assert keys.annotations_since_training(1) in ours and keys.prelabel_again(1) in ours
    capped = {keys.RUNS_INDEX, keys.EVENTS, keys.STATS}
    unbounded = [k for k in ours if k not in capped and client.ttl(k) <= 0]
    assert unbounded == []
    # 7 runs were made (the follow-up's own record was dropped again): the index never held more than 3
    assert client.zcard(keys.RUNS_INDEX) == 2


def test_a_client_that_sends_its_body_too_slowly_gets_a_408(live: Callable[..., Live]) -> None:
    server = live(body_timeout_s=0.5)
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"tasks\": [")
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(payload) == {"detail": "the request body did not arrive within BODY_TIMEOUT_S=0.5 s"}
    assert time.monotonic() - started < 10
    assert server.classifier.calls == []


def test_a_flood_of_training_webhooks_for_made_up_projects_stops_at_the_queue_bound(
    make_backend: MakeBackend, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.jobs import queues

    monkeypatch.setitem(queues.MAX_QUEUED, queues.TRAIN_QUEUE, 3)
    backend = make_backend(redis_url=redis_server.url)  # Label Studio's protocol: START_TRAINING needs no auth
    replies = []
    for project in range(1, 7):
        body = ls_payload("webhook_start_training.json")
        body["project"]["id"] = project
        replies.append(backend.client.post("/webhook", json=body))
    assert [r.status_code for r in replies] == [200, 200, 200, 503, 503, 503]
    assert replies[-1].headers["retry-after"] == "60"
    assert replies[-1].json()["detail"] == ("3 jobs are already waiting on sentiment-train; try again when the "
                                            "workers have caught up")
    assert len(RunStore(redis.Redis.from_url(redis_server.url)).list()) == 3


def test_a_webhook_with_200_000_ids_is_recorded_with_a_bounded_record(backend: Backend) -> None:
    from backend.events import MAX_IDS_PER_EVENT

    body = {"action": "ANNOTATIONS_CREATED", "project": {"id": 2},
            "annotations": [{"id": i, "task": i, "result": [{}]} for i in range(1, 200_001)]}
    reply = backend.client.post("/webhook", json=body)
    assert reply.status_code == 200 and reply.json()["status"] == "recorded"
    (event,) = backend.recorded
    assert len(event.annotation_ids) == len(event.task_ids) == MAX_IDS_PER_EVENT
    assert event.ids_dropped == 2 * (200_000 - MAX_IDS_PER_EVENT) and event.accepted == 200_000
    assert len(event.to_json()) < 30_000


def test_label_configs_remembered_for_predict_are_bounded_by_total_size() -> None:
    from backend.api.routes import ProjectConfigs
    from backend.labeling.spec import LabelingSpec

    spec = LabelingSpec("sentiment", "text", "text", ("Positive", "Negative"), {}, ())
    configs = ProjectConfigs(max_chars=10_000)
    for project in range(1, 101):
        configs.remember(project, "x" * 1000, ("NEGATIVE", "POSITIVE"), spec)
    kept = [p for p in range(1, 101) if configs.get(p) is not None]
    assert kept == list(range(91, 101))
    configs.remember(95, "y" * 5000, ("NEGATIVE", "POSITIVE"), spec)  # replaces its old size, moves to the newest end
    assert configs.get(95) == "y" * 5000 and sum(configs.get(p) is not None for p in range(1, 101)) == 6
