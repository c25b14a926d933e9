"""The model catalog: every stored version described for people (GET /models, `models list`), with its metrics,
promotion decision and how often annotators kept its pre-fills.

Acceptance counts are written per project by each training (MODEL_DIR/projects/<id>/acceptance.json, the latest
export's view) and summed over projects here. Cheap: no torch, no Label Studio.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from backend.calibration import record_of
from backend.model import engine
from backend.store import DEFAULT_LINE, ModelStore, ModelVersion, line_name


def acceptance_entry(kept: int, corrected: int) -> dict[str, Any]:
    """{"kept", "corrected", "acceptance_rate"} (rate None when nothing was pre-filled)."""
    total = kept + corrected
    return {"kept": kept, "corrected": corrected, "acceptance_rate": round(kept / total, 4) if total else None}


def record_acceptance(model_dir: Path | str, project: int, by_version: Mapping[str, Mapping[str, Any]]) -> None:
    """Keep a project's latest acceptance counts per model version (atomic replace)."""
    path = Path(model_dir) / "projects" / str(int(project)) / "acceptance.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"at": time.time(), "versions": by_version}), encoding="utf-8")
    os.replace(tmp, path)


def acceptance_by_version(model_dir: Path | str) -> dict[str, dict[str, Any]]:
    """Kept and corrected pre-fills per model version, summed over every project the store has trained for."""
    totals: dict[str, tuple[int, int]] = {}
    for path in sorted((Path(model_dir) / "projects").glob("*/acceptance.json")):
        try:
            versions = json.loads(path.read_text(encoding="utf-8")).get("versions", {})
        except (OSError, ValueError):
            continue
        for version, entry in versions.items():
            kept, corrected = totals.get(version, (0, 0))
            totals[version] = (kept + int(entry.get("kept", 0)), corrected + int(entry.get("corrected", 0)))
    return {version: acceptance_entry(kept, corrected) for version, (kept, corrected) in totals.items()}


def describe(version: ModelVersion, current: str | None, acceptance: Mapping[str, Any]) -> dict[str, Any]:
    """One version as GET /models and `models list --json` show it."""
    meta = version.meta
    keys = ("parent", "project", "data_hash", "counts", "metrics", "compared_with", "compared_metrics",
            "decision", "train_seconds")
    return {
        "version": version.version,
        "current": version.version == current,
        "created_at": version.created_at,
        "kind": meta.get("kind", "import"),
        "status": meta.get("status"),
        "source": public_source(meta.get("source")),
        **{key: meta.get(key) for key in keys},
        "calibration": shown_calibration(meta),
        "engine": engine.record_of(meta),
        "acceptance": acceptance.get(version.version),
        "collected": version.collected,
    }


def shown_calibration(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A version's calibration record, its own scored rows summarised (how many, which) instead of listed."""
    record = record_of(meta)
    own = record.get("own_rows")
    if isinstance(own, dict):
        record["own_rows"] = {"rows": len(own.get("scores") or []), "description": own.get("description")}
    return record


def public_source(source: Any) -> Any:
    """A version's `source` as shown: a hub id or description as stored, a filesystem path cut to its last part
    (meta.json keeps the full path for the operator; clients never see the server's directories)."""
    if not isinstance(source, str) or not _looks_like_path(source):
        return source
    return PureWindowsPath(source).name if "\\" in source else PurePosixPath(source).name


def _looks_like_path(text: str) -> bool:
    """True for absolute, home, relative and Windows paths; False for hub ids like `org/model`."""
    return text.startswith(("/", "~", ".")) or "\\" in text or (len(text) > 1 and text[1] == ":")


def catalog(store: ModelStore, project: int | None = None) -> dict[str, Any]:
    """Every version, oldest first; the line the project is served (none: the default line), its current version
    and latest changes; and every line's current version."""
    current = store.current_version(project)
    own = project is not None and store.has_line(project)
    acceptance = acceptance_by_version(store.root)
    return {
        "project": project,
        "line": line_name(project) if own else DEFAULT_LINE,
        "current": current,
        "lines": store.lines(),
        "models": [describe(v, current, acceptance) for v in store.list()],
        "history": store.history(project if own else None)[-50:],
        "prefill": _prefill(store, project, current),
    }


def _prefill(store: ModelStore, project: int | None, current: str | None) -> dict[str, Any] | None:
    """The project's stored pre-fill threshold for the version it is served (None: no project, or not assessed
    for this version yet)."""
    from backend import quality

    record = quality.load(store.root, project) if project is not None else None
    if not record or record.get("version") != current:
        return None
    prefill: dict[str, Any] | None = record.get("prefill")
    return prefill
