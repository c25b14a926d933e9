"""The model store over HTTP: every version with its metrics, decision and acceptance rate; promote and rollback.

Promote and rollback change what every annotator is served, so they need Basic auth to be configured (the auth
middleware then checks it on every request); without it they answer 403 saying so. A change is one atomic
rewrite of the store's CURRENT: this API process loads the new version in the background and swaps it in under
a lock, and every worker takes it for the next run, with no restart.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from backend.catalog import catalog
from backend.errors import ManagementDisabled
from backend.store import ModelStore

router = APIRouter()


class RollbackRequest(BaseModel):
    """POST /models/rollback: a version to go back to, or none for the previous current version."""

    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(default=None, description="default: the version current before the current one")


def _store(request: Request) -> ModelStore:
    store: ModelStore = request.app.state.backend.served.store
    return store


def _require_auth(request: Request) -> None:
    if not request.app.state.backend.settings.basic_auth_enabled:
        raise ManagementDisabled(
            "promote and rollback over HTTP need BASIC_AUTH_USER and BASIC_AUTH_PASS set on the backend "
            "(or use `sentiment-backend models promote|rollback` on the machine holding MODEL_DIR)"
        )


@router.get("/models")
async def models(request: Request) -> dict[str, Any]:
    """The store's versions with metadata, holdout metrics, promotion decision and acceptance rate."""
    return await run_in_threadpool(catalog, _store(request))


@router.post("/models/{version}/promote")
async def promote_version(version: str, request: Request) -> dict[str, Any]:
    """Make a stored version current (a rejected candidate included: this is the override)."""
    from backend.retraining import promote

    _require_auth(request)
    promoted = await run_in_threadpool(promote, _store(request), version, "promoted over HTTP")
    request.app.state.backend.served.refresh()
    return {"current": promoted.version}


@router.post("/models/rollback")
async def rollback_version(request: Request, body: RollbackRequest | None = None) -> dict[str, Any]:
    """Go back to a version (default: the one current before the current one)."""
    from backend.retraining import rollback

    _require_auth(request)
    restored = await run_in_threadpool(rollback, _store(request), body.version if body else None)
    request.app.state.backend.served.refresh()
    return {"current": restored.version}
