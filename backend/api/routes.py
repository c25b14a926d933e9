"""The five URLs Label Studio 1.23.2 calls: parse the request, call the domain, serialise the answer.

/health and /setup answer in milliseconds (Label Studio gives them 1 s and 3 s) and /webhook only records ids
(1 s, never retried). Inference runs on /predict's own bounded executor (api/inference.py), never in the
threadpool /setup and /webhook share, and label configs are parsed there too, off the event loop: so however
many predicts are queued, the other three keep answering in time.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from backend import quality
from backend.api.inference import PredictExecutor
from backend.api.jobs import start_training_run
from backend.api.schemas import (
    HealthBody,
    PredictBody,
    PredictRequest,
    SetupBody,
    SetupRequest,
    VersionsBody,
    WebhookBody,
    WebhookEvent,
    error_responses,
)
from backend.api.served import Classifier, ServedModel
from backend.config import Settings
from backend.errors import BackendError, InvalidRequest, PayloadTooLarge
from backend.events import Event, EventLog, event_from_webhook
from backend.labeling.results import build_prediction, task_ref, texts_from_tasks
from backend.labeling.spec import LabelingSpec, parse_spec
from backend.model.types import Prediction
from backend.triggers import AnnotationCounter, count_towards_training

log = logging.getLogger(__name__)

# the webhook actions later features turn into jobs; every other action is acknowledged and ignored
RECORDED_ACTIONS = frozenset(
    {
        "START_TRAINING",
        "ANNOTATION_CREATED",
        "ANNOTATION_UPDATED",
        "ANNOTATIONS_CREATED",
        "ANNOTATIONS_DELETED",
        "TASKS_CREATED",
    }
)


@dataclass(frozen=True)
class _Seen:
    label_config: str
    labels: tuple[str, ...]
    spec: LabelingSpec


class ProjectConfigs:
    """The label config /setup or /predict last saw per project id and its parsed spec: for a /predict that sends
    no config, and so that a project's next /predict finds its spec without a parse or a threadpool hop (the parse
    itself is cached by content in backend.labeling.spec). Thread-safe and bounded by total size (configs are at
    most MAX_LABEL_CONFIG_CHARS each), least recently seen dropped first."""

    def __init__(self, max_chars: int = 16 * 1024 * 1024) -> None:
        self._configs: OrderedDict[int, _Seen] = OrderedDict()
        self._max_chars = max_chars
        self._chars = 0
        self._lock = threading.Lock()

    def remember(self, project_id: int, label_config: str, labels: tuple[str, ...], spec: LabelingSpec) -> None:
        """Keep a project's config and its spec for these labels, evicting the least recently seen ones beyond the
        bound."""
        with self._lock:
            before = self._configs.pop(project_id, None)
            self._chars -= len(before.label_config) if before else 0
            self._configs[project_id] = _Seen(label_config, labels, spec)
            self._chars += len(label_config)
            while self._chars > self._max_chars and len(self._configs) > 1:
                self._chars -= len(self._configs.popitem(last=False)[1].label_config)

    def get(self, project_id: int | None) -> str | None:
        """The remembered config, or None."""
        seen = self._seen(project_id)
        return seen.label_config if seen else None

    def spec(self, project_id: int | None, label_config: str, labels: tuple[str, ...]) -> LabelingSpec | None:
        """The remembered spec when the project's config is this one and was parsed for these labels, else None."""
        seen = self._seen(project_id)
        if seen is None or seen.labels != labels or seen.label_config != label_config:
            return None
        return seen.spec

    def _seen(self, project_id: int | None) -> _Seen | None:
        if project_id is None:
            return None
        with self._lock:
            return self._configs.get(project_id)


@dataclass(frozen=True)
class BackendState:
    """Everything the handlers use, built once by create_app."""

    settings: Settings
    served: ServedModel
    events: EventLog
    projects: ProjectConfigs
    inference: PredictExecutor
    thresholds: quality.Thresholds


async def _state(request: Request) -> BackendState:  # async: FastAPI would run a plain def in the threadpool
    state: BackendState = request.app.state.backend
    return state


State = Annotated[BackendState, Depends(_state)]
router = APIRouter()


