"""Event records from real webhook bodies, and the Redis event log's behaviour when Redis is there or not."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from backend.events import EVENTS_KEY, Event, MemoryEventLog, RedisEventLog, event_from_webhook

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ls"
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def webhook(name: str) -> tuple[str, dict[str, Any]]:
    body = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return body.pop("action"), body


def test_annotation_created_keeps_ids_only() -> None:
    action, payload = webhook("webhook_annotation_created.json")
    event = event_from_webhook(action, payload, received_at=WHEN)
    assert event == Event(
        action="ANNOTATION_CREATED",
        project_id=payload["project"]["id"],
        annotation_ids=(payload["annotation"]["id"],),
        task_ids=(payload["task"]["id"],),
        received_at="2026-01-02T03:04:05.000+00:00",
        accepted=1,  # submitted with a result, not cancelled: it counts towards the next training
        accepted_ids=(payload["annotation"]["id"],),  # and a person made it (updated_by and lead_time are set)
    )
    record = event.to_json()
    assert payload["task"]["data"]["text"] not in record
    assert "token" not in record and "label_config" not in record


def test_start_training_and_annotations_deleted() -> None:
    action, payload = webhook("webhook_start_training.json")
    assert event_from_webhook(action, payload).project_id == payload["project"]["id"]
    action, payload = webhook("webhook_annotations_deleted.json")
    event = event_from_webhook(action, payload)
    assert event.annotation_ids == tuple(a["id"] for a in payload["annotations"])
    assert event.task_ids == ()


def test_bulk_shapes_and_bare_ids() -> None:
    payload = {
        "annotation": [{"id": 5, "task": 9}, {"id": 6, "task": 9}],
        "tasks": [{"id": 9}, 10, "x", None],
        "project": {"id": 2},
    }
    event = event_from_webhook("ANNOTATIONS_CREATED", payload)
    assert event.annotation_ids == (5, 6)
    assert event.task_ids == (9, 10)


@pytest.mark.parametrize(
    "payload",
    [{}, {"project": "1"}, {"project": None, "annotation": "x", "task": [None, {}]}, {"annotations": {"id": True}}],
)
def test_odd_shapes_never_raise(payload: dict[str, Any]) -> None:
    event = event_from_webhook("ANYTHING", payload)
    assert event.project_id is None and event.annotation_ids == () and event.task_ids == ()


def test_json_round_trip() -> None:
    event = Event("TASKS_CREATED", 3, (), (1, 2), "2026-01-01T00:00:00+00:00")
    assert Event.from_json(event.to_json()) == event


def test_memory_log_is_capped() -> None:
    log = MemoryEventLog(max_events=2)
    for i in range(3):
        assert log.record(Event("START_TRAINING", i, (), (), ""))
    assert [e.project_id for e in log.events] == [1, 2]


class FakePipeline:
    def __init__(self, store: list[tuple[str, Any]]) -> None:
        self.store = store
        self.ops: list[tuple[str, Any]] = []

    def lpush(self, key: str, value: str) -> None:
        self.ops.append(("lpush", (key, value)))

    def ltrim(self, key: str, start: int, end: int) -> None:
        self.ops.append(("ltrim", (key, start, end)))

    def execute(self) -> None:
        self.store.extend(self.ops)


class FakeRedis:
    def __init__(self) -> None:
        self.executed: list[tuple[str, Any]] = []

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self.executed)


def test_redis_log_pushes_and_trims_in_one_round_trip() -> None:
    fake = FakeRedis()
    log = RedisEventLog("redis://unused", max_events=50, client=fake)
    event = Event("START_TRAINING", 1, (), (), "t")
    assert log.record(event) is True
    assert fake.executed == [("lpush", (EVENTS_KEY, event.to_json())), ("ltrim", (EVENTS_KEY, 0, 49))]


def test_unreachable_redis_is_a_warning_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    log = RedisEventLog("redis://127.0.0.1:1/0")  # nothing listens on port 1
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="backend.events"):
        assert log.record(Event("START_TRAINING", 1, (), (), "t")) is False
        assert log.record(Event("START_TRAINING", 1, (), (), "t")) is False  # not retried for a while
    assert time.monotonic() - started < 1.0
    assert "event log unavailable" in caplog.text


def test_a_redis_that_never_answers_costs_one_short_timeout() -> None:
    import socket

    with socket.socket() as silent:  # accepts connections (backlog) but never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        log = RedisEventLog(f"redis://127.0.0.1:{port}/0", timeout_s=0.2)
        started = time.monotonic()
        assert log.record(Event("START_TRAINING", 1, (), (), "t")) is False
        assert time.monotonic() - started < 0.8


def test_a_record_keeps_at_most_max_ids_per_event_of_each_kind_and_counts_the_rest() -> None:
    from backend.events import MAX_IDS_PER_EVENT

    payload = {"project": {"id": 4}, "tasks": [{"id": i} for i in range(1, MAX_IDS_PER_EVENT + 11)]}
    event = event_from_webhook("TASKS_CREATED", payload)
    assert event.task_ids == tuple(range(1, MAX_IDS_PER_EVENT + 1)) and event.ids_dropped == 10
    assert Event.from_json(event.to_json()) == event


def copied(annotation_id: int, task: int, **fields: Any) -> dict[str, Any]:
    """An annotation as Label Studio 1.23.2's "Create Annotations From Predictions" makes it (bulk_create from the
    prediction: parent_prediction set, nobody's lead_time, no updated_by)."""
    result = [{"from_name": "sentiment", "value": {"choices": ["Positive"]}}]
    return {"id": annotation_id, "task": task, "result": result,
            "was_cancelled": False, "parent_prediction": 900 + annotation_id, "lead_time": None, "updated_by": None,
            "completed_by": 1, "prediction": {}, **fields}


def test_prediction_copies_are_kept_apart_from_what_a_person_submitted() -> None:
    _, submitted = webhook("webhook_annotation_created.json")
    prefilled = {**submitted["annotation"], "id": 3, "parent_prediction": 77}  # opened pre-filled and submitted
    payload = {"annotation": [copied(5, 9), copied(6, 9, updated_by=1), prefilled, copied(7, 9, was_cancelled=True)],
               "project": {"id": 2}}
    event = event_from_webhook("ANNOTATIONS_CREATED", payload)
    assert event.accepted == 3 and event.accepted_ids == (6, 3) and event.copied_ids == (5,)
    assert Event.from_json(event.to_json()) == event
