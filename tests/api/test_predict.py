"""POST /predict: real Label Studio payloads in, one valid prediction per task out, in order, one model_version."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest
from label_studio_sdk.label_interface import LabelInterface

from tests.api.conftest import Backend, FakeClassifier, MakeBackend, assert_no_traceback, ls_payload, sentiment_config

pytestmark = pytest.mark.api

CHOICE = {"POSITIVE": "Positive", "NEGATIVE": "Negative"}


def expected_result(text: str, version: str, *, choice: dict[str, str] = CHOICE, names=("sentiment", "text")) -> dict:
    pred = FakeClassifier.expected(text)
    score = round(pred.score, 6)
    region = {
        "from_name": names[0],
        "to_name": names[1],
        "type": "choices",
        "value": {"choices": [choice[pred.label]]},
        "score": score,
    }
    return {"result": [region], "score": score, "model_version": version}


def test_the_real_50_task_retrieve_gives_50_valid_predictions(backend: Backend) -> None:
    body = ls_payload("predict_request.json")
    setup_version = backend.client.post("/setup", json=ls_payload("setup_request.json")).json()["model_version"]
    reply = backend.client.post("/predict", json=body)
    assert reply.status_code == 200
    answer = reply.json()
    results = answer["results"]
    assert len(results) == len(body["tasks"]) == 50
    assert answer["model_version"] == setup_version
    interface = LabelInterface(body["label_config"])
    for task, result in zip(body["tasks"], results, strict=True):
        assert result == expected_result(task["data"]["text"], setup_version)
        assert interface.validate_prediction(result, return_errors=True) == []
    assert backend.classifier.calls == [[t["data"]["text"] for t in body["tasks"]]], "one batched predict call"


def test_results_follow_task_order(backend: Backend) -> None:
    body = ls_payload("predict_request.json")
    random.Random(7).shuffle(body["tasks"])
    results = backend.client.post("/predict", json=body).json()["results"]
    assert [r["result"][0]["value"] for r in results] == [
        expected_result(t["data"]["text"], backend.version)["result"][0]["value"] for t in body["tasks"]
    ]
    assert [r["score"] for r in results] == [
        round(FakeClassifier.expected(t["data"]["text"]).score, 6) for t in body["tasks"]
    ]


def test_one_task_send_test_request(backend: Backend) -> None:
    body = ls_payload("predict_request_one_task.json")
    reply = backend.client.post("/predict", json=body)
    assert reply.status_code == 200
    assert reply.json() == {
        "results": [expected_result(body["tasks"][0]["data"]["text"], backend.version)],
        "model_version": backend.version,
    }


@pytest.mark.parametrize(
    "data",
    [{}, {"text": None}, {"text": 42}, {"text": {"nested": "x"}}, {"text": ["x"]}, {"text": "  "}, {"other": "x"}],
    ids=["missing", "null", "number", "nested", "list", "blank", "other-key"],
)
def test_a_task_without_usable_text_gets_an_empty_result_and_others_predict(
    backend: Backend, data: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    body = ls_payload("predict_request.json")
    body["tasks"] = body["tasks"][:3]
    body["tasks"][1]["data"] = data
    with caplog.at_level("WARNING", logger="backend.api.routes"):
        results = backend.client.post("/predict", json=body).json()["results"]
    assert results[1] == {"result": [], "score": None, "model_version": backend.version}
    for i in (0, 2):
        assert results[i] == expected_result(body["tasks"][i]["data"]["text"], backend.version)
    assert backend.classifier.calls == [[body["tasks"][0]["data"]["text"], body["tasks"][2]["data"]["text"]]]
    assert f"task {body['tasks'][1]['id']}" in caplog.text


def test_no_usable_text_at_all_calls_no_model(backend: Backend) -> None:
    body = {"tasks": [{"id": 1, "data": {}}, {"id": 2}], "label_config": sentiment_config()}
    results = backend.client.post("/predict", json=body).json()["results"]
    assert [r["result"] for r in results] == [[], []]
    assert backend.classifier.calls == []


def test_the_missing_text_warning_names_the_task_not_the_data(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"tasks": [{"id": 77, "data": {"txt": "private words"}}], "label_config": sentiment_config()}
    with caplog.at_level("DEBUG"):
        backend.client.post("/predict", json=body)
    assert "task 77" in caplog.text and "private words" not in caplog.text


def test_aliases_and_custom_names_come_back_as_the_config_says(backend: Backend) -> None:
    config = sentiment_config(
        choices='<Choice value="Positive" alias="pos"/><Choice value="Negative" alias="neg"/><Choice value="Neutral"/>',
        from_name="tone",
        to_name="review",
        key="body",
    )
    texts = ["great stuff", "awful stuff", "meh", "fine", "love it", "hate it"]
    body = {"tasks": [{"id": i, "data": {"body": t}} for i, t in enumerate(texts)], "label_config": config}
    results = backend.client.post("/predict", json=body).json()["results"]
    interface = LabelInterface(config)
    for text, result in zip(texts, results, strict=True):
        assert result == expected_result(
            text, backend.version, choice={"POSITIVE": "pos", "NEGATIVE": "neg"}, names=("tone", "review")
        )
        assert interface.validate_prediction(result, return_errors=True) == []


def test_predicted_values_mapping(backend: Backend) -> None:
    config = sentiment_config(
        choices='<Choice value="Good" predicted_values="POSITIVE"/><Choice value="Bad" predicted_values="NEGATIVE"/>'
    )
    body = {"tasks": [{"id": 1, "data": {"text": "x"}}, {"id": 2, "data": {"text": "y"}}], "label_config": config}
    results = backend.client.post("/predict", json=body).json()["results"]
    for text, result in zip("xy", results, strict=True):
        assert result == expected_result(text, backend.version, choice={"POSITIVE": "Good", "NEGATIVE": "Bad"})


def test_without_label_config_the_config_from_setup_is_used(backend: Backend) -> None:
    setup = ls_payload("setup_request.json")
    setup["schema"] = sentiment_config(from_name="mood", to_name="review", key="body")
    assert backend.client.post("/setup", json=setup).status_code == 200
    body = {"tasks": [{"id": 1, "data": {"body": "hello"}}], "project": setup["project"]}
    reply = backend.client.post("/predict", json=body)
    assert reply.status_code == 200
    assert reply.json()["results"] == [expected_result("hello", backend.version, names=("mood", "review"))]


def test_without_label_config_or_setup_it_is_a_422(backend: Backend) -> None:
    reply = backend.client.post("/predict", json={"tasks": [{"id": 1, "data": {"text": "x"}}], "project": "99.1"})
    assert reply.status_code == 422
    assert "label_config" in reply.json()["detail"]


def test_a_bad_label_config_is_a_400(backend: Backend) -> None:
    body = ls_payload("predict_request_one_task.json") | {"label_config": '<View><Text name="t" value="$t"/></View>'}
    reply = backend.client.post("/predict", json=body)
    assert reply.status_code == 400 and "no <Choices> bound to a <Text>" in reply.json()["detail"]


def test_unknown_keys_are_tolerated(backend: Backend) -> None:
    body = ls_payload("predict_request_one_task.json") | {"hostname": "http://ls:8080", "model_version": "x"}
    body["tasks"][0]["future_field"] = {"a": 1}
    body["params"]["new_param"] = True
    assert backend.client.post("/predict", json=body).status_code == 200


def test_an_empty_task_list(backend: Backend) -> None:
    reply = backend.client.post("/predict", json={"tasks": [], "label_config": sentiment_config()})
    assert reply.status_code == 200 and reply.json() == {"results": [], "model_version": backend.version}


def test_too_many_tasks_is_a_413_with_the_limit(make_backend: MakeBackend) -> None:
    app = make_backend(max_tasks_per_predict=10)
    body = ls_payload("predict_request.json")
    reply = app.client.post("/predict", json=body)
    assert reply.status_code == 413
    assert reply.json() == {"detail": "50 tasks in one /predict; the limit is MAX_TASKS_PER_PREDICT=10"}
    assert app.classifier.calls == []


def test_a_too_long_text_gets_an_empty_result_and_a_warning_while_the_others_are_predicted(
    make_backend: MakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_backend(max_text_chars=100)
    body = ls_payload("predict_request.json")
    body["tasks"][3]["data"]["text"] = "x" * 101
    with caplog.at_level(logging.WARNING, logger="backend.api.routes"):
        reply = app.client.post("/predict", json=body)
    assert reply.status_code == 200
    results = reply.json()["results"]
    assert len(results) == len(body["tasks"])
    assert results[3] == {"result": [], "score": None, "model_version": app.version}
    others = [t["data"]["text"] for i, t in enumerate(body["tasks"]) if i != 3]
    assert app.classifier.calls == [others]
    for task, result in zip(body["tasks"], results, strict=True):
        if task is not body["tasks"][3]:
            assert result["score"] == pytest.approx(FakeClassifier.expected(task["data"]["text"]).score, abs=1e-6)
    warned = [r.getMessage() for r in caplog.records if "MAX_TEXT_CHARS" in r.getMessage()]
    task = f"task {body['tasks'][3]['id']} (101 characters)"
    assert warned == [f"1 task(s) over MAX_TEXT_CHARS=100, left unpredicted: {task}"]


def test_more_word_pieces_than_the_limit_is_a_413_naming_it(make_backend: MakeBackend) -> None:
    app = make_backend(max_tokens_per_predict=20)
    body = ls_payload("predict_request.json")
    words = sum(len(t["data"]["text"].split()) for t in body["tasks"])
    assert words > 20
    reply = app.client.post("/predict", json=body)
    assert reply.status_code == 413
    assert reply.json()["detail"].startswith(f"the tasks of this /predict hold {words} word pieces; the limit is "
                                             "MAX_TOKENS_PER_PREDICT=20")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"tasks": "all of them"},
        {"tasks": [1, 2, 3]},
        {"tasks": None},
        {"tasks": [], "label_config": 5},
        {"tasks": [], "params": "x"},
        [],
        "just a string",
    ],
)
def test_wrong_types_are_a_422_without_values(backend: Backend, body: Any) -> None:
    reply = backend.client.post("/predict", json=body)
    assert reply.status_code == 422
    answer = reply.json()
    assert answer["detail"].startswith("invalid request:")
    assert all(set(e) == {"loc", "msg", "type"} for e in answer["errors"])
    assert "all of them" not in reply.text and "just a string" not in reply.text
    assert_no_traceback(reply.text)


def test_the_task_data_password_is_never_echoed(backend: Backend) -> None:
    body = {"tasks": "x", "params": {"login": "u", "password": "task-data-PASSWORD-1"}}
    reply = backend.client.post("/predict", json=body)
    assert reply.status_code == 422 and "task-data-PASSWORD-1" not in reply.text


def test_a_classifier_failure_is_a_plain_500(backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    backend.classifier.error = RuntimeError("CUDA out of memory in layer 3")
    with caplog.at_level("ERROR"):
        reply = backend.client.post("/predict", json=ls_payload("predict_request_one_task.json"))
    assert reply.status_code == 500
    assert reply.json() == {"detail": "internal error"}
    assert "CUDA out of memory" not in reply.text
    assert "Traceback" in caplog.text and "CUDA out of memory in layer 3" in caplog.text, "logged server-side"
