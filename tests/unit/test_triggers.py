"""backend.triggers: the policy with a fake counter (unit), the Lua-backed counter on the tests' own redis-server
(redis): distinct ids, the atomic take at the threshold, ids given back when no training was created."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
import redis

from backend import keys
from backend.events import MAX_IDS_PER_EVENT, Event
from backend.triggers import AnnotationCounter, count_towards_training, counted_ids
from tests.redisdb import flushed_test_db


def event(*ids: int, copies: Sequence[int] = (), project: int | None = 7) -> Event:
    return Event(action="ANNOTATION_CREATED", project_id=project, annotation_ids=(*ids, *copies), task_ids=(),
                 received_at="", accepted=len(ids) + len(copies), accepted_ids=ids, copied_ids=tuple(copies))


class FakeCounter:
    """AnnotationCounter's contract on a Python set per project."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.sets: dict[int, set[int]] = {}
        self.given_back: list[list[int]] = []

    def add(self, project: int, ids: Sequence[int]) -> tuple[int, list[int]]:
        held = self.sets.setdefault(project, set())
        held.update(ids)
        count = len(held)
        if count < self.threshold:
            return count, []
        self.sets[project] = set()
        return count, sorted(held)

    def give_back(self, project: int, ids: Sequence[int]) -> int:
        self.given_back.append(list(ids))
        self.sets.setdefault(project, set()).update(ids)
        return len(self.sets[project])


class Starter:
    def __init__(self, created: bool = True, error: Exception | None = None) -> None:
        self.calls: list[tuple[int, str]] = []
        self.created, self.error = created, error

    def __call__(self, project: int, reason: str) -> Mapping[str, Any]:
        self.calls.append((project, reason))
        if self.error is not None:
            raise self.error
        return {"job": "train-0123456789", "created": self.created}


def counting(counter: Any, ev: Event, start: Starter, copies: bool = False) -> dict[str, Any] | None:
    return count_towards_training(lambda: counter, ev, include_prediction_copies=copies, start=start)


@pytest.mark.unit
def test_below_the_threshold_the_reply_says_how_far_and_at_it_one_training_starts() -> None:
    counter, start = FakeCounter(3), Starter()
    assert counting(counter, event(1, 2), start) == {"since_last": 2, "threshold": 3}
    assert counting(counter, event(2), start) == {"since_last": 2, "threshold": 3}  # the same annotation again
    assert counting(counter, event(3), start) == {"since_last": 3, "threshold": 3, "job": "train-0123456789",
                                                  "created": True}
    assert start.calls == [(7, "3 new accepted annotations")] and counter.given_back == []
    assert counting(counter, event(4), start) == {"since_last": 1, "threshold": 3}


@pytest.mark.unit
def test_ids_are_given_back_when_a_training_is_already_active() -> None:
    counter, start = FakeCounter(2), Starter(created=False)
    assert counting(counter, event(1, 2), start) == {"since_last": 2, "threshold": 2, "job": "train-0123456789",
                                                     "created": False, "pending": 2}
    assert counter.sets[7] == {1, 2}


@pytest.mark.unit
def test_a_failed_start_gives_the_ids_back_and_the_webhook_still_gets_an_answer() -> None:
    counter, start = FakeCounter(1), Starter(error=RuntimeError("queue full"))
    reply = counting(counter, event(5), start)
    assert reply == {"error": "the annotation count was not updated (RuntimeError); see the server log"}
    assert counter.sets[7] == {5}

    def unreachable() -> AnnotationCounter:
        raise redis.ConnectionError("refused")

    down = count_towards_training(unreachable, event(6), include_prediction_copies=False, start=start)
    assert down == {"error": "the annotation count was not updated (ConnectionError); see the server log"}


@pytest.mark.unit
def test_prediction_copies_count_only_with_the_setting_and_nothing_to_count_is_none() -> None:
    assert counted_ids(event(1, copies=[2, 3]), include_prediction_copies=False) == (1,)
    assert counted_ids(event(1, copies=[2, 3]), include_prediction_copies=True) == (1, 2, 3)
    counter, start = FakeCounter(2), Starter()
    assert counting(counter, event(copies=[2, 3]), start) is None
    assert counting(counter, event(4, project=None), start) is None
    assert counting(counter, event(copies=[2, 3]), start, copies=True)["created"] is True  # type: ignore[index]


@pytest.fixture
def db() -> Iterator[redis.Redis]:
    for client, _ in flushed_test_db():
        yield client


@pytest.mark.redis
def test_the_counter_counts_distinct_ids_and_takes_the_set_whole_at_the_threshold(db: redis.Redis) -> None:
    counter = AnnotationCounter(db, threshold=4)
    assert counter.add(1, [10, 11]) == (2, [])
    assert counter.add(1, [11, 10]) == (2, [])
    assert counter.add(2, [10]) == (1, [])  # projects count apart
    assert 0 < db.ttl(keys.annotations_since_training(1)) <= keys.RUN_TTL_S
    assert counter.add(1, [12, 13, 14]) == (5, [10, 11, 12, 13, 14])
    assert counter.count(1) == 0 and not db.exists(keys.annotations_since_training(1))
    assert counter.add(1, [10]) == (1, [])  # a new training's count starts from nothing


@pytest.mark.redis
def test_an_annotation_arriving_while_the_count_is_taken_is_not_lost(db: redis.Redis) -> None:
    counter = AnnotationCounter(db, threshold=3)

    def start_while_another_arrives(created: bool) -> Starter:
        class During(Starter):
            def __call__(self, project: int, reason: str) -> Mapping[str, Any]:
                assert counter.add(project, [99]) == (1, [])  # counted in the fresh set, never taking the old one
                return super().__call__(project, reason)
        return During(created=created)

    started = start_while_another_arrives(created=True)
    reply = count_towards_training(lambda: counter, event(1, 2, 3), include_prediction_copies=False, start=started)
    assert reply is not None and reply["created"] is True and len(started.calls) == 1
    assert db.smembers(keys.annotations_since_training(7)) == {b"99"}  # the next training's first annotation
    db.delete(keys.annotations_since_training(7))
    busy = start_while_another_arrives(created=False)
    reply = count_towards_training(lambda: counter, event(1, 2, 3), include_prediction_copies=False, start=busy)
    assert reply is not None and reply["created"] is False and reply["pending"] == 4
    assert db.smembers(keys.annotations_since_training(7)) == {b"1", b"2", b"3", b"99"}


@pytest.mark.redis
def test_ids_given_back_stay_bounded(db: redis.Redis) -> None:
    counter = AnnotationCounter(db, threshold=2)
    most = 2 + MAX_IDS_PER_EVENT
    assert counter.give_back(3, list(range(most + 500))) == most
    assert db.scard(keys.annotations_since_training(3)) == most
    assert 0 < db.ttl(keys.annotations_since_training(3)) <= keys.RUN_TTL_S
