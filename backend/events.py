"""Compact records of the Label Studio events the backend will act on, kept in a capped Redis list.

A record holds ids only (action, project, annotations, tasks, received_at): never texts, results or the
project object, which carries the project token and task_data_password. Later features turn records into jobs.
Accepted annotations (a result, not cancelled) are kept apart by id: the ones a person made (`accepted_ids`) and
the ones Label Studio copied from predictions in bulk (`copied_ids`, see backend.annotations.is_prediction_copy).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from backend import keys
from backend.annotations import is_prediction_copy

log = logging.getLogger(__name__)

EVENTS_KEY = keys.EVENTS
DEFAULT_MAX_EVENTS = 10_000
# ids kept per record and kind: a 20 MB body of ids must not become a 20 MB list entry (10,000 of them)
MAX_IDS_PER_EVENT = 1000
SOCKET_TIMEOUT_S = 0.2
# after a failure Redis is not tried again for this long, so a dead Redis costs one timeout, not one per event
RETRY_AFTER_S = 5.0


@dataclass(frozen=True)
class Event:
    """One Label Studio event, reduced to ids."""

    action: str
    project_id: int | None
    annotation_ids: tuple[int, ...]
    task_ids: tuple[int, ...]
    received_at: str
    accepted: int = 0  # annotations in the event that were submitted with a result and not cancelled
    ids_dropped: int = 0  # annotation and task ids beyond MAX_IDS_PER_EVENT each, counted but not kept
    accepted_ids: tuple[int, ...] = ()  # ids of the accepted annotations a person made (at most MAX_IDS_PER_EVENT)
    copied_ids: tuple[int, ...] = ()  # ids of the accepted ones Label Studio copied from predictions in bulk

    def to_json(self) -> str:
        """One compact JSON line."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str | bytes) -> Event:
        """The inverse of to_json."""
        raw = json.loads(line)
        return cls(
            action=str(raw["action"]),
            project_id=raw.get("project_id"),
            annotation_ids=tuple(raw.get("annotation_ids", ())),
            task_ids=tuple(raw.get("task_ids", ())),
            received_at=str(raw.get("received_at", "")),
            accepted=int(raw.get("accepted", 0)),
            ids_dropped=int(raw.get("ids_dropped", 0)),
            accepted_ids=tuple(raw.get("accepted_ids", ())),
            copied_ids=tuple(raw.get("copied_ids", ())),
        )


def event_from_webhook(action: str, payload: Mapping[str, Any], *, received_at: datetime | None = None) -> Event:
    """The compact record of a webhook body (`payload` is the body without `action`); never raises on odd shapes."""
    when = (received_at or datetime.now(timezone.utc)).isoformat(timespec="milliseconds")
    annotations = _items(payload.get("annotation")) + _items(payload.get("annotations"))
    tasks = _items(payload.get("task")) + _items(payload.get("tasks"))
    task_ids = _ids(map(_id_of, tasks)) + _ids(_id_of(a.get("task")) for a in annotations if isinstance(a, dict))
    annotation_ids, unique_tasks = _ids(map(_id_of, annotations)), tuple(dict.fromkeys(task_ids))
    dropped = max(0, len(annotation_ids) - MAX_IDS_PER_EVENT) + max(0, len(unique_tasks) - MAX_IDS_PER_EVENT)
    accepted = [] if action == "ANNOTATIONS_DELETED" else [
        a for a in annotations if isinstance(a, dict) and a.get("result") and not a.get("was_cancelled")
    ]
    return Event(
        action=action,
        project_id=next(iter(_ids([_id_of(payload.get("project"))])), None),
        annotation_ids=annotation_ids[:MAX_IDS_PER_EVENT],
        task_ids=unique_tasks[:MAX_IDS_PER_EVENT],
        received_at=when,
        ids_dropped=dropped,
        accepted=len(accepted),
        accepted_ids=_ids(a.get("id") for a in accepted if not is_prediction_copy(a))[:MAX_IDS_PER_EVENT],
        copied_ids=_ids(a.get("id") for a in accepted if is_prediction_copy(a))[:MAX_IDS_PER_EVENT],
    )


class EventLog(Protocol):
    """Where recorded events go; `record` must return quickly and never raise."""

    def record(self, event: Event) -> bool:
        """Store the event; False when it could not be stored (already logged)."""
        ...


class MemoryEventLog:
    """An in-process EventLog (tests, or running without Redis)."""

    def __init__(self, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        self.events: deque[Event] = deque(maxlen=max_events)

    def record(self, event: Event) -> bool:
        """Append the event (thread-safe: deque.append is atomic)."""
        self.events.append(event)
        return True


class RedisEventLog:
    """A capped Redis list of JSON records, newest first; the connection is made lazily, with 0.2 s timeouts."""

    def __init__(
        self,
        redis_url: str,
        *,
        key: str = EVENTS_KEY,
        max_events: int = DEFAULT_MAX_EVENTS,
        timeout_s: float = SOCKET_TIMEOUT_S,
        client: Any = None,
    ) -> None:
        self._url = redis_url
        self.key = key
        self.max_events = max_events
        self.timeout_s = timeout_s
        self._client: Any = client  # a redis.Redis; made from redis_url on first use when not given
        self._lock = threading.Lock()
        self._down_until = 0.0

    def record(self, event: Event) -> bool:
        """LPUSH + LTRIM in one round trip; False (and a warning) when Redis is unreachable."""
        if time.monotonic() < self._down_until:
            return False
        try:
            pipe = self._redis().pipeline(transaction=False)
            pipe.lpush(self.key, event.to_json())
            pipe.ltrim(self.key, 0, self.max_events - 1)
            pipe.execute()
        except Exception as exc:  # RedisError, OSError, a bad REDIS_URL: the webhook is answered regardless
            self._down_until = time.monotonic() + RETRY_AFTER_S
            log.warning("event log unavailable (%s); %s not recorded", type(exc).__name__, event.action)
            return False
        return True

    def recent(self, n: int = 100) -> list[Event]:
        """The newest n records, newest first."""
        return [Event.from_json(line) for line in self._redis().lrange(self.key, 0, n - 1)]

    def _redis(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = redis.Redis.from_url(
                    self._url,
                    socket_timeout=self.timeout_s,
                    socket_connect_timeout=self.timeout_s,
                    retry=Retry(NoBackoff(), 0),
                )
            return self._client


def _items(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _ids(values: Iterable[Any]) -> tuple[int, ...]:
    return tuple(v for v in values if isinstance(v, int) and not isinstance(v, bool))


def _id_of(item: Any) -> Any:
    """An object's "id" when it is a dict (Label Studio sends either objects or bare ids)."""
    return item.get("id") if isinstance(item, dict) else item
