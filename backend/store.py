"""The model store: immutable versions shared by every project, and one model *line* per project that has its own.

Layout::

    MODEL_DIR/
      versions/<version>/meta.json   source, created_at, metrics, project (trained for), parent ...
      versions/<version>/model/      the checkpoint directory (config, weights, tokenizer); gone once collected
      lines/default/CURRENT          one line: the version every project without a line of its own is served
      lines/default/HISTORY          one JSON line per pointer change (at, version, previous, reason), append-only
      lines/project-<id>/CURRENT     a project's own line, made by its first promotion (absent: the default line)
      lines/project-<id>/HISTORY
      .lock                          the file lock every pointer change holds (API, CLI and workers alike)
      staging/<random>/              work in progress; never read as a version

A version becomes visible only by the rename of its finished directory from staging/ into versions/, so a crash
at any point leaves either no version or a complete one. A pointer changes by write-temp, fsync, os.replace
under the lock, so readers (which take no lock) see the old or the new version, and two writers never
interleave their check-then-switch or their history lines. The store treats checkpoints as opaque
directories: validating that one loads is the caller's job.

A store written before lines existed (one `MODEL_DIR/CURRENT` and `HISTORY`) opens as the default line: the
first read moves both under lines/default/ (keeping copies named `*.before-lines`), and nothing else changes.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

from backend.errors import NothingToRollBack, PointerMoved, VersionNotFound

log = logging.getLogger(__name__)

_SLUG = re.compile(r"[^a-z0-9]+")
# what slugify + a timestamp make, with room for hand-made names; never a path separator or a leading dot
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_VERSION = re.compile(VERSION_PATTERN)
DEFAULT_LINE = "default"
LOCK_TIMEOUT_S = 60.0
# how the `expect` argument of set_current says "whatever the pointer is now"
ANY = object()


def line_name(project: int | None) -> str:
    """The line directory of a project (its own one, whether or not it exists yet); None is the default line."""
    return DEFAULT_LINE if project is None else f"project-{int(project)}"


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

    @property
    def project(self) -> int | None:
        """The Label Studio project the version was trained for (None: an import or the starter)."""
        project = self.meta.get("project")
        return int(project) if project is not None else None

    @property
    def collected(self) -> bool:
        """True once garbage collection removed the weights (meta.json, and so history and lineage, stay)."""
        return not self.path.is_dir()

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's label names without loading it: meta.json's `labels`, else the checkpoint config's id2label
        in id order (empty when neither says)."""
        if self.meta.get("labels"):
            return tuple(str(label) for label in self.meta["labels"])
        try:
            config = json.loads((self.path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return ()
        id2label = config.get("id2label") or {}
        return tuple(str(id2label[k]) for k in sorted(id2label, key=int))


def slugify(name: str) -> str:
    """Lower-case, dash-separated, at most 40 characters: safe in a path and a model_version."""
    return _SLUG.sub("-", name.lower()).strip("-")[:40] or "model"


class ModelStore:
    """Versions on disk under `root`; see the module docstring for the layout and guarantees."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.staging_root = self.root / "staging"
        self.lines_dir = self.root / "lines"
        self.lock_path = self.root / ".lock"
        # bumped whenever this object moves a pointer: a reader caching pointers (api/served.py) sees this
        # process's own promotions at once, and another process's when its cache next re-reads the files
        self.changes = 0

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
            raise VersionNotFound(f"model version {version!r} is not in the model store")
        return self._read(path)

    def current_version(self, project: int | None = None) -> str | None:
        """The version a project is served: its own line's pointer, else the default line's (None: empty store).
        Cheap: one or two small reads, no lock."""
        if project is not None:
            own = self._read_pointer(line_name(project))
            if own:
                return own
        return self._read_pointer(DEFAULT_LINE)

    def current(self, project: int | None = None) -> ModelVersion | None:
        """The version a project is served (see current_version), or None for an empty store."""
        version = self.current_version(project)
        return self.get(version) if version else None

    def has_line(self, project: int) -> bool:
        """True when the project has a line of its own (it trained, or was promoted by hand, and was not rolled
        back past its first promotion)."""
        return self._read_pointer(line_name(project)) is not None

    def lines(self) -> dict[str, str]:
        """Every line that points somewhere: its name (`default`, `project-<id>`) → its current version."""
        self._upgrade()
        found = {}
        if self.lines_dir.is_dir():
            for path in sorted(self.lines_dir.iterdir()):
                version = self._read_pointer(path.name)
                if version:
                    found[path.name] = version
        return found

    def set_current(
        self, version: str, reason: str = "", *, project: int | None = None, expect: object = ANY,
        check: Callable[[], None] | None = None, rollback: bool = False,
    ) -> ModelVersion:
        """Point a line (a project's own, made if needed; None: the default) at an existing version.

        Under the store lock: `expect` (the version the project was served when the caller decided) makes it a
        compare-and-swap that raises PointerMoved when that changed meanwhile; `check()` runs last and may raise
        to call the switch off (a cancelled training). Then the pointer is replaced atomically (temp file,
        fsync, os.replace) and the change noted in the line's HISTORY (`rollback` marks a step back, which
        previous_version walks past)."""
        target = self.get(version)
        name = line_name(project)
        with self._locked():
            if target.collected:  # checked under the lock gc holds while it removes weights
                raise VersionNotFound(f"model version {version!r} had its weights removed by `models gc`; only its "
                                      "meta.json is left")
            previous = self._read_pointer(name)
            served = self.current_version(project)
            if expect is not ANY and served != expect:
                raise PointerMoved(f"{'project ' + str(project) if project else 'the default line'} is served "
                                   f"{served} now, not {expect}: another change won")
            if check is not None:
                check()
            self._write_pointer(name, version)
            if previous != version:
                change: dict[str, Any] = {"version": version, "previous": previous, "reason": reason}
                self._append_history(name, {**change, "rollback": True} if rollback else change)
        return target

    def leave_line(self, project: int, reason: str = "") -> str | None:
        """Return a project to the default line (its own line's pointer removed, its history kept); the version
        it had. NothingToRollBack when it has no line of its own."""
        name = line_name(project)
        with self._locked():
            previous = self._read_pointer(name)
            if previous is None:
                raise NothingToRollBack(f"project {project} has no model line of its own: it is served the "
                                        f"{DEFAULT_LINE} line")
            (self.lines_dir / name / "CURRENT").unlink()
            self.changes += 1
            _fsync_dir(self.lines_dir / name)
            self._append_history(name, {"version": None, "previous": previous, "reason": reason})
        return previous

    def history(self, project: int | None = None) -> builtins.list[dict[str, Any]]:
        """Every recorded pointer change of a line (the project's own; None: the default), oldest first (unreadable
        lines skipped)."""
        self._upgrade()
        try:
            lines = (self.lines_dir / line_name(project) / "HISTORY").read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        found = []
        for line in lines:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def previous_version(self, project: int | None = None) -> str | None:
        """What a plain rollback of a line goes back to: the version the line had before the current one was
        promoted (rollbacks are steps back, so repeated rollbacks walk down the line's promotions). None: the
        current version was the line's first, or that earlier version is not in the store."""
        current = self._read_pointer(line_name(project))
        for change in reversed(self.history(project)):
            if _is_rollback(change) or change.get("version") != current:
                continue
            previous = change.get("previous")
            if previous and (self.versions_dir / str(previous) / "meta.json").is_file():
                return str(previous)
            return None
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
        atomic_write(self.versions_dir / version / "meta.json", json.dumps(meta, indent=2, sort_keys=True))
        return self.get(version)

    def _new_version_name(self, name: str) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        base = f"{slugify(name)}-{stamp}"
        candidate, n = base, 1
        while (self.versions_dir / candidate).exists():
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self.lock_path, timeout=LOCK_TIMEOUT_S):
            self._upgrade(locked=True)
            yield

    def _read_pointer(self, name: str) -> str | None:
        if name == DEFAULT_LINE:
            self._upgrade()
        try:
            text = (self.lines_dir / name / "CURRENT").read_text(encoding="utf-8").strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return text or None

    def _write_pointer(self, name: str, version: str) -> None:
        line_dir = self.lines_dir / name
        line_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(line_dir / "CURRENT", version + "\n")
        self.changes += 1

    def _append_history(self, name: str, change: dict[str, Any]) -> None:
        line = json.dumps({"at": _now(), **change})
        with (self.lines_dir / name / "HISTORY").open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _upgrade(self, *, locked: bool = False) -> None:
        """Open a store of the layout before lines (MODEL_DIR/CURRENT, HISTORY) as the default line; cheap (one
        stat) once done. The old files stay as `*.before-lines`."""
        legacy = self.root / "CURRENT"
        if not legacy.exists():
            return
        if not locked:
            with self._locked():  # _locked calls back here under the lock
                return
        if not legacy.exists():  # another process upgraded while this one waited for the lock
            return
        default = self.lines_dir / DEFAULT_LINE
        default.mkdir(parents=True, exist_ok=True)
        version = legacy.read_text(encoding="utf-8").strip()
        old_history = self.root / "HISTORY"
        if old_history.exists():
            shutil.copyfile(old_history, default / "HISTORY")
        if version:
            atomic_write(default / "CURRENT", version + "\n")
        if old_history.exists():
            os.replace(old_history, self.root / "HISTORY.before-lines")
        os.replace(legacy, self.root / "CURRENT.before-lines")
        _fsync_dir(self.root)
        log.info("model store %s upgraded: its CURRENT (%s) is now the default line", self.root, version or "empty")

    def _read(self, path: Path) -> ModelVersion:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        return ModelVersion(version=path.name, path=path / "model", meta=meta)


def _is_rollback(change: dict[str, Any]) -> bool:
    """A history line written by a rollback (flagged, or in a store older than the flag, by its reason)."""
    return bool(change.get("rollback")) or str(change.get("reason", "")).startswith("rollback")


def atomic_write(path: Path, text: str) -> None:
    """Replace a small file atomically: a temp file in the same directory, fsync, os.replace, fsync the directory."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
