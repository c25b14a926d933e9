"""The app with the production loader and a real (tiny, random) DistilBERT: SentimentClassifier end to end, each
test once with ENGINE=torch and once with ENGINE=onnx (the version's gated int8 export)."""

from __future__ import annotations

from typing import Any

import pytest
from label_studio_sdk.label_interface import LabelInterface

from backend.api.served import checkpoint_loader
from backend.config import Settings
from backend.model.classifier import SentimentClassifier
from tests.api.conftest import Backend, MakeBackend, ls_payload

pytestmark = pytest.mark.api

SERVED_AS = {"torch": "torch", "onnx": "onnx-int8"}


def real_backend(make_backend: MakeBackend, engine: str, **overrides: Any) -> Backend:
    settings = Settings(device="cpu", token_budget=512, window_stride=16, engine=engine, **overrides)
    app = make_backend(loader=checkpoint_loader(settings), device="cpu", engine=engine, **overrides)
    classifier = app.served.classifier()
    assert isinstance(classifier, SentimentClassifier)
    assert classifier.engine.name == SERVED_AS[engine]
    return app


def test_the_real_classifier_answers_the_real_retrieve(make_backend: MakeBackend, engine: str) -> None:
    app = real_backend(make_backend, engine)
    assert app.served.classifier().labels == ("NEGATIVE", "POSITIVE")

    version = app.client.post("/setup", json=ls_payload("setup_request.json")).json()["model_version"]
    assert version == app.version
    body = ls_payload("predict_request.json")
    body["tasks"][7]["data"]["text"] = "long " * 600  # more tokens than the model's 128 positions: windowed
    body["tasks"][8]["data"] = {}
    reply = app.client.post("/predict", json=body)
    assert reply.status_code == 200
    results = reply.json()["results"]
    assert len(results) == 50
    interface = LabelInterface(body["label_config"])
    for i, result in enumerate(results):
        assert result["model_version"] == version
        if i == 8:
            assert result["result"] == [] and result["score"] is None
            continue
        assert interface.validate_prediction(result, return_errors=True) == []
        assert result["result"][0]["value"]["choices"][0] in ("Positive", "Negative")
        assert 0.5 <= result["score"] <= 1.0
        assert result["result"][0]["score"] == result["score"]


def test_switching_engines_keeps_the_version_string_and_the_answers(make_backend: MakeBackend, engine: str) -> None:
    """The other engine, on the same store, answers the same retrieve under the same model_version with the same
    choices and scores within int8's error."""
    app = real_backend(make_backend, engine)
    other = real_backend(make_backend, "onnx" if engine == "torch" else "torch")
    body = ls_payload("predict_request.json")
    body["tasks"][3]["data"]["text"] = "a long review, " * 200  # windowed on both
    mine, theirs = (b.client.post("/predict", json=body).json() for b in (app, other))
    assert mine["model_version"] == theirs["model_version"] == app.version
    for a, b in zip(mine["results"], theirs["results"], strict=True):
        assert a["result"][0]["value"] == b["result"][0]["value"]
        assert abs(a["score"] - b["score"]) < 0.01


def test_more_word_pieces_than_the_limit_is_a_413_with_the_real_tokenizer(
    make_backend: MakeBackend, engine: str
) -> None:
    app = real_backend(make_backend, engine, max_tokens_per_predict=40)
    body = ls_payload("predict_request.json")
    body["tasks"] = body["tasks"][:2]
    body["tasks"][1]["data"]["text"] = "unbelievably " * 30  # 30 words, more word pieces: the real tokenizer counts
    reply = app.client.post("/predict", json=body)
    assert reply.status_code == 413
    detail = reply.json()["detail"]
    assert "word pieces; the limit is MAX_TOKENS_PER_PREDICT=40" in detail, detail
    pieces = app.served.classifier().encoder.encode([t["data"]["text"] for t in body["tasks"]])
    counted = int(detail.split(" hold ")[1].split()[0])  # the windows' pieces: overlapping ones count twice
    assert counted >= sum(map(len, pieces)) > 40
    assert app.client.post("/predict", json={**body, "tasks": body["tasks"][:1]}).status_code == 200
