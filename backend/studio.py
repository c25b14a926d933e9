"""Calls from the backend to the Label Studio API, through label-studio-sdk 2.1.x.

The SDK is imported when a client is made, not with this module: importing it costs about a second (pandas and
the label interface), which the API process, which never calls Label Studio, does not pay at start-up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from backend.errors import LabelStudioAuthError, LabelStudioError, LabelStudioUnavailable, ProjectNotFound
from backend.redaction import mask_url

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio

log = logging.getLogger(__name__)

WEBHOOK_SECRET_HEADER = "X-Webhook-Secret"


@dataclass(frozen=True)
class Connection:
    """What `connect_backend` left in Label Studio."""

    ml_backend_id: int
    state: str
    error: str | None
    webhook_id: int | None
    webhook_secured: bool


def studio_client(url: str, api_key: str) -> LabelStudio:
    """An SDK client; a personal access token (JWT) is refreshed by the SDK, a legacy token is sent as Token."""
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=url, api_key=api_key, timeout=120)


def connect_backend(
    client: LabelStudio,
    project_id: int,
    backend_url: str,
    *,
    title: str = "sentiment-backend",
    basic_auth: tuple[str, str] | None = None,
    webhook_secret: str | None = None,
) -> Connection:
    """Add this backend to a project (Basic auth when given) and put the secret header on its auto-created webhook."""
    auth: dict[str, Any] = {"auth_method": "NONE"}
    if basic_auth:
        auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": basic_auth[0], "basic_auth_pass": basic_auth[1]}
    ml = client.ml.create(project=project_id, url=backend_url, title=title, is_interactive=False, **auth)
    webhook_id = _find_webhook(client, project_id, backend_url)
    if webhook_id is not None and webhook_secret:
        headers = {WEBHOOK_SECRET_HEADER: webhook_secret}
        client.webhooks.update(webhook_id, url=_webhook_url(backend_url), headers=headers)
    return Connection(
        ml_backend_id=int(ml.id or 0),
        state=str(ml.state or ""),
        error=ml.error_message,
        webhook_id=webhook_id,
        webhook_secured=bool(webhook_id is not None and webhook_secret),
    )


def retrieve_predictions(client: LabelStudio, project_id: int) -> None:
    """Run Label Studio's own "Retrieve predictions" action on every task of a project (one synchronous call)."""
    everything = {"all": True, "excluded": []}
    client.actions.create(id="retrieve_tasks_predictions", project=project_id, selected_items=everything)


def select_model_version(client: LabelStudio, project_id: int, version: str) -> None:
    """Make the project show (score column, pre-fill, uncertainty sampling) predictions of this model version."""
    client.projects.update(id=project_id, model_version=version)


def _webhook_url(backend_url: str) -> str:
    return backend_url.rstrip("/") + "/webhook"


def _find_webhook(client: LabelStudio, project_id: int, backend_url: str) -> int | None:
    target = _webhook_url(backend_url)
    for hook in client.webhooks.list(project=str(project_id)):
        if (hook.url or "").rstrip("/") == target:
            return int(hook.id) if hook.id is not None else None
    log.warning("no webhook for %s in project %s: annotation events will not reach the backend", target, project_id)
    return None


@dataclass(frozen=True)
class ProjectInfo:
    """What a pre-labeling run needs to know of a project."""

    id: int
    title: str
    label_config: str
    model_version: str


@dataclass(frozen=True)
class TaskPredictions:
    """One task as a chunk sees it: its data and the (id, model_version) of every prediction it holds."""

    id: int
    data: dict[str, Any]
    predictions: tuple[tuple[int, str], ...]

    def prediction_ids(self, model_version: str) -> list[int]:
        """Ids of this task's predictions of one model version, lowest first."""
        return sorted(pid for pid, version in self.predictions if version == model_version)


