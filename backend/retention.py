"""Retention: free the weights of old rejected training candidates, never those of a version a line may need.

Every training publishes a full checkpoint, rejected candidates included. `collect` keeps, per project, the
newest `keep_rejected` rejected versions (by created_at), and on top of those every *protected* version: the
current version of every line, and the `version` and `previous` of the last HISTORY_PROTECTED entries of every
line (a project line whose CURRENT a rollback removed included: its HISTORY stays). The other rejected versions
lose their checkpoint directory; their meta.json stays (marked collected_at, bytes_freed), so history, reports
and lineage stay readable and `ModelVersion.collected` is true.

Deciding and taking the checkpoint away happen under the store lock that every pointer change holds, so a line
never moves onto a version while it is being collected. The checkpoint is first renamed aside inside its version
directory (one atomic rename: the version is collected from then on, never half-deleted yet loadable-looking),
then removed; a crash in between leaves only the aside directory, which the next run removes.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from backend.store import ModelStore, ModelVersion, line_name

log = logging.getLogger(__name__)

# how many of a line's newest pointer changes stay reachable by a rollback
HISTORY_PROTECTED = 3
_ASIDE = ".collecting"


@dataclass(frozen=True)
class Collected:
    """A version whose weights were removed (or would be, in a dry run)."""

    version: str
    project: int | None
    created_at: str
    bytes: int


@dataclass(frozen=True)
class Kept:
    """A version that keeps its weights, and why."""

    version: str
    reason: str


@dataclass(frozen=True)
class RetentionReport:
    """What one run collected (a dry run: would collect) and kept."""

    dry_run: bool
    keep_rejected: int
    collected: tuple[Collected, ...]
    kept: tuple[Kept, ...]

    @property
    def bytes_freed(self) -> int:
        """Bytes of weights removed (a dry run: that would be removed)."""
        return sum(c.bytes for c in self.collected)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: the fields plus bytes_freed."""
        return {**asdict(self), "bytes_freed": self.bytes_freed}


def collect(
    store: ModelStore, keep_rejected: int, *, dry_run: bool = False, keep: Collection[str] = ()
) -> RetentionReport:
    """Remove the weights of the rejected versions retention does not keep (see the module docstring); `keep`
    names more versions to spare (TRAIN_BASE). A dry run removes nothing and reports the same set."""
    if not store.versions_dir.is_dir():
        return RetentionReport(dry_run, keep_rejected, (), ())
    with store._locked():  # the pointer changes' lock: no line moves while this decides and sets aside
        leftovers = _finish_interrupted(store, dry_run)
        protected = protected_versions(store)
        for name in keep:
            protected.setdefault(name, []).append("named to keep")
        doomed, kept = _plan(store.list(), protected, keep_rejected)
        collected = [_describe(v) for v in doomed]
        if not dry_run:
            for version, record in zip(doomed, collected, strict=True):
                _set_aside(store, version, record.bytes)
    report = RetentionReport(dry_run, keep_rejected, tuple(leftovers + collected), tuple(kept))
    if not dry_run:
        for version in doomed:
            shutil.rmtree(_aside(version), ignore_errors=True)
        log.info("retention: weights of %d version(s) removed, %d bytes freed", len(report.collected),
                 report.bytes_freed)
    return report


def protected_versions(store: ModelStore) -> dict[str, list[str]]:
    """Every version a line names or could roll back to → why (its lines and their last changes)."""
    protected: dict[str, list[str]] = {}
    for line, version in store.lines().items():
        protected.setdefault(version, []).append(f"current on {line}")
    for line, project in _all_lines(store):
        for change in store.history(project)[-HISTORY_PROTECTED:]:
            for key in ("version", "previous"):
                if change.get(key):
                    protected.setdefault(str(change[key]), []).append(f"in the last changes of {line}")
    return protected


def _all_lines(store: ModelStore) -> list[tuple[str, int | None]]:
    """Every line directory (with or without CURRENT) as (name, project); names the store never makes skipped."""
    if not store.lines_dir.is_dir():
        return []
    found: list[tuple[str, int | None]] = []
    for path in sorted(store.lines_dir.iterdir()):
        suffix = path.name.rpartition("-")[2]
        project = int(suffix) if suffix.isdigit() else None
        if path.name == line_name(project):
            found.append((path.name, project))
    return found


def _plan(
    versions: list[ModelVersion], protected: dict[str, list[str]], keep_rejected: int
) -> tuple[list[ModelVersion], list[Kept]]:
    """(the versions to collect, oldest first; every other version with weights and why it keeps them)."""
    newest = _newest_rejected(versions, keep_rejected)
    doomed, kept = [], []
    for version in versions:
        if version.collected:
            continue
        reasons = list(dict.fromkeys(protected.get(version.version, [])))
        if version.meta.get("status") != "rejected":
            reasons.insert(0, f"{version.meta.get('status') or version.meta.get('kind') or 'import'}, not rejected")
        elif version.version in newest:
            reasons.insert(0, f"among the newest {keep_rejected} rejected of project {version.project}")
        if reasons:
            kept.append(Kept(version.version, "; ".join(reasons)))
        else:
            doomed.append(version)
    return doomed, kept


def _newest_rejected(versions: list[ModelVersion], keep_rejected: int) -> set[str]:
    """The newest `keep_rejected` rejected versions of each project (collected ones count: they were newest)."""
    by_project: dict[int | None, list[ModelVersion]] = {}
    for version in versions:
        if version.meta.get("status") == "rejected":
            by_project.setdefault(version.project, []).append(version)
    newest: set[str] = set()
    for rejected in by_project.values():
        rejected.sort(key=lambda v: (v.created_at, v.version))
        newest.update(v.version for v in rejected[len(rejected) - keep_rejected:] if keep_rejected)
    return newest


def _describe(version: ModelVersion, path: Path | None = None) -> Collected:
    return Collected(version.version, version.project, version.created_at, _size(path or version.path))


def _set_aside(store: ModelStore, version: ModelVersion, size: int) -> None:
    """Make the version collected in one rename (under the lock), then say so in its meta.json."""
    os.replace(version.path, _aside(version))
    store.update_meta(version.version, collected_at=_now(), bytes_freed=size)


def _finish_interrupted(store: ModelStore, dry_run: bool) -> list[Collected]:
    """Remove what an interrupted run set aside (those versions are collected already); what that frees."""
    finished = []
    for version in store.list():
        aside = _aside(version)
        if aside.is_dir():
            record = _describe(version, aside)
            finished.append(record)
            if dry_run:
                continue
            if "collected_at" not in version.meta:
                store.update_meta(version.version, collected_at=_now(), bytes_freed=record.bytes)
            shutil.rmtree(aside, ignore_errors=True)
    return finished


def _aside(version: ModelVersion) -> Path:
    """Where a version's checkpoint goes while it is removed: a dot-name beside it, which nothing loads."""
    return version.path.with_name(_ASIDE)


def _size(path: Path) -> int:
    """Bytes of the regular files under `path` (links not followed)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            info = os.lstat(os.path.join(folder, name))
            total += info.st_size if stat.S_ISREG(info.st_mode) else 0
    return total


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
