"""texts_from_tasks and build_prediction: Label Studio task dicts in, stored prediction dicts out."""

from __future__ import annotations

from typing import Any

import pytest
from label_studio_sdk.label_interface import LabelInterface

from backend.errors import InvalidLabelingConfig
from backend.labeling.results import build_prediction, task_ref, texts_from_tasks
from backend.labeling.spec import parse_spec
from backend.model.types import Prediction

pytestmark = pytest.mark.unit

ALIASED = (
    '<View><Text name="review" value="$body"/><Choices name="tone" toName="review">'
    '<Choice value="Positive" alias="pos"/><Choice value="Negative" alias="neg"/><Choice value="Neutral"/>'
    "</Choices></View>"
)


def test_texts_in_task_order() -> None:
    tasks = [{"id": 3, "data": {"text": "b"}}, {"id": 1, "data": {"text": "a"}}]
    assert texts_from_tasks(tasks, "text") == ["b", "a"]


@pytest.mark.parametrize(
    "task",
    [
        {"id": 1, "data": {}},
        {"id": 1, "data": {"text": None}},
        {"id": 1, "data": {"text": 42}},
        {"id": 1, "data": {"text": ["a list"]}},
        {"id": 1, "data": {"text": {"nested": "dict"}}},
        {"id": 1, "data": {"text": "   "}},
        {"id": 1, "data": {"other": "text under another key"}},
        {"id": 1, "data": "not a dict"},
        {"id": 1, "data": None},
        {"id": 1},
        {},
        "not a task",
        None,
        17,
    ],
)
def test_unusable_data_gives_none_and_never_raises(task: Any) -> None:
    assert texts_from_tasks([task], "text") == [None]


def test_a_dotted_key_reads_nested_data() -> None:
    tasks = [{"data": {"review": {"text": "nested"}}}, {"data": {"review.text": "flat wins"}}, {"data": {"review": 1}}]
    assert texts_from_tasks(tasks, "review.text") == ["nested", "flat wins", None]


def test_task_ref_names_the_id_or_the_position() -> None:
    assert task_ref({"id": 12}, 0) == "task 12"
    assert task_ref({"id": "12; DROP"}, 3) == "task at position 3"
    assert task_ref({"id": True}, 1) == "task at position 1"
    assert task_ref("weird", 2) == "task at position 2"


def test_build_prediction_exact_shape() -> None:
    spec = parse_spec(ALIASED, ("NEGATIVE", "POSITIVE"))
    pred = Prediction(label="NEGATIVE", score=0.912345678, probs={"NEGATIVE": 0.912345678, "POSITIVE": 0.087654322})
    assert build_prediction(pred, spec, "v1") == {
        "result": [
            {
                "from_name": "tone",
                "to_name": "review",
                "type": "choices",
                "value": {"choices": ["neg"]},
                "score": 0.912346,
            }
        ],
        "score": 0.912346,
        "model_version": "v1",
    }


def test_build_prediction_is_valid_for_label_studio() -> None:
    spec = parse_spec(ALIASED, ("NEGATIVE", "POSITIVE"))
    interface = LabelInterface(ALIASED)
    for label in ("NEGATIVE", "POSITIVE"):
        prediction = build_prediction(Prediction(label=label, score=0.7), spec, "v1")
        assert interface.validate_prediction(prediction, return_errors=True) == []


def test_no_prediction_gives_an_empty_result() -> None:
    spec = parse_spec(ALIASED, ("NEGATIVE", "POSITIVE"))
    assert build_prediction(None, spec, "v2") == {"result": [], "score": None, "model_version": "v2"}


def test_a_label_outside_the_map_is_an_error_not_a_guess() -> None:
    spec = parse_spec(ALIASED, ("NEGATIVE", "POSITIVE"))
    with pytest.raises(InvalidLabelingConfig, match="NEUTRAL"):
        build_prediction(Prediction(label="NEUTRAL", score=0.5), spec, "v1")
