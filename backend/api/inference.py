"""/predict's own executor: one thread runs the model, and at most `max_admitted` requests run or wait for it.

Inference never runs on the event loop nor in the threadpool that /setup and /webhook share (anyio's), so those
answer within Label Studio's timeouts (1 s and 3 s) however many predicts are waiting. A /predict beyond the
bound is refused at once with Overloaded (503 + Retry-After) instead of queueing without limit: Label Studio
never retries a webhook, but a refused predict is simply asked again when the annotator opens the task.
One thread is enough: the classifier serialises its forward passes under a lock, and torch already uses
every core inside one. `OverloadGuard` refuses a /predict while the executor is full before its body is even
read, so a crowd of refused clients costs almost nothing (the handler checks again: the guard is only a fast path).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from starlette.types import ASGIApp, Receive, Scope, Send

from backend.api.asgi import send_json
from backend.errors import Overloaded

log = logging.getLogger(__name__)

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

    @property
    def full(self) -> bool:
        """True while a new request would be refused."""
        return self._admitted >= self.max_admitted

    def overloaded(self) -> Overloaded:
        """The error a refused request gets."""
        return Overloaded(
            f"{self._admitted} /predict requests are running or waiting for the model "
            f"(MAX_CONCURRENT_PREDICTS={self.max_admitted}); retry in a moment"
        )

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) on the model thread; raises Overloaded when max_admitted requests are already in."""
        if self.full:
            raise self.overloaded()
        self._admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))
        finally:
            self._admitted -= 1

    def shutdown(self) -> None:
        """Drop waiting work and let the running prediction finish in the background."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class OverloadGuard:
    """Pure ASGI: a POST to `path` while the executor is full gets the 503 at once, its body left unread."""

    def __init__(self, app: ASGIApp, executor: PredictExecutor, path: str = "/predict") -> None:
        self.app = app
        self.executor = executor
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path or not self.executor.full:
            await self.app(scope, receive, send)
            return
        error = self.executor.overloaded()
        log.debug("POST %s -> 503: %s", self.path, error)
        await send_json(send, 503, {"detail": str(error)},
                        [(b"retry-after", str(error.retry_after_s).encode()), (b"connection", b"close")])
