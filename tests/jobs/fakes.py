"""A fake Label Studio for the jobs tests: tasks, predictions with ids, no upsert (like the real one), and
switches to fail, drop or stall calls."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.errors import LabelStudioUnavailable, ProjectNotFound
from backend.studio import ProjectInfo, TaskPredictions

CONFIG = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
          '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>')


@dataclass
class FakeStudio:
    """One project (id 1) with tasks 1..n; predictions are (id, task, model_version, choice)."""

    n_tasks: int = 10
    label_config: str = CONFIG
    texts: dict[int, Any] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    fail_next: dict[str, int] = field(default_factory=dict)  # method name → failures to inject
    drop_every: int = 0  # import_predictions silently drops every n-th item (invalid items in the real one)
    selected: str = ""
    poison: set[int] = field(default_factory=set)  # reading any of these tasks always answers 502
    calls: list[str] = field(default_factory=list)
    exported: list[dict[str, Any]] = field(default_factory=list)  # what export() answers (annotated tasks)
    saved_views: dict[int, dict[str, Any]] = field(default_factory=dict)  # the project's Data Manager tabs
    _next_id: int = 1

    def __post_init__(self) -> None:
        for t in range(1, self.n_tasks + 1):
            self.texts.setdefault(t, f"text of task {t}")

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail_next.get(name, 0) > 0:
            self.fail_next[name] -= 1
            raise LabelStudioUnavailable(f"Label Studio refused {name}: HTTP 502 injected")

    def add_prediction(self, task: int, version: str) -> int:
        pid = self._next_id
        self._next_id += 1
        self.predictions.append({"id": pid, "task": task, "model_version": version, "choice": "Positive"})
        return pid

    def project(self, project_id: int) -> ProjectInfo:
        self._call("project")
        if project_id != 1:
            raise ProjectNotFound(f"Label Studio has no project {project_id}")
        return ProjectInfo(id=1, title="fake", label_config=self.label_config, model_version=self.selected)

    def views(self, project_id: int) -> list[dict[str, Any]]:
        self._call("views")
        return [{"id": i, "data": dict(d)} for i, d in sorted(self.saved_views.items())]

    def create_view(self, project_id: int, data: dict[str, Any]) -> int:
        self._call("create_view")
        view_id = max(self.saved_views, default=0) + 1
        self.saved_views[view_id] = dict(data)
        return view_id

    def update_view(self, view_id: int, project_id: int, data: dict[str, Any]) -> None:
        self._call("update_view")
        self.saved_views[view_id] = dict(data)

    def export(self, project_id: int) -> list[dict[str, Any]]:
        self._call("export")
        if project_id != 1:
            raise ProjectNotFound(f"Label Studio has no project {project_id}")
        return list(self.exported)

    def task_versions(
        self, project_id: int, page_size: int = 1000, *, unlabeled_only: bool = False
    ) -> Iterator[tuple[int, frozenset[str]]]:
        self._call("task_versions")
        for t in self.texts:
            yield t, frozenset(p["model_version"] for p in self.predictions if p["task"] == t)

    def tasks(self, project_id: int, task_ids: Sequence[int], *, with_data: bool = True) -> list[TaskPredictions]:
        self._call("tasks")
        if self.poison & set(task_ids):
            raise LabelStudioUnavailable("Label Studio refused reading tasks: HTTP 502 injected (poisoned task)")
        def held(t: int) -> tuple[tuple[int, str], ...]:
            return tuple((p["id"], p["model_version"]) for p in self.predictions if p["task"] == t)

        found = [t for t in task_ids if t in self.texts]
        return [TaskPredictions(id=t, data={"text": self.texts[t]} if with_data else {}, predictions=held(t))
                for t in found]

    def import_predictions(self, project_id: int, predictions: Sequence[dict[str, Any]]) -> int:
        self._call("import_predictions")
        created = 0
        for i, p in enumerate(predictions, start=1):
            if self.drop_every and i % self.drop_every == 0:
                continue
            pid = self.add_prediction(p["task"], p["model_version"])
            self.predictions[-1]["choice"] = p["result"][0]["value"]["choices"][0]
            assert pid
            created += 1
        return created

    def delete_prediction(self, prediction_id: int) -> None:
        self._call("delete_prediction")
        self.predictions = [p for p in self.predictions if p["id"] != prediction_id]

    def select_model_version(self, project_id: int, version: str) -> None:
        self._call("select_model_version")
        self.selected = version

    def count(self, task: int, version: str) -> int:
        return sum(1 for p in self.predictions if p["task"] == task and p["model_version"] == version)


POSITIVE_WORDS = ("wonderful", "great", "superb", "delightful", "moving", "brilliant", "charming", "excellent")
NEGATIVE_WORDS = ("awful", "boring", "dreadful", "tedious", "clumsy", "terrible", "dull", "painful")


def learnable_text(i: int, positive: bool) -> str:
    """A sentence whose sentiment a tiny model learns in seconds: the adjectives give it away."""
    words = POSITIVE_WORDS if positive else NEGATIVE_WORDS
    return f"a {words[i % len(words)]} and {words[(i * 3 + 1) % len(words)]} film number {i}"


def exported_task(task_id: int, text: str, choice: str | None, **annotation: Any) -> dict[str, Any]:
    """One task as Label Studio's JSON export shows it, with one annotation choosing `choice` (None: no result)."""
    result = [] if choice is None else [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                         "value": {"choices": [choice]}, **annotation.pop("item", {})}]
    body = {"id": task_id * 10, "result": result, "was_cancelled": False, "ground_truth": False,
            "updated_at": "2026-11-24T10:00:00Z", **annotation}
    return {"id": task_id, "data": {"text": text}, "annotations": [body], "predictions": annotation.get("_preds", [])}
