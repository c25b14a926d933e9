"""Basic auth and the webhook secret on the real app: 401 with WWW-Authenticate, 200 with the right credentials."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import AUTH, PASSWORD, USER, WEBHOOK_SECRET, Backend, MakeBackend, ls_payload

pytestmark = pytest.mark.api

ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/health", None),
    ("GET", "/", None),
    ("GET", "/versions", None),
    ("POST", "/setup", "setup_request.json"),
    ("POST", "/predict", "predict_request.json"),
    ("POST", "/webhook", "webhook_annotation_created.json"),
]
GUARDED = [r for r in ROUTES if r[1] not in ("/health", "/")]


def call(app: Backend, method: str, path: str, fixture: str | None, **kwargs: Any):
    body = ls_payload(fixture) if fixture else None
    return app.client.request(method, path, json=body, **kwargs)


@pytest.mark.parametrize(("method", "path", "fixture"), ROUTES)
def test_every_route_answers_200_with_the_right_credentials(
    secured: Backend, method: str, path: str, fixture: str | None
) -> None:
    assert call(secured, method, path, fixture, auth=AUTH).status_code == 200


@pytest.mark.parametrize(("method", "path", "fixture"), GUARDED)
def test_every_route_refuses_a_missing_header(secured: Backend, method: str, path: str, fixture: str | None) -> None:
    reply = call(secured, method, path, fixture)
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"].startswith("Basic ")
    assert reply.json()["detail"].startswith("authentication required")


@pytest.mark.parametrize(("method", "path", "fixture"), ROUTES)
@pytest.mark.parametrize("auth", [(USER, "wrong"), ("someone", PASSWORD), (USER, "")], ids=["pass", "user", "empty"])
def test_every_route_refuses_wrong_credentials(
    secured: Backend, method: str, path: str, fixture: str | None, auth: tuple[str, str]
) -> None:
    reply = call(secured, method, path, fixture, auth=auth)
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"].startswith("Basic ")


@pytest.mark.parametrize("path", ["/health", "/"])
def test_probes_without_credentials_stay_open(secured: Backend, path: str) -> None:
    reply = secured.client.get(path)
    assert reply.status_code == 200 and reply.json() == {"status": "UP", "model_version": secured.version}


def test_unknown_paths_are_guarded_too(secured: Backend) -> None:
    assert secured.client.get("/docs").status_code == 401
    assert secured.client.get("/docs", auth=AUTH).status_code == 404


def test_a_refused_request_never_reaches_the_model(secured: Backend) -> None:
    call(secured, "POST", "/predict", "predict_request.json")
    assert secured.classifier.calls == []


@pytest.mark.parametrize("name", ["webhook_annotation_created.json", "webhook_start_training.json"])
def test_the_webhook_secret_header_opens_the_webhook(secured: Backend, name: str) -> None:
    reply = secured.client.post("/webhook", json=ls_payload(name), headers={"X-Webhook-Secret": WEBHOOK_SECRET})
    if "start_training" in name:  # past auth, into the handler: it cannot queue a training without Redis (this tier)
        assert reply.status_code == 503 and "Redis" in reply.json()["detail"]
    else:
        assert reply.status_code == 200 and reply.json()["status"] == "recorded"


def test_a_wrong_webhook_secret_is_refused(secured: Backend) -> None:
    body = ls_payload("webhook_annotation_created.json")
    assert secured.client.post("/webhook", json=body, headers={"X-Webhook-Secret": "nope"}).status_code == 401
    assert secured.recorded == []


def test_the_webhook_secret_opens_nothing_else(secured: Backend) -> None:
    headers = {"X-Webhook-Secret": WEBHOOK_SECRET}
    assert secured.client.post("/predict", json=ls_payload("predict_request.json"), headers=headers).status_code == 401


def test_basic_auth_without_a_secret_guards_the_webhook_with_basic(make_backend: MakeBackend) -> None:
    app = make_backend(basic_auth_user=USER, basic_auth_pass=PASSWORD)
    body = ls_payload("webhook_annotation_created.json")
    assert app.client.post("/webhook", json=body, headers={"X-Webhook-Secret": "anything"}).status_code == 401
    assert app.client.post("/webhook", json=body, auth=AUTH).status_code == 200


def test_a_secret_alone_guards_the_webhook_alone(make_backend: MakeBackend) -> None:
    app = make_backend(webhook_secret=WEBHOOK_SECRET)
    body = ls_payload("webhook_annotation_created.json")
    assert app.client.post("/webhook", json=body).status_code == 401
    assert app.client.post("/webhook", json=body, headers={"X-Webhook-Secret": WEBHOOK_SECRET}).status_code == 200
    assert app.client.post("/predict", json=ls_payload("predict_request.json")).status_code == 200


@pytest.mark.parametrize(("method", "path", "fixture"), ROUTES)
def test_nothing_configured_is_open(backend: Backend, method: str, path: str, fixture: str | None) -> None:
    assert call(backend, method, path, fixture).status_code == 200
