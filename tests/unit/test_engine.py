"""Which engine serves a version (ENGINE=auto|torch|onnx, CPU or CUDA), thread defaults, and the ENGINE settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.errors import InvalidCheckpoint
from backend.model import engine
from backend.model.engine import ONNX_FP32, ONNX_INT8, TORCH, choose, inference_threads, record_of, softmax

pytestmark = pytest.mark.unit

INT8 = {"chosen": ONNX_INT8}
FP32 = {"chosen": ONNX_FP32}
BOTH = [ONNX_INT8, ONNX_FP32]


@pytest.mark.parametrize(
    ("requested", "cuda", "record", "present", "expected"),
    [
        ("auto", False, INT8, [ONNX_INT8], ONNX_INT8),  # the gate's choice on CPU
        ("auto", False, FP32, [ONNX_FP32], ONNX_FP32),
        ("auto", True, INT8, [ONNX_INT8], TORCH),  # CUDA keeps torch: the export is built and measured for CPU
        ("auto", False, {"chosen": TORCH}, [], TORCH),  # nothing passed the gate
        ("auto", False, INT8, [], TORCH),  # the record says int8 but its file is gone
        ("torch", False, INT8, [ONNX_INT8], TORCH),
        ("onnx", True, INT8, [ONNX_INT8], ONNX_INT8),  # forced onto CUDA too
        ("onnx", False, {"chosen": TORCH}, [ONNX_FP32], ONNX_FP32),  # forced past a failed gate
    ],
)
def test_choose(requested: engine.Requested, cuda: bool, record: dict, present: list[str], expected: str) -> None:
    assert choose(requested, cuda=cuda, record=record, present=present) == expected


def test_forcing_onnx_without_an_export_names_the_command_that_builds_one() -> None:
    with pytest.raises(InvalidCheckpoint, match="models optimize"):
        choose("onnx", cuda=False, record=record_of({}), present=[])


def test_versions_from_before_engines_serve_torch() -> None:
    assert record_of({})["chosen"] == TORCH
    assert record_of({"engine": {"chosen": "tensorrt"}})["chosen"] == TORCH  # unknown engines are not trusted
    assert record_of({"engine": INT8}) == INT8


def test_built_lists_only_engines_whose_graph_and_bundle_exist(tmp_path: Path) -> None:
    assert engine.built(tmp_path) == []
    folder = tmp_path / engine.ENGINE_DIR
    folder.mkdir()
    (folder / engine.ENGINE_FILES[ONNX_FP32]).write_bytes(b"x")
    assert engine.built(tmp_path) == []  # no engine.json: not an engine
    (folder / engine.BUNDLE_FILE).write_text("{}")
    assert engine.built(tmp_path) == [ONNX_FP32]
    (folder / engine.ENGINE_FILES[ONNX_INT8]).write_bytes(b"x")
    assert engine.built(tmp_path) == BOTH


def test_workers_default_to_one_thread_so_n_workers_use_n_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "usable_cpus", lambda: 16)
    assert inference_threads(0, "worker") == 1
    assert inference_threads(0, "api") == 16
    assert inference_threads(0, "cli") == 16
    assert inference_threads(3, "worker") == 3 and inference_threads(3, "api") == 3


def test_usable_cpus_is_at_least_one_and_at_most_the_affinity() -> None:
    import os

    assert 1 <= engine.usable_cpus() <= len(os.sched_getaffinity(0))


def test_cpu_and_cuda_devices_are_decided_without_torch() -> None:
    assert engine.cuda_wanted("cpu") is False
    assert engine.cuda_wanted("cuda") is True


def test_softmax_matches_the_definition() -> None:
    logits = np.array([[1.0, 2.0], [1000.0, 0.0]], dtype=np.float32)
    probs = softmax(logits)
    np.testing.assert_allclose(probs[0], np.exp([1, 2]) / np.exp([1, 2]).sum(), rtol=1e-6)
    np.testing.assert_allclose(probs[1], [1.0, 0.0])
    assert probs.dtype == np.float32
