"""Errors are JSON {"detail": ...}: malformed JSON 400, too big a body 413, unknown routes 404; no tracebacks."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import Backend, MakeBackend, assert_no_traceback, ls_payload

pytestmark = pytest.mark.api

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("path", ["/predict", "/setup", "/webhook"])
@pytest.mark.parametrize("raw", [b"{", b'{"tasks": [', b"not json", b'{"a": 1,}', b"\xff\xfe"])
def test_malformed_json_is_a_400(backend: Backend, path: str, raw: bytes) -> None:
    reply = backend.client.post(path, content=raw, headers=JSON)
    assert reply.status_code == 400
    assert reply.json()["detail"].startswith("malformed JSON body")
    assert_no_traceback(reply.text)


def test_an_empty_body_is_a_422(backend: Backend) -> None:
    reply = backend.client.post("/predict", content=b"", headers=JSON)
    assert reply.status_code == 422


def test_a_declared_oversize_body_is_a_413_before_reading(make_backend: MakeBackend) -> None:
    app = make_backend(max_body_bytes=4096)
    body = json.dumps(ls_payload("predict_request.json")).encode()
    reply = app.client.post("/predict", content=body, headers=JSON)
    assert reply.status_code == 413
    assert reply.json() == {"detail": "request body is larger than MAX_BODY_BYTES=4096 bytes"}
    assert app.classifier.calls == []


def test_a_streamed_oversize_body_is_a_413(make_backend: MakeBackend) -> None:
    app = make_backend(max_body_bytes=4096)
    body = json.dumps(ls_payload("predict_request.json")).encode()

    def chunks():
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    reply = app.client.post("/predict", content=chunks(), headers=JSON)  # chunked: no Content-Length
    assert reply.status_code == 413
    assert "MAX_BODY_BYTES=4096" in reply.json()["detail"]


def test_a_body_under_the_limit_streams_through(make_backend: MakeBackend) -> None:
    body = json.dumps(ls_payload("predict_request.json")).encode()
    app = make_backend(max_body_bytes=len(body))

    def chunks():
        yield body[:1000]
        yield body[1000:]

    reply = app.client.post("/predict", content=chunks(), headers=JSON)
    assert reply.status_code == 200 and len(reply.json()["results"]) == 50


def test_a_bad_content_length_is_a_400(backend: Backend) -> None:
    reply = backend.client.post("/predict", content=b"{}", headers=JSON | {"content-length": "lots"})
    assert reply.status_code == 400


def test_unknown_routes_and_methods(backend: Backend) -> None:
    assert backend.client.get("/nope").status_code == 404
    assert backend.client.get("/predict").status_code == 405
    assert backend.client.get("/docs").status_code == 404, "no interactive docs on a backend"
    assert backend.client.get("/openapi.json").status_code == 404
