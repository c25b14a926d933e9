"""The model store over HTTP: versions with metrics, decision and acceptance rate; each project's line; promote
and rollback.

Every route takes a project: `GET /models?project=ID` describes the line that project is served,
`POST /models/{version}/promote {"project": ID}` and `POST /models/rollback {"project": ID}` move that project's
own line only, and `{"default": true}` instead moves the default line (every project without a line of its own)
— an explicit choice, never implied by an empty body. A project's change then sets its model_version in Label
Studio (when LABEL_STUDIO_API_KEY is configured) so its score column follows. Promote and rollback are
management routes (api/auth.py): Basic auth configured and presented, else 403. The API loads the new version
on the project's next /predict; workers take it for the next run; nobody restarts.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from backend.api.auth import require_management
from backend.api.schemas import MAX_ID, CurrentBody, ModelsBody, VersionId, error_responses
from backend.catalog import catalog
from backend.config import Settings
from backend.lines import follow_in_studio, promote, rollback
from backend.store import VERSION_PATTERN, ModelStore
from backend.studio import StudioClient, studio_for

router = APIRouter()


class LineChoice(BaseModel):
    """Which line a change moves: a project's own, or the default line; exactly one."""

    model_config = ConfigDict(extra="forbid")

    project: int | None = Field(default=None, ge=1, le=MAX_ID, description="Label Studio project id")
    default: bool = Field(default=False, description="move the default line (every project without its own line)")

    @model_validator(mode="after")
    def _one_line(self) -> LineChoice:
        if (self.project is None) == (not self.default):
            raise ValueError('name the line: {"project": ID} for a project, or {"default": true} for the default')
        return self


class PromoteRequest(LineChoice):
    """POST /models/{version}/promote."""


class RollbackRequest(LineChoice):
    """POST /models/rollback: a version to go back to, or none for the line's previous version."""

    version: VersionId | None = Field(default=None, description="default: the version current before the current one")


def _store(request: Request) -> ModelStore:
    store: ModelStore = request.app.state.backend.served.store
    return store


def _studio(request: Request) -> StudioClient:
    settings: Settings = request.app.state.backend.settings
    key = settings.label_studio_api_key.get_secret_value() if settings.label_studio_api_key else None
    return studio_for(settings.label_studio_url, key, settings.label_studio_timeout_s)


def _moved(request: Request, project: int | None, version: str) -> dict[str, Any]:
    """The answer to a change: what the line (and so the project) is served now, and whether Label Studio follows."""
    reply: dict[str, Any] = {"current": version, "line": "default" if project is None else f"project-{project}"}
    if project is None:
        request.app.state.backend.served.refresh()  # the default line: /health reports it once loaded
    else:
        reply["project"] = project
        reply["line"] = reply["line"] if _store(request).has_line(project) else "default"
        reply["label_studio"] = follow_in_studio(lambda: _studio(request), project, version)
    return reply


MANAGEMENT = [Depends(require_management)]
VersionPath = Annotated[str, Path(pattern=VERSION_PATTERN, max_length=128)]


@router.get("/models", response_model=ModelsBody, responses=error_responses(422))
async def models(
    request: Request, project: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None
) -> dict[str, Any]:
    """The store's versions with metadata, holdout metrics, promotion decision and acceptance rate; `current` and
    `history` are those of the project's line (no project: the default line); `lines` lists every line."""
    return await run_in_threadpool(catalog, _store(request), project)


@router.post("/models/{version}/promote", response_model=CurrentBody, dependencies=MANAGEMENT,
             responses=error_responses(403, 404, 422))
async def promote_version(version: VersionPath, body: PromoteRequest, request: Request) -> dict[str, Any]:
    """Make a stored version current on the project's line, or the default line (a rejected candidate included:
    this is the override)."""
    promoted = await run_in_threadpool(
        lambda: promote(_store(request), version, "promoted over HTTP", project=body.project)
    )
    return await run_in_threadpool(_moved, request, body.project, promoted.version)


@router.post("/models/rollback", response_model=CurrentBody, dependencies=MANAGEMENT,
             responses=error_responses(403, 404, 409, 422))
async def rollback_version(body: RollbackRequest, request: Request) -> dict[str, Any]:
    """Go back on a line (default: to the version current before the current one; a project past its first
    promotion returns to the default line)."""
    restored = await run_in_threadpool(lambda: rollback(_store(request), body.version, project=body.project))
    return await run_in_threadpool(_moved, request, body.project, restored.version)


@router.get("/projects/{project}/label-errors", responses=error_responses(422))
async def project_label_errors(
    request: Request, project: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> dict[str, Any]:
    """The project's likely label errors (lowest probability of the given label first) and pre-fill threshold, as
    the worker stored them after its last training or bulk run; `assessed: false` before the first. No inference."""
    from backend import quality

    return await run_in_threadpool(quality.report, _store(request).root, project)


# the page holds annotators' text and version strings: escaped, but a browser is still told to run nothing
REPORT_HEADERS = {"Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'"}


@router.get("/models/{version}/report", response_class=Response, responses={
    200: {"content": {"text/html": {}}, "description": "one self-contained HTML page"}, **error_responses(404, 422)})
async def model_report(
    request: Request, version: VersionPath, project: Annotated[int, Query(ge=1, le=MAX_ID)]
) -> HTMLResponse:
    """The evaluation report of a version for a project (one self-contained HTML page) as the worker stored it
    after its last training or bulk run; 404 when none is stored. Never renders."""
    from backend import report

    page = await run_in_threadpool(report.stored, _store(request).root, project, version)
    return HTMLResponse(page, headers=REPORT_HEADERS)
