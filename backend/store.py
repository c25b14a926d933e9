"""The model store: immutable versions under MODEL_DIR and an atomically switched `current` pointer.

Layout::

    MODEL_DIR/
      CURRENT                      one line: the current version string (replaced with os.replace)
      HISTORY                      one JSON line per CURRENT change (at, version, previous, reason), append-only
      versions/<version>/meta.json source, created_at, metrics, parent ...
      versions/<version>/model/    the checkpoint directory (config, weights, tokenizer)
      staging/<random>/            work in progress; never read as a version

A version becomes visible only by the rename of its finished directory from staging/ into versions/,
so a crash at any point leaves either no version or a complete one. The store treats checkpoints
as opaque directories: validating that one loads is the caller's job.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from backend.errors import VersionNotFound

_SLUG = re.compile(r"[^a-z0-9]+")
# what slugify + a timestamp make, with room for hand-made names; never a path separator or a leading dot
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_VERSION = re.compile(VERSION_PATTERN)


@dataclass(frozen=True)
class ModelVersion:
    """One stored version: its string (the Label Studio model_version), checkpoint dir and metadata."""

    version: str
    path: Path
    meta: dict[str, Any]

    @property
    def created_at(self) -> str:
        """ISO timestamp the version was published at."""
        return str(self.meta.get("created_at", ""))


def slugify(name: str) -> str:
    """Lower-case, dash-separated, at most 40 characters: safe in a path and a model_version."""
    return _SLUG.sub("-", name.lower()).strip("-")[:40] or "model"


class ModelStore:
    """Versions on disk under `root`; see the module docstring for the layout and guarantees."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.staging_root = self.root / "staging"
        self.pointer = self.root / "CURRENT"

    def list(self) -> list[ModelVersion]:
        """Every complete version, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        found = [self._read(p) for p in self.versions_dir.iterdir() if (p / "meta.json").is_file()]
        return sorted(found, key=lambda v: (v.created_at, v.version))

    def get(self, version: str) -> ModelVersion:
        """The named version; raises VersionNotFound."""
        if not _VERSION.match(version):
            raise VersionNotFound("no such model version: versions look like tiny-20261201-102433")
        path = self.versions_dir / version
        if not (path / "meta.json").is_file():
            raise VersionNotFound(f"model version {version!r} is not in the store {self.root}")
        return self._read(path)

    def current_version(self) -> str | None:
        """The version string CURRENT points at, or None for an empty store. Cheap: one small read."""
        try:
            text = self.pointer.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return text or None

    def current(self) -> ModelVersion | None:
        """The current version, or None for an empty store."""
        version = self.current_version()
        return self.get(version) if version else None

    def set_current(self, version: str, reason: str = "") -> ModelVersion:
        """Point CURRENT at an existing version atomically (write a temp file, fsync, os.replace), then note
        the change in HISTORY (a crash between the two leaves CURRENT right and one history line missing)."""
        target = self.get(version)
        previous = self.current_version()
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".CURRENT.", dir=self.root)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.pointer)
        _fsync_dir(self.root)
        if previous != version:
            line = json.dumps({"at": _now(), "version": version, "previous": previous, "reason": reason})
            with (self.root / "HISTORY").open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        return target

    def history(self) -> builtins.list[dict[str, Any]]:
        """Every recorded CURRENT change, oldest first (unreadable lines skipped)."""
        try:
            lines = (self.root / "HISTORY").read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        found = []
        for line in lines:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def previous_version(self) -> str | None:
        """The version that was current before the current one (what a plain rollback goes back to)."""
        current = self.current_version()
        for change in reversed(self.history()):
            if change.get("version") == current and change.get("previous"):
                previous = str(change["previous"])
                return previous if (self.versions_dir / previous / "meta.json").is_file() else None
        return None

    def clean_staging(self, older_than_s: float) -> int:
        """Remove staging directories a killed process left behind (older than the given age); how many."""
        if not self.staging_root.is_dir():
            return 0
        removed, now = 0, time.time()
        for path in self.staging_root.iterdir():
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > older_than_s:
                    shutil.rmtree(path)
                    removed += 1
        return removed

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh directory inside the store to build a checkpoint in; removed afterwards unless published."""
        self.staging_root.mkdir(parents=True, exist_ok=True)
        path = self.staging_root / uuid.uuid4().hex
        (path / "model").mkdir(parents=True)
        try:
            yield path / "model"
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def publish(
        self, checkpoint_dir: Path, meta: dict[str, Any], *, name: str, make_current: bool = True
    ) -> ModelVersion:
        """Add a checkpoint as a new immutable version (moved if it is staged here, else copied)."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        checkpoint_dir = Path(checkpoint_dir)
        version = self._new_version_name(name)
        record = {"version": version, "created_at": _now(), **meta}
        with self.staging() as staged_model:
            bundle = staged_model.parent
            if checkpoint_dir.resolve().is_relative_to(self.staging_root.resolve()):
                staged_model.rmdir()
                os.replace(checkpoint_dir, staged_model)
            else:
                shutil.copytree(checkpoint_dir, staged_model, dirs_exist_ok=True)
            (bundle / "meta.json").write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
            os.replace(bundle, self.versions_dir / version)
        _fsync_dir(self.versions_dir)
        published = self.get(version)
        if make_current:
            self.set_current(version, reason="published")
        return published

    def update_meta(self, version: str, **fields: Any) -> ModelVersion:
        """Merge fields into a version's meta.json (atomic replace); the checkpoint itself never changes."""
        current = self.get(version)
        meta = {**current.meta, **fields}
        target = self.versions_dir / version / "meta.json"
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, target)
        return self.get(version)

    def _new_version_name(self, name: str) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        base = f"{slugify(name)}-{stamp}"
        candidate, n = base, 1
        while (self.versions_dir / candidate).exists():
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    def _read(self, path: Path) -> ModelVersion:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        return ModelVersion(version=path.name, path=path / "model", meta=meta)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
