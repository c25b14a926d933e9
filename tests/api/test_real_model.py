"""The app with the production loader and a real (tiny, random) DistilBERT: SentimentClassifier end to end."""

from __future__ import annotations

import pytest
from label_studio_sdk.label_interface import LabelInterface

from backend.api.served import checkpoint_loader
from backend.config import Settings
from backend.model.classifier import SentimentClassifier
from tests.api.conftest import MakeBackend, ls_payload

pytestmark = pytest.mark.api


def test_the_real_classifier_answers_the_real_retrieve(make_backend: MakeBackend) -> None:
    settings = Settings(device="cpu", token_budget=512, window_stride=16)
    app = make_backend(loader=checkpoint_loader(settings), device="cpu")
    assert isinstance(app.served.classifier(), SentimentClassifier)
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
