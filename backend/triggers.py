"""When annotations start a training: the distinct accepted annotation ids since the project's last training.

The ids live in one Redis set per project (backend.keys.annotations_since_training). One Lua script adds an
event's ids, counts the set and, at TRAIN_AFTER_ANNOTATIONS, takes the whole set in the same step: two webhooks
at once can never both take it, the same annotation posted twice (or updated) counts once, and an annotation that
arrives while a training is being started lands in the next set. When no training could be created (one is
already queued or running, or queuing failed) the taken ids are given back, so none is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from backend import keys
from backend.events import MAX_IDS_PER_EVENT, Event

log = logging.getLogger(__name__)

# KEYS[1] the set; ARGV: threshold, ttl, ids... → {count, taken ids (none below the threshold)}
_ADD = """
for i = 3, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
local n = redis.call('SCARD', KEYS[1])
if n == 0 then return {0, {}} end
if n < tonumber(ARGV[1]) then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return {n, {}}
end
local taken = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return {n, taken}
"""
# KEYS[1] the set; ARGV: most members kept, ttl, ids... → the count; beyond the bound the count is past the
# threshold anyway, and the next training takes the whole set, so which members are dropped does not matter
_GIVE_BACK = """
for i = 3, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
local n = redis.call('SCARD', KEYS[1])
local most = tonumber(ARGV[1])
if n > most then redis.call('SPOP', KEYS[1], n - most); n = most end
if n > 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return n
"""


class StartTraining(Protocol):
    """Queue a training of a project, or find the active one: {"job": id, "created": bool}."""

    def __call__(self, project: int, reason: str) -> Mapping[str, Any]: ...


class AnnotationCounter:
    """The per-project sets of accepted annotation ids since the last training, in Redis."""

    def __init__(self, redis: Any, threshold: int, ttl_s: int = keys.RUN_TTL_S) -> None:
        self.redis, self.threshold, self.ttl_s = redis, threshold, ttl_s
        self._add = redis.register_script(_ADD)
        self._give_back = redis.register_script(_GIVE_BACK)

    def add(self, project: int, ids: Sequence[int]) -> tuple[int, list[int]]:
        """(distinct ids counted, []) below the threshold; at it (count, every id), and the set is emptied."""
        count, taken = self._add(keys=[keys.annotations_since_training(project)],
                                 args=[self.threshold, self.ttl_s, *map(int, ids)])
        return int(count), sorted(int(i) for i in taken or [])

    def give_back(self, project: int, ids: Sequence[int]) -> int:
        """Put taken ids back (with any counted meanwhile); the count now."""
        most = self.threshold + MAX_IDS_PER_EVENT
        return int(self._give_back(keys=[keys.annotations_since_training(project)],
                                   args=[most, self.ttl_s, *map(int, ids)]))

    def count(self, project: int) -> int:
        """Distinct ids counted since the last training."""
        return int(self.redis.scard(keys.annotations_since_training(project)))


def counted_ids(event: Event, *, include_prediction_copies: bool) -> tuple[int, ...]:
    """The event's annotation ids that count towards a training: a person's accepted ones (and copies if asked)."""
    return event.accepted_ids + (event.copied_ids if include_prediction_copies else ())


def count_towards_training(
    counter: Callable[[], AnnotationCounter], event: Event, *, include_prediction_copies: bool,
    start: StartTraining,
) -> dict[str, Any] | None:
    """Count the event's accepted annotations for its project; at the threshold start one training. None when
    the event has nothing to count; never raises (Label Studio gives a webhook 1 s and never retries it)."""
    ids = counted_ids(event, include_prediction_copies=include_prediction_copies)
    if event.project_id is None or not ids:
        return None
    project = event.project_id
    try:
        annotations = counter()
        count, taken = annotations.add(project, ids)
        reply: dict[str, Any] = {"since_last": count, "threshold": annotations.threshold}
        if not taken:
            return reply
        return {**reply, **_start(annotations, project, taken, start)}
    except Exception as exc:  # Redis errors included: the webhook is answered regardless
        log.warning("annotation count of project %s not updated: %s: %s", project, type(exc).__name__, exc)
        return {"error": f"the annotation count was not updated ({type(exc).__name__}); see the server log"}


def _start(annotations: AnnotationCounter, project: int, taken: list[int], start: StartTraining) -> dict[str, Any]:
    """Start the training the taken ids are due; give them back when none was created."""
    try:
        started = dict(start(project, f"{len(taken)} new accepted annotations"))
    except Exception:
        annotations.give_back(project, taken)
        raise
    if not started.get("created"):
        started["pending"] = annotations.give_back(project, taken)  # they count towards the next training
    return started