@router.get("/health", response_model=HealthBody, responses={503: {"model": HealthBody}})
@router.get("/", response_model=HealthBody, responses={503: {"model": HealthBody}})
async def health(state: State) -> JSONResponse:
    """200 {"status": "UP", "model_version"} once the default line's version is loaded; 503 LOADING or ERROR before
    (and ERROR while the default line's version fails to load). No model work."""
    served = state.served
    if not served.ready or served.error:
        served.refresh()  # a new default (or the retry delay passing) gets another load
    error = served.error
    if error:
        return JSONResponse({"status": "ERROR", "detail": error}, status_code=503)
    if served.ready:
        return JSONResponse({"status": "UP", "model_version": served.version})
    return JSONResponse({"status": "LOADING"}, status_code=503)


@router.post("/setup", response_model=SetupBody, responses=error_responses(400, 413, 422, 503))
async def setup(body: SetupRequest, state: State) -> dict[str, Any]:
    """Check the project's label config against its version's labels and return that model_version. Never loads."""
    version = state.served.version_for(body.project_id)
    labels = await run_in_threadpool(state.served.labels_of, version)
    await _project_spec(state, body.project_id, body.label_config, labels)
    return {"model_version": version}


@router.post("/predict", response_model=PredictBody, responses=error_responses(400, 413, 422, 503))
async def predict(body: PredictRequest, state: State) -> dict[str, Any]:
    """One prediction per task, in task order, all from one classifier.predict call and the project's version."""
    limits = state.settings
    if len(body.tasks) > limits.max_tasks_per_predict:
        raise PayloadTooLarge(
            f"{len(body.tasks)} tasks in one /predict; "
            f"the limit is MAX_TASKS_PER_PREDICT={limits.max_tasks_per_predict}"
        )
    model = await state.served.model_for(body.project_id)  # a version not loaded yet is awaited, off the loop
    label_config = _label_config(body, state)
    spec = await _project_spec(state, body.project_id, label_config, tuple(model.classifier.labels))
    texts = _checked_texts(body.tasks, spec, limits.max_text_chars)
    predictions = await state.inference.run(_predict_texts, model.classifier, texts, limits.max_tokens_per_predict)
    prefill_from = None  # PREFILL=all (the default) pre-fills every row: nothing to look up
    if limits.prefill == "confident":  # the project's threshold for this version, re-read at most once a second
        prefill_from = await _threshold(state, body.project_id, model.version)
    results = [build_prediction(pred, spec, model.version, prefill_from=prefill_from) for pred in predictions]
    return {"results": results, "model_version": model.version}


async def _project_spec(
    state: BackendState, project_id: int | None, label_config: str, labels: tuple[str, ...]
) -> LabelingSpec:
    """The project's spec as last parsed when its config and labels are unchanged (no hop); else parsed in the
    threadpool (cached by content) and, once it parsed, remembered for the project: bounded and valid."""
    spec = state.projects.spec(project_id, label_config, labels)
    if spec is None:
        spec = await run_in_threadpool(_spec, state, label_config, labels)
        if project_id is not None:
            state.projects.remember(project_id, label_config, labels, spec)
    return spec


async def _threshold(state: BackendState, project_id: int | None, version: str) -> float | None:
    """The pre-fill threshold: from memory while fresh, else read from the store in the threadpool."""
    fresh, threshold = state.thresholds.lookup(project_id, version)
    if fresh:
        return threshold
    return await run_in_threadpool(state.thresholds.read, project_id, version)


def _spec(state: BackendState, label_config: str, labels: tuple[str, ...]) -> LabelingSpec:
    return parse_spec(label_config, labels, max_chars=state.settings.max_label_config_chars)


@router.get("/versions", response_model=VersionsBody)
def versions(state: State) -> dict[str, Any]:
    """Every version in the store, oldest first, and the default line's current one."""
    return {"versions": [v.version for v in state.served.store.list()], "current": state.served.version}


@router.post("/webhook", response_model=WebhookBody, response_model_exclude_unset=True,
             responses=error_responses(422, 503))
