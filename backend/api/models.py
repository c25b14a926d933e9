"""The model store over HTTP: every version with its metrics, decision and acceptance rate; promote and rollback.

Promote and rollback change what every annotator is served: they are management routes (api/auth.py), so they
need Basic auth configured and presented; without it they answer 403 saying so. A change is one atomic
rewrite of the store's CURRENT: this API process loads the new version in the background and swaps it in under
a lock, and every worker takes it for the next run, with no restart.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from backend.api.auth import require_management
from backend.api.schemas import CurrentBody, ModelsBody, VersionId, error_responses
from backend.catalog import catalog
from backend.store import VERSION_PATTERN, ModelStore

router = APIRouter()


class RollbackRequest(BaseModel):
    """POST /models/rollback: a version to go back to, or none for the previous current version."""

    model_config = ConfigDict(extra="forbid")

    version: VersionId | None = Field(default=None, description="default: the version current before the current one")


def _store(request: Request) -> ModelStore:
    store: ModelStore = request.app.state.backend.served.store
    return store


MANAGEMENT = [Depends(require_management)]
VersionPath = Annotated[str, Path(pattern=VERSION_PATTERN, max_length=128)]


@router.get("/models", response_model=ModelsBody)
async def models(request: Request) -> dict[str, Any]:
    """The store's versions with metadata, holdout metrics, promotion decision and acceptance rate."""
    return await run_in_threadpool(catalog, _store(request))


@router.post("/models/{version}/promote", response_model=CurrentBody, dependencies=MANAGEMENT,
             responses=error_responses(403, 404, 422))
async def promote_version(version: VersionPath, request: Request) -> dict[str, Any]:
    """Make a stored version current (a rejected candidate included: this is the override)."""
    from backend.retraining import promote

    promoted = await run_in_threadpool(promote, _store(request), version, "promoted over HTTP")
    request.app.state.backend.served.refresh()
    return {"current": promoted.version}


@router.post("/models/rollback", response_model=CurrentBody, dependencies=MANAGEMENT,
             responses=error_responses(403, 404, 422))
async def rollback_version(request: Request, body: RollbackRequest | None = None) -> dict[str, Any]:
    """Go back to a version (default: the one current before the current one)."""
    from backend.retraining import rollback

    restored = await run_in_threadpool(rollback, _store(request), body.version if body else None)
    request.app.state.backend.served.refresh()
    return {"current": restored.version}
