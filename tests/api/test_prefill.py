"""PREFILL=confident: under the project's threshold a row keeps its score and gets no choice; stored label errors."""

from __future__ import annotations

from typing import Any

import pytest

from backend import quality
from tests.api.conftest import FakeClassifier, MakeBackend, ls_payload

pytestmark = pytest.mark.api

TEXTS = [f"row number {i} of the prefill test" for i in range(40)]
THRESHOLD = 0.75


def _record(version: str) -> dict[str, Any]:
    return {"project": 1, "version": version, "computed_at": "2026-12-01T00:00:00+00:00", "rows_source": "test",
            "prefill": {"threshold": THRESHOLD, "coverage": 0.5, "rows": 200, "reason": "test"},
            "label_errors": {"max_p": 0.1, "scored": 200, "found": 1, "parent": None, "rows": [
                {"task_id": 9, "annotation_id": 19, "label": "POSITIVE", "p_label": 0.04, "predicted": "NEGATIVE",
                 "p_predicted": 0.96, "version": version, "side": "holdout"}]}}


def _predict(app: Any) -> dict[str, Any]:
    body = ls_payload("predict_request_one_task.json")
    body["tasks"] = [{"id": i + 1, "data": {"text": t}} for i, t in enumerate(TEXTS)]
    reply = app.client.post("/predict", json=body)
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def test_confident_prefills_only_rows_at_or_above_the_threshold(make_backend: MakeBackend) -> None:
    app = make_backend(prefill="confident", model_check_interval_s=0)  # quality.save below stands for the worker
    everything = _predict(app)["results"]
    assert all(r["result"] for r in everything)  # no threshold stored yet: every row is pre-filled, as `all`
    quality.save(app.store.root, 1, _record(app.version))
    results = _predict(app)["results"]
    expected = [FakeClassifier.expected(t).score for t in TEXTS]
    below = [i for i, s in enumerate(expected) if s < THRESHOLD]
    assert below and len(below) < len(TEXTS)
    for i, (result, score) in enumerate(zip(results, expected, strict=True)):
        assert result["score"] == pytest.approx(score, abs=1e-6) and result["model_version"] == app.version
        assert (result["result"] == []) == (i in below)  # the score is kept: sorting still sees the row
    quality.save(app.store.root, 1, _record("another-20260101-000000"))  # computed for another version: ignored
    assert all(r["result"] for r in _predict(app)["results"])


def test_all_prefills_every_row_whatever_the_threshold(make_backend: MakeBackend) -> None:
    app = make_backend()
    quality.save(app.store.root, 1, _record(app.version))
    assert all(r["result"] for r in _predict(app)["results"])


def test_label_errors_are_read_from_what_the_worker_stored(make_backend: MakeBackend) -> None:
    app = make_backend()
    before = app.client.get("/projects/1/label-errors").json()
    assert before["assessed"] is False and before["rows"] == []
    quality.save(app.store.root, 1, _record(app.version))
    shown = app.client.get("/projects/1/label-errors").json()
    assert shown["assessed"] and shown["found"] == 1 and shown["rows"][0]["task_id"] == 9
    assert shown["prefill"]["threshold"] == THRESHOLD and app.classifier.calls == []  # no inference on a GET
    assert app.client.get("/models?project=1").json()["prefill"]["threshold"] == THRESHOLD
    assert app.client.get("/projects/0/label-errors").status_code == 422