async def webhook(body: WebhookEvent, state: State, request: Request) -> dict[str, Any]:
    """Acknowledge at once; the actions later features act on are recorded as ids (never the body)."""
    if body.action not in RECORDED_ACTIONS:
        return {"status": "ignored", "action": body.action}
    event = event_from_webhook(body.action, body.payload())
    recorded = await run_in_threadpool(state.events.record, event)
    status = "recorded" if recorded else "dropped"
    log.info("webhook %s project=%s: %s", event.action, event.project_id, status)
    reply: dict[str, Any] = {"status": status, "action": body.action}
    if not recorded:
        reply["detail"] = "the event log (Redis) is unavailable; the event was not kept"
    if body.action == "START_TRAINING":
        if event.project_id is None:
            raise InvalidRequest("START_TRAINING without a project id: expected {\"project\": {\"id\": N, ...}}")
        started = await run_in_threadpool(start_training_run, request, event.project_id, "START_TRAINING webhook")
        return {**reply, **started}
    if event.accepted and recorded and state.settings.train_after_annotations:
        counted = await run_in_threadpool(_count_towards_training, request, state, event)
        if counted is not None:
            reply["training"] = counted
    if body.action == "TASKS_CREATED" and state.settings.prelabel_on_tasks_created and event.project_id:
        reply["prelabel"] = await run_in_threadpool(_auto_prelabel, request, state, event.project_id)
    return reply


def _count_towards_training(request: Request, state: BackendState, event: Event) -> dict[str, Any] | None:
    """backend.triggers with this app's Redis and training starter (None: nothing in the event counts)."""
    settings = state.settings

    def counter() -> AnnotationCounter:
        return AnnotationCounter(request.app.state.jobs.redis(), settings.train_after_annotations)

    def start(project: int, reason: str) -> dict[str, Any]:
        return start_training_run(request, project, reason)

    return count_towards_training(counter, event, include_prediction_copies=settings.train_on_prediction_copies,
                                  start=start)


def _auto_prelabel(request: Request, state: BackendState, project_id: int) -> dict[str, Any]:
    """PRELABEL_ON_TASKS_CREATED: start (or extend) a pre-labeling run of the project; never fails the webhook."""
    from backend.jobs.queues import enqueue_prelabel

    version = state.served.store.current_version(project_id)
    if version is None:
        return {"error": "the model store is empty"}
    try:
        redis = request.app.state.jobs.redis()
        run, created = enqueue_prelabel(redis, project_id, version, state.settings.prelabel_chunk_size,
                                        again_if_busy=True)
    except BackendError as exc:
        log.warning("auto pre-label of project %s not started: %s", project_id, exc)
        return {"error": str(exc)}
    return {"job": run.id, "created": created}


def _label_config(body: PredictRequest, state: BackendState) -> str:
    """The request's label_config, else the one /setup saw for the project."""
    if body.label_config:
        return body.label_config
    remembered = state.projects.get(body.project_id)
    if remembered is None:
        raise InvalidRequest("no label_config in the request and no /setup seen for its project")
    return remembered


def _checked_texts(tasks: list[dict[str, Any]], spec: LabelingSpec, max_chars: int) -> list[str | None]:
    """Each task's text; None, with a warning naming the task, where it is missing or over MAX_TEXT_CHARS (that
    task gets an empty result, the others are predicted)."""
    texts = texts_from_tasks(tasks, spec.data_key)
    missing, too_long = [], []
    for index, (task, text) in enumerate(zip(tasks, texts, strict=True)):
        if text is None:
            missing.append(task_ref(task, index))
        elif len(text) > max_chars:
            too_long.append(f"{task_ref(task, index)} ({len(text)} characters)")
            texts[index] = None
    if missing:
        log.warning("%d task(s) without a text in data[%r], left unpredicted: %s", len(missing), spec.data_key,
                    _shown(missing))
    if too_long:
        log.warning("%d task(s) over MAX_TEXT_CHARS=%d, left unpredicted: %s", len(too_long), max_chars,
                    _shown(too_long))
    return texts


def _shown(refs: list[str], most: int = 20) -> str:
    return ", ".join(refs[:most]) + (f" and {len(refs) - most} more" if len(refs) > most else "")


def _predict_texts(classifier: Classifier, texts: list[str | None], max_tokens: int) -> list[Prediction | None]:
    """One batched classifier.predict over the usable texts, spread back to task positions (None elsewhere)."""
    usable = [(i, text) for i, text in enumerate(texts) if text is not None]
    found = classifier.predict([text for _, text in usable], max_tokens=max_tokens) if usable else []
    if len(found) != len(usable):
        raise RuntimeError(f"classifier returned {len(found)} predictions for {len(usable)} texts")
    out: list[Prediction | None] = [None] * len(texts)
    for (i, _), pred in zip(usable, found, strict=True):
        out[i] = pred
    return out
