"""The review queues the backend keeps inside Label Studio: saved Data Manager tabs, refreshed after each
assessment (so after each bulk run and each training), no custom UI.

- "Uncertain": unlabeled tasks whose prediction score is under the project's pre-fill threshold, lowest first
  (without a threshold yet: every unlabeled task, lowest score first, and the title says so);
- "Likely label errors": the tasks of the stored likely label errors (backend.quality), by annotation id;
- "Audit sample": a seeded random ~2 % (at least one) of the annotations whose pre-fill was accepted unchanged.

Label Studio 1.23 has no filter for "this list of tasks", but it has one for annotation ids (`annotations_ids`
contains "1,2,3" becomes an id-in-list filter), which is what the last two tabs mean anyway. Ours carry a marker
in their data (`sentiment_backend`): a refresh updates only tabs with the marker, never a tab a person made,
and one a person deleted comes back at the next refresh.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

from backend.studio import StudioClient

log = logging.getLogger(__name__)

MARKER = "sentiment_backend"
UNCERTAIN, ERRORS, AUDIT = "Uncertain", "Likely label errors", "Audit sample"
AUDIT_SHARE = 0.02
NOTHING = "0"  # an annotation id no task has: an empty tab, rather than an unfiltered one


def _filter(name: str, operator: str, kind: str, value: Any) -> dict[str, Any]:
    return {"filter": f"filter:tasks:{name}", "operator": operator, "type": kind, "value": value}


def _annotation_ids(ids: Sequence[int]) -> dict[str, Any]:
    listed = ",".join(str(int(i)) for i in ids) or NOTHING
    return _filter("annotations_ids", "contains", "String", listed)


def audit_sample(kept_annotation_ids: Sequence[int], *, seed: int) -> list[int]:
    """A seeded random ~2 % (at least one, when there is any) of the annotations that kept our pre-fill."""
    ids = sorted(set(kept_annotation_ids))
    if not ids:
        return []
    size = max(1, round(AUDIT_SHARE * len(ids)))
    return sorted(random.Random(seed).sample(ids, size))


def tab_specs(
    threshold: float | None, error_annotation_ids: Sequence[int], audit_annotation_ids: Sequence[int], version: str
) -> list[dict[str, Any]]:
    """The three tabs' view data (title, filters, ordering, marker) for a project."""
    unlabeled = _filter("total_annotations", "equal", "Number", 0)
    uncertain = [unlabeled] if threshold is None else [
        unlabeled, _filter("predictions_score", "less", "Number", threshold)]
    title = UNCERTAIN if threshold is not None else f"{UNCERTAIN} (no threshold yet)"

    def view(name: str, items: list[dict[str, Any]], ordering: list[str], shown: str) -> dict[str, Any]:
        return {"title": shown, "filters": {"conjunction": "and", "items": items}, "ordering": ordering,
                MARKER: {"tab": name, "version": version}}

    return [
        view(UNCERTAIN, uncertain, ["tasks:predictions_score"], title),
        view(ERRORS, [_annotation_ids(error_annotation_ids)], ["tasks:id"], ERRORS),
        view(AUDIT, [_annotation_ids(audit_annotation_ids)], ["tasks:id"], AUDIT),
    ]


def refresh(studio: StudioClient, project: int, specs: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Create or update our tabs in the project (matched by marker, never by title; unchanged ones are not written);
    what happened to each."""
    ours: dict[str, dict[str, Any]] = {}
    for existing in studio.views(project):
        marker = (existing.get("data") or {}).get(MARKER)
        if isinstance(marker, dict) and marker.get("tab"):
            ours[str(marker["tab"])] = existing
    done = {}
    for spec in specs:
        name = spec[MARKER]["tab"]
        if name in ours and all(ours[name]["data"].get(key) == value for key, value in spec.items()):
            done[name] = "unchanged"  # no write: a refresh with nothing new leaves Label Studio alone
        elif name in ours:
            studio.update_view(ours[name]["id"], project, spec)
            done[name] = "updated"
        else:
            studio.create_view(project, spec)
            done[name] = "created"
    log.info("project %s: review tabs %s", project, ", ".join(f"{k} {v}" for k, v in done.items()))
    return done
