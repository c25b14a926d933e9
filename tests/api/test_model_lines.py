"""Many projects on one backend: each /setup and /predict answers with the project's own line, within a bounded
number of loaded versions."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from backend.api.served import Classifier
from backend.model.types import Prediction
from backend.store import ModelStore, ModelVersion
from tests.api.conftest import MakeBackend, ls_payload

pytestmark = pytest.mark.api


class Versioned:
    """A classifier whose score says which version it is (version i scores 0.6 + i / 100)."""

    labels = ("NEGATIVE", "POSITIVE")

    def __init__(self, score: float) -> None:
        self.score = score

    def predict(self, texts: Sequence[str], *, max_tokens: int | None = None) -> list[Prediction]:
        return [Prediction(label="POSITIVE", score=self.score, probs={"POSITIVE": self.score}) for _ in texts]


def _request(project: int, kind: str) -> dict[str, Any]:
    body = ls_payload("predict_request_one_task.json" if kind == "predict" else "setup_request.json")
    body["project"] = f"{project}.1795515206"
    return body


def test_four_projects_on_four_versions_with_two_loaded_get_their_own_version(
    make_backend: MakeBackend, store: ModelStore, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    held_most: list[int] = []
    default = str(store.current_version())
    scores: dict[str, float] = {default: 0.6}
    backend_box: list[Any] = []

    def loader(version: ModelVersion) -> Classifier:
        if backend_box:  # never more than MAX_LOADED_MODELS in the cache, loads included
            held_most.append(len(backend_box[0].served.cache.loaded()))
        return Versioned(scores[version.version])

    backend = make_backend(loader=loader, max_loaded_models=2, wait=False)
    backend_box.append(backend)
    own: dict[int, str] = {}
    for project in (1, 2, 3, 4):
        staged = tmp_path / f"ckpt-{project}"
        shutil.copytree(tiny_checkpoint, staged)
        version = backend.store.publish(staged, {"project": project}, name=f"p{project}", make_current=False).version
        scores[version] = 0.6 + project / 100
        backend.store.set_current(version, project=project)
        own[project] = version
    assert backend.served.wait(30)

    def ask(project: int) -> tuple[int, str, str, float]:
        setup = backend.client.post("/setup", json=_request(project, "setup")).json()
        reply = backend.client.post("/predict", json=_request(project, "predict")).json()
        result = reply["results"][0]
        return project, setup["model_version"], reply["model_version"], result["score"]

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, [1, 2, 3, 4, 5] * 6))
    for project, setup_version, predict_version, score in answers:
        expected = own.get(project, default)
        assert setup_version == predict_version == expected, (project, setup_version, predict_version)
        assert score == pytest.approx(scores[expected])  # the prediction came from that version's model
    cache = backend.served.cache
    assert len(cache.loaded()) <= 2 and max(held_most) <= 2
    assert cache.loads > 5, "with two slots for five versions some were dropped and loaded again"
    assert backend.client.get("/health").json() == {"status": "UP", "model_version": default}


def test_a_version_asked_for_by_many_requests_at_once_is_loaded_once(
    make_backend: MakeBackend, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    gate = threading.Event()
    loads: list[str] = []

    def loader(version: ModelVersion) -> Classifier:
        loads.append(version.version)
        if len(loads) > 1:
            assert gate.wait(10)
        return Versioned(0.7)

    backend = make_backend(loader=loader)
    staged = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, staged)
    version = backend.store.publish(staged, {"project": 7}, name="p7", make_current=False).version
    backend.store.set_current(version, project=7)
    with ThreadPoolExecutor(8) as pool:
        pending = [pool.submit(backend.client.post, "/predict", json=_request(7, "predict")) for _ in range(8)]
        health = backend.client.get("/health")  # answered while project 7's version loads
        assert health.json()["status"] == "UP"
        gate.set()
        replies = [f.result(30).json() for f in pending]
    assert loads == [backend.version, version]
    assert {r["model_version"] for r in replies} == {version}