class StudioClient:
    """The Label Studio API calls of bulk pre-labeling, with every failure mapped to a LabelStudioError.

    5xx, 429, timeouts and connection errors become LabelStudioUnavailable (retryable); 401/403 become
    LabelStudioAuthError; a missing project becomes ProjectNotFound. Messages never carry the token.
    """

    def __init__(self, client: LabelStudio) -> None:
        self.client = client

    def project(self, project_id: int) -> ProjectInfo:
        """The project's title, label config and selected model_version."""
        with _mapped(f"reading project {project_id}", project_id=project_id):
            p = self.client.projects.get(id=project_id)
        return ProjectInfo(
            id=project_id, title=str(p.title or ""), label_config=str(p.label_config or ""),
            model_version=str(p.model_version or ""),
        )

    def task_versions(
        self, project_id: int, page_size: int = 1000, *, unlabeled_only: bool = False
    ) -> Iterator[tuple[int, frozenset[str]]]:
        """(task id, the model versions of its predictions) for every task of the project (with unlabeled_only,
        every task without an annotation), page by page."""
        page, seen = 1, 0
        include = "id,predictions_model_versions" + (",is_labeled" if unlabeled_only else "")
        while True:
            params = {"fields": "all", "include": include, "page": page, "page_size": page_size}
            body = self._get("api/tasks", {"project": project_id, **params}, f"listing tasks of project {project_id}")
            tasks = body.get("tasks") or []
            for task in tasks:
                if unlabeled_only and task.get("is_labeled"):
                    continue
                versions = str(task.get("predictions_model_versions") or "")
                yield int(task["id"]), frozenset(v.strip() for v in versions.split(",") if v.strip())
            seen += len(tasks)
            # asking for a page past the end answers 404 "Invalid page.": stop on the total instead
            if not tasks or seen >= int(body.get("total") or 0):
                return
            page += 1

    def tasks(self, project_id: int, task_ids: Sequence[int], *, with_data: bool = True) -> list[TaskPredictions]:
        """The given tasks with their predictions and (with_data) their data; tasks deleted meanwhile are absent.
        Without data Label Studio serialises less: a chunk's verify needs only the predictions."""
        query = json.dumps({"selectedItems": {"all": False, "included": list(task_ids)}})
        include = "id,data,predictions" if with_data else "id,predictions"
        params = {"project": project_id, "fields": "all", "include": include, "query": query,
                  "page_size": max(1, len(task_ids))}
        body = self._get("api/tasks", params, f"reading {len(task_ids)} tasks of project {project_id}")
        return [_task_predictions(t) for t in body.get("tasks") or []]

    def export(self, project_id: int) -> list[dict[str, Any]]:
        """Every annotated task of the project as Label Studio's JSON export (annotations and predictions inline)."""
        what = f"exporting project {project_id}"
        with _mapped(what, project_id=project_id):
            raw = b"".join(self.client.projects.exports.download_sync(id=project_id, export_type="JSON"))
            tasks = json.loads(raw) if raw.strip() else []
        if not isinstance(tasks, list):
            raise LabelStudioUnavailable(f"Label Studio sent an export that is not a list of tasks while {what}")
        return [t for t in tasks if isinstance(t, dict)]

    def import_predictions(self, project_id: int, predictions: Sequence[dict[str, Any]]) -> int:
        """POST /api/projects/{id}/import/predictions in one request; the number Label Studio says it created."""
        with _mapped(f"writing {len(predictions)} predictions to project {project_id}", project_id=project_id):
            reply = self.client.projects.import_predictions(id=project_id, request=list(predictions))  # type: ignore[arg-type]
        return int(getattr(reply, "created", 0) or 0)

    def delete_prediction(self, prediction_id: int) -> None:
        """Delete one prediction; one that is already gone counts as deleted."""
        try:
            with _mapped(f"deleting prediction {prediction_id}"):
                self.client.predictions.delete(id=prediction_id)
        except LabelStudioError as exc:
            if exc.http_status != 404:
                raise

    def select_model_version(self, project_id: int, version: str) -> None:
        """Make the project's score column, pre-fill and uncertainty sampling use this model version."""
        with _mapped(f"selecting model version on project {project_id}", project_id=project_id):
            self.client.projects.update(id=project_id, model_version=version)

    def views(self, project_id: int) -> list[dict[str, Any]]:
        """The project's saved Data Manager tabs: id and data (title, filters, ordering, ...)."""
        found: Any = self._get("api/dm/views", {"project": project_id}, f"listing the tabs of project {project_id}")
        return [{"id": int(v["id"]), "data": dict(v.get("data") or {})} for v in found if isinstance(v, dict)]

    def create_view(self, project_id: int, data: dict[str, Any]) -> int:
        """A new saved tab in the project; its id."""
        with _mapped(f"creating a tab in project {project_id}", project_id=project_id):
            view = self.client.views.create(project=project_id, data=data)
        return int(view.id or 0)

    def update_view(self, view_id: int, project_id: int, data: dict[str, Any]) -> None:
        """Replace a saved tab's data."""
        with _mapped(f"updating tab {view_id} of project {project_id}", project_id=project_id):
            self.client.views.update(id=str(view_id), project=project_id, data=data)

    def _get(self, path: str, params: dict[str, Any], what: str) -> Any:
        """The JSON Label Studio answers a GET with (exact, not through the SDK's models)."""
        wrapper = self.client._client_wrapper  # the SDK's authenticated httpx client (refreshes a PAT)
        with _mapped(what, project_id=params.get("project")):
            reply = wrapper.httpx_client.request(path, method="GET", params=params)
            if reply.status_code >= 400:
                from label_studio_sdk.core.api_error import ApiError

                raise ApiError(status_code=reply.status_code, body=_short_body(reply))
            return reply.json()


