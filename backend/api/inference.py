"""/predict's own executor: one thread runs the model, and at most `max_admitted` requests run or wait for it.

Inference never runs on the event loop nor in the threadpool that /setup and /webhook share (anyio's), so those
answer within Label Studio's timeouts (1 s and 3 s) however many predicts are waiting. A /predict beyond the
bound is refused at once with Overloaded (503 + Retry-After) instead of queueing without limit: Label Studio
never retries a webhook, but a refused predict is simply asked again when the annotator opens the task.
One thread is enough: the classifier serialises its forward passes under a lock, and torch already uses
every core inside one.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from backend.errors import Overloaded

T = TypeVar("T")


class PredictExecutor:
    """A bounded admission counter in front of a one-thread pool; `run` is called from the event loop only."""

    def __init__(self, max_admitted: int, *, threads: int = 1) -> None:
        self.max_admitted = max_admitted
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="predict")
        self._admitted = 0  # touched only on the event loop thread: no lock needed

    @property
    def admitted(self) -> int:
        """Requests running or waiting right now."""
        return self._admitted

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) on the model thread; raises Overloaded when max_admitted requests are already in."""
        if self._admitted >= self.max_admitted:
            raise Overloaded(
                f"{self._admitted} /predict requests are running or waiting for the model "
                f"(MAX_CONCURRENT_PREDICTS={self.max_admitted}); retry in a moment"
            )
        self._admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))
        finally:
            self._admitted -= 1

    def shutdown(self) -> None:
        """Drop waiting work and let the running prediction finish in the background."""
        self._pool.shutdown(wait=False, cancel_futures=True)
