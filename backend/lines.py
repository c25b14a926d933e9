"""Moving model lines by hand (promote, rollback) and making Label Studio follow what a project is served.

A project's promotion makes or moves its own line; a promotion without a project moves the default line, which
every project without a line of its own follows (its own explicit act, never a side effect of a training). A
project rolled back past its first promotion returns to the default line. See backend/store.py for the layout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from backend.errors import BackendError, LabelStudioError, NothingToRollBack
from backend.store import ModelStore, ModelVersion
from backend.studio import StudioClient

log = logging.getLogger(__name__)

PENDING = "pending: the project has no predictions of this version yet; its next pre-labeling run selects it"


def promote(
    store: ModelStore, version: str, reason: str = "promoted by hand", *, project: int | None = None
) -> ModelVersion:
    """Make any stored version current on a project's line (its first promotion makes the line) or, with no
    project, on the default line; the workers and the API pick it up without a restart."""
    promoted = store.set_current(version, reason=reason, project=project)
    if promoted.meta.get("status") in ("candidate", "rejected"):
        store.update_meta(version, status="promoted")
    return promoted


def rollback(store: ModelStore, version: str | None = None, *, project: int | None = None) -> ModelVersion:
    """Make `version` current again on the line, or without one the version the line had before the current one
    was promoted (so repeated rollbacks walk down the line); a project rolled back past its first promotion
    returns to the default line. What the project is served now."""
    if project is not None and not store.has_line(project):
        raise NothingToRollBack(f"project {project} is served the default line: there is nothing of its own to roll "
                                "back (roll back the default line instead)")
    was = store.current_version(project)
    if version:
        return store.set_current(version, reason=f"rollback from {was}", project=project, rollback=True)
    target = store.previous_version(project)
    if target:
        return store.set_current(target, reason=f"rollback from {was}", project=project, rollback=True)
    if project is None:
        raise NothingToRollBack("nothing to roll back to: the default line's history has no earlier version")
    store.leave_line(project, reason=f"rollback from {was} past the project's first promotion: back to the default")
    served = store.current(project)
    if served is None:
        raise NothingToRollBack("the default line is empty")
    return served


def follow_in_studio(studio: Callable[[], StudioClient], project: int, version: str) -> str:
    """Set the project's model_version in Label Studio to the version it is served now, so its score column,
    pre-fill and uncertainty sampling follow; what happened, in a few words (a failure never undoes the change).

    Label Studio 1.23 refuses (HTTP 400) a model_version the project has no prediction of yet: that is PENDING,
    and the project's next pre-labeling run (PRELABEL_AFTER_PROMOTION starts one) selects it when it finishes."""
    try:
        studio().select_model_version(project, version)
    except BackendError as exc:  # LabelStudioError and its kinds, a missing token (LabelStudioAuthError) included
        if isinstance(exc, LabelStudioError) and exc.http_status == 400:  # a version with no predictions yet
            log.info("project %s: Label Studio's model_version follows %s once the project has predictions of it",
                     project, version)
            return PENDING
        log.warning("project %s: Label Studio's model_version not set to %s: %s", project, version, exc)
        return f"not set: {type(exc).__name__}"
    log.info("project %s: Label Studio's model_version set to %s", project, version)
    return "set"