def studio_for(url: str, api_key: str | None, timeout_s: float = 60.0) -> StudioClient:
    """A StudioClient; no token is a LabelStudioAuthError naming the setting, raised before any call."""
    if not api_key:
        raise LabelStudioAuthError(
            "LABEL_STUDIO_API_KEY is not set on the worker: create a personal access token in Label Studio "
            "(Account & Settings) and set it"
        )
    from label_studio_sdk import LabelStudio

    return StudioClient(LabelStudio(base_url=url, api_key=api_key, timeout=timeout_s))


@contextmanager
def _mapped(what: str, *, project_id: Any = None) -> Iterator[None]:
    """Turn SDK and transport exceptions into LabelStudioError subclasses with one readable message."""
    from label_studio_sdk.core.api_error import ApiError  # a client exists, so the SDK is loaded already

    try:
        yield
    except ApiError as exc:
        status = int(exc.status_code or 0)
        detail = _detail(exc.body)
        message = f"Label Studio refused {what}: HTTP {status} {detail}".rstrip()
        if status in (401, 403):
            raise LabelStudioAuthError(
                f"{message} (check LABEL_STUDIO_API_KEY: a personal access token of a user in the project's "
                "organization)"
            ) from None
        if status == 404 and project_id is not None and "project" in detail.lower():
            raise ProjectNotFound(f"Label Studio has no project {project_id}") from None
        if status == 429 or status >= 500:
            raise LabelStudioUnavailable(message, http_status=status) from None
        raise LabelStudioError(message, http_status=status) from None
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        raise LabelStudioUnavailable(f"Label Studio unreachable while {what}: {type(exc).__name__}") from None
    except ValueError as exc:  # a 2xx that is not JSON: a proxy page, a truncated reply
        reason = mask_url(str(exc))
        raise LabelStudioUnavailable(f"Label Studio sent an unreadable reply while {what}: {reason}") from None


def _detail(body: Any) -> str:
    """Label Studio's reason, short, with any URL credentials or token query values masked."""
    if isinstance(body, dict):
        return mask_url(str(body.get("detail") or body.get("message") or "")[:300])
    return mask_url(str(body or "")[:300])


def _short_body(reply: httpx.Response) -> Any:
    try:
        return reply.json()
    except ValueError:
        return reply.text[:300]


def _task_predictions(task: dict[str, Any]) -> TaskPredictions:
    found = []
    for p in task.get("predictions") or []:
        if isinstance(p, dict) and isinstance(p.get("id"), int):
            found.append((int(p["id"]), str(p.get("model_version") or "")))
    data = task.get("data")
    return TaskPredictions(id=int(task["id"]), data=data if isinstance(data, dict) else {}, predictions=tuple(found))
