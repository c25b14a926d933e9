"""The app factory: middleware, lifespan and the one mapping from errors to HTTP responses.

No module-level app: the CLI (or a test) builds one with `create_app(settings)`.
Every error body is JSON `{"detail": ...}`; tracebacks and request values stay on the server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend import errors, quality
from backend.api import jobs as jobs_api
from backend.api import models as models_api
from backend.api.asgi import send_json
from backend.api.auth import AuthMiddleware, Credentials
from backend.api.inference import OverloadGuard, PredictExecutor
from backend.api.routes import BackendState, ProjectConfigs, router
from backend.api.schemas import error_responses
from backend.api.served import ServedModel, checkpoint_loader
from backend.config import Settings
from backend.events import EventLog, RedisEventLog
from backend.store import ModelStore

log = logging.getLogger(__name__)


def _error_table() -> dict[type[errors.BackendError], int]:
    """Every BackendError class in backend/errors.py with the status its docstring names (its `.status`)."""
    table: dict[type[errors.BackendError], int] = {}
    pending: list[type[errors.BackendError]] = [errors.BackendError]
    while pending:
        cls = pending.pop()
        table[cls] = cls.status
        pending.extend(cls.__subclasses__())
    return table


# The one table from domain errors to HTTP statuses, built once at import.
ERROR_STATUS = _error_table()


def create_app(
    settings: Settings,
    served: ServedModel | None = None,
    events: EventLog | None = None,
) -> FastAPI:
    """The backend's FastAPI app; `served` and `events` default to the store in MODEL_DIR and Redis at REDIS_URL."""
    served = served or ServedModel(
        ModelStore(settings.model_dir), checkpoint_loader(settings), max_loaded=settings.max_loaded_models,
        check_interval_s=settings.model_check_interval_s,
    )
    state = BackendState(
        settings=settings,
        served=served,
        events=events or RedisEventLog(settings.redis_url),
        projects=ProjectConfigs(),
        inference=PredictExecutor(settings.max_concurrent_predicts),
        thresholds=quality.Thresholds(settings.model_dir, settings.model_check_interval_s),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.served.start_loading()  # in the background: the port binds at once, /health says LOADING
        yield
        state.inference.shutdown()

    app = FastAPI(
        title="sentiment-backend",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # what the middleware may answer on any route: malformed body or header, credentials, body too slow or big
        responses=error_responses(400, 401, 408, 413),
    )
    app.state.backend = state
    app.state.jobs = jobs_api.JobsState(settings)
    app.include_router(router)
    app.include_router(jobs_api.router)
    app.include_router(models_api.router)
    app.add_exception_handler(errors.BackendError, _backend_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # added last = outermost: auth first (no body is read for a refused request), a full /predict refused unread,
    # the body limit, the 500 guard
    app.add_middleware(InternalErrorMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(OverloadGuard, executor=state.inference)
    app.add_middleware(AuthMiddleware, credentials=Credentials.from_settings(settings))
    return app


def status_for(error: errors.BackendError) -> int:
    """The HTTP status of a domain error: its row in ERROR_STATUS (a class defined later: its own `.status`)."""
    return ERROR_STATUS.get(type(error), error.status)


async def _backend_error(request: Request, exc: Exception) -> JSONResponse:
    status = status_for(exc) if isinstance(exc, errors.BackendError) else 500
    # a refused /predict is routine under load: one WARNING per refusal would flood the log
    level = logging.DEBUG if isinstance(exc, errors.Overloaded) else logging.WARNING if status >= 500 else logging.INFO
    log.log(level, "%s %s -> %d %s: %s", request.method, request.url.path, status, type(exc).__name__, exc)
    retry_after = getattr(exc, "retry_after_s", None)
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    problems = exc.errors() if isinstance(exc, RequestValidationError) else []
    malformed = [p for p in problems if p.get("type") == "json_invalid"]
    if malformed:
        reason = (malformed[0].get("ctx") or {}).get("error", "JSON decode error")
        log.info("%s %s -> 400 malformed JSON", request.method, request.url.path)
        return JSONResponse({"detail": f"malformed JSON body: {reason}"}, status_code=400)
    # never echo `input`: request values can carry tokens and passwords
    cleaned = [{"loc": list(p.get("loc", ())), "msg": str(p.get("msg", "")), "type": p.get("type")} for p in problems]
    summary = "; ".join(f"{'.'.join(str(x) for x in p['loc'])}: {p['msg']}" for p in cleaned[:5])
    log.info("%s %s -> 422 %s", request.method, request.url.path, summary)
    return JSONResponse({"detail": f"invalid request: {summary}", "errors": cleaned}, status_code=422)


class BodyLimitMiddleware:
    """Pure ASGI: 413 before reading when Content-Length is too big, or once the streamed bytes pass the limit;
    408 when the whole body has not arrived within timeout_s (a slow client holds no handler meanwhile)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is None:
            await send_json(send, 400, {"detail": "invalid Content-Length header"})
            return
        if declared > self.max_body_bytes:
            await self._too_large(send, scope, declared)
            return
        try:
            body, outcome = await asyncio.wait_for(_read_body(receive, self.max_body_bytes), self.timeout_s)
        except asyncio.TimeoutError:
            log.info("%s %s -> 408 (body not received within %.0f s)", scope["method"], scope["path"], self.timeout_s)
            detail = f"the request body did not arrive within BODY_TIMEOUT_S={self.timeout_s:g} s"
            await send_json(send, 408, {"detail": detail})
            return
        if outcome == "too_large":
            await self._too_large(send, scope, len(body))
        elif outcome == "complete":
            await self.app(scope, _replay(body, receive), send)

    async def _too_large(self, send: Send, scope: Scope, size: int) -> None:
        log.info("%s %s -> 413 (%d B or more; limit %d)", scope["method"], scope["path"], size, self.max_body_bytes)
        detail = f"request body is larger than MAX_BODY_BYTES={self.max_body_bytes} bytes"
        await send_json(send, 413, {"detail": detail})


class InternalErrorMiddleware:
    """Pure ASGI: an unexpected exception becomes 500 {"detail": "internal error"}, its traceback logged here only.

    It also logs method, path, status, body size and time at DEBUG: never headers, query strings or bodies.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: list[int] = []

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("%s %s failed", scope["method"], scope["path"])
            if status:  # the response has started: nothing sane can be sent any more
                raise
            status.append(500)
            await send_json(send, 500, {"detail": "internal error"})
        ms = (time.perf_counter() - started) * 1000
        size = _content_length(scope) or 0
        log.debug("%s %s -> %d (%d B in, %.1f ms)", scope["method"], scope["path"], status[0], size, ms)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the already-read body once, then defers to the server (disconnects)."""
    pending = [body]

    async def replay() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replay


def _content_length(scope: Scope) -> int | None:
    """The declared body size (0 when absent); None when the header is not a number."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return 0


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, str]:
    """(body, "complete"), or what was read with "too_large" as soon as it passes `limit`, or "disconnected"."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), "disconnected"
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > limit:
            return b"".join(chunks), "too_large"
        if not message.get("more_body", False):
            return b"".join(chunks), "complete"
