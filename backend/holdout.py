"""The frozen holdout of a project: the tasks every candidate and its parent are compared on.

A task's side is decided the first time it is seen (a stable hash of project and task id against the holdout
fraction) and written down; from then on it never moves, even if the fraction setting changes. A task that
was trained on never enters the holdout, and a holdout task is never trained on, so every version of a
project is scored on rows none of its ancestors learnt from.

File: MODEL_DIR/projects/<id>/split.json, replaced atomically (one training per project runs at a time).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Split:
    """Which task ids went to training and which to the holdout."""

    train: set[int]
    holdout: set[int]


def project_dir(model_dir: Path | str, project: int) -> Path:
    """Where per-project training state lives inside the model store."""
    return Path(model_dir) / "projects" / str(int(project))


def in_holdout_by_hash(project: int, task_id: int, fraction: float) -> bool:
    """The first-sight rule: a stable pseudo-random draw per (project, task)."""
    digest = hashlib.sha256(f"{project}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


class Holdout:
    """The recorded split of one project (see the module docstring)."""

    def __init__(self, model_dir: Path | str, project: int) -> None:
        self.project = int(project)
        self.path = project_dir(model_dir, project) / "split.json"

    def load(self) -> Split:
        """The recorded split (empty when none yet)."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return Split(set(), set())
        return Split(set(raw.get("train", [])), set(raw.get("holdout", [])))

    def assign(self, task_ids: Sequence[int], fraction: float) -> Split:
        """The split of these tasks: recorded sides kept, new tasks drawn; saves the grown record."""
        recorded = self.load()
        for task_id in task_ids:
            if task_id in recorded.train or task_id in recorded.holdout:
                continue
            side = recorded.holdout if in_holdout_by_hash(self.project, task_id, fraction) else recorded.train
            side.add(task_id)
        self._save(recorded)
        wanted = set(task_ids)
        return Split(recorded.train & wanted, recorded.holdout & wanted)

    def _save(self, split: Split) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"train": sorted(split.train), "holdout": sorted(split.holdout)}), encoding="utf-8")
        os.replace(tmp, self.path)
