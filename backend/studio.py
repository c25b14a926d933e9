"""Calls from the backend to the Label Studio API, through label-studio-sdk 2.1.x."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

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
