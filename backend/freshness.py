"""Values read from the model store's small files, remembered per key for a short interval.

The API's hot path re-reads a project's line pointer (backend.api.served) and its pre-fill threshold
(backend.quality.Thresholds) at most once per MODEL_CHECK_INTERVAL_S. Each value is remembered with the token
it was read under (the store's change count, the version served) and when: it stays fresh while the token
still matches and the interval has not passed. Plain dict operations only, so the event loop and threadpool
threads may share one without a lock; keys come from requests, so beyond `max_keys` everything is forgotten
at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

MAX_KEYS = 10_000


class FreshValues(Generic[V]):
    """key → (token, value, read at); `get` answers a value only while it is fresh (see the module docstring)."""

    def __init__(self, interval_s: float, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_KEYS) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._max_keys = max_keys
        self._seen: dict[Hashable, tuple[Hashable, V, float]] = {}

    def get(self, key: Hashable, token: Hashable) -> tuple[bool, V | None]:
        """(True, the value) while the one remembered under `token` is fresh; (False, None) when it must be read."""
        seen = self._seen.get(key)
        if seen is None or seen[0] != token or self._clock() - seen[2] >= self.interval_s:
            return False, None
        return True, seen[1]

    def put(self, key: Hashable, token: Hashable, value: V) -> None:
        """Remember a value just read under `token`."""
        if len(self._seen) >= self._max_keys:
            self._seen.clear()
        self._seen[key] = (token, value, self._clock())
