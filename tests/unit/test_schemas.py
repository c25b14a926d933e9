"""Request models: the "<id>.<ts>" project string, tolerance of unknown keys, secrets kept out of reprs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.api.schemas import PredictRequest, SetupRequest, WebhookEvent, parse_project_id

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ls"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("project", "expected"),
    [("2.1795343493", 2), ("17", 17), ("3.1", 3), ("123456.0", 123456), ("2147483647.5", 2**31 - 1),
     ("1999999999", 1999999999), ("2147483639", 2147483639)],
)
def test_parse_project_id(project: str, expected: int) -> None:
    assert parse_project_id(project) == expected


@pytest.mark.parametrize("project", ["", "abc", "1.2.3", "-1.5", "1.", ".5", "1e3", "1.x", "９.1", " 3.1 ", "0", "0.5",
                                     "012", "2147483648", "2147483650.1", "9999999999", "99999999999"])
def test_garbage_project_ids_are_refused_without_echoing_them(project: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_project_id(project)
    assert "<id>.<created_ts>" in str(raised.value)
    if project.strip():
        assert project not in str(raised.value)


def test_the_id_pattern_accepts_exactly_1_to_2_31_minus_1() -> None:
    import random
    import re

    from backend.api.schemas import ID_DIGITS, MAX_ID

    pattern = re.compile(ID_DIGITS)
    rng = random.Random(7)
    samples = [1, 9, 10, MAX_ID, MAX_ID + 1, 10**9 - 1, 10**9, 2 * 10**9, 10**10, 0]
    samples += [rng.randrange(1, 10**11) for _ in range(20_000)]
    for n in samples:
        assert bool(pattern.fullmatch(str(n))) == (1 <= n <= MAX_ID), n


def test_the_real_setup_request() -> None:
    body = fixture("setup_request.json")
    setup = SetupRequest.model_validate(body)
    assert setup.project_id == int(body["project"].split(".")[0])
    assert setup.label_config == body["schema"]
    assert setup.hostname == body["hostname"]
    assert setup.extra_params is None


def test_setup_access_token_is_secret() -> None:
    setup = SetupRequest.model_validate({"project": "1.2", "schema": "<View/>", "access_token": "tok-SECRET-123"})
    assert setup.access_token is not None and setup.access_token.get_secret_value() == "tok-SECRET-123"
    assert "tok-SECRET-123" not in repr(setup)
    assert "tok-SECRET-123" not in str(setup)


def test_setup_tolerates_unknown_keys_and_an_integer_project() -> None:
    setup = SetupRequest.model_validate({"project": 5, "schema": "<View/>", "model_version": "x", "new_in_1_24": {}})
    assert setup.project_id == 5


@pytest.mark.parametrize(
    "body",
    [
        {"schema": "<View/>"},
        {"project": "garbage", "schema": "<View/>"},
        {"project": None, "schema": "<View/>"},
        {"project": True, "schema": "<View/>"},
        {"project": "1.2"},
        {"project": "1.2", "schema": 7},
    ],
)
def test_setup_refuses_a_missing_or_malformed_field(body: dict) -> None:
    with pytest.raises(ValidationError):
        SetupRequest.model_validate(body)


def test_the_real_predict_request() -> None:
    body = fixture("predict_request.json")
    request = PredictRequest.model_validate(body)
    assert len(request.tasks) == 50
    assert request.project_id == int(body["project"].split(".")[0])
    assert request.label_config == body["label_config"]
    assert request.params == {"login": None, "password": None, "context": None}


def test_predict_project_and_config_are_optional() -> None:
    request = PredictRequest.model_validate({"tasks": [{"id": 1, "data": {"text": "x"}}], "extra": 1})
    assert request.project_id is None and request.label_config is None


@pytest.mark.parametrize(
    "body",
    [{}, {"tasks": "x"}, {"tasks": [1, 2]}, {"tasks": [], "project": "nope"}, {"tasks": None}],
)
def test_predict_refuses_wrong_types(body: dict) -> None:
    with pytest.raises(ValidationError):
        PredictRequest.model_validate(body)


def test_predict_repr_hides_params() -> None:
    request = PredictRequest.model_validate({"tasks": [], "params": {"password": "task-data-PASS"}})
    assert "task-data-PASS" not in repr(request)


@pytest.mark.parametrize(
    "name",
    ["webhook_start_training.json", "webhook_annotation_created.json", "webhook_annotations_deleted.json"],
)
def test_real_webhooks_keep_their_payload(name: str) -> None:
    body = fixture(name)
    event = WebhookEvent.model_validate(body)
    assert event.action == body["action"]
    assert event.payload() == {k: v for k, v in body.items() if k != "action"}


def test_webhook_repr_shows_the_action_only() -> None:
    event = WebhookEvent.model_validate({"action": "START_TRAINING", "project": {"token": "project-TOKEN-xyz"}})
    assert repr(event) == "WebhookEvent(action='START_TRAINING')"


@pytest.mark.parametrize("body", [{}, {"action": ""}, {"action": 3}, {"action": None}])
def test_webhook_needs_an_action(body: dict) -> None:
    with pytest.raises(ValidationError):
        WebhookEvent.model_validate(body)
