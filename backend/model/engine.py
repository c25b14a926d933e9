"""Engines: what runs a version's forward pass (torch fp32, or its ONNX Runtime export), and which one serves.

An engine only maps padded id/mask arrays to class probabilities; tokenizing, windowing, token-budget batching,
aggregation and calibration stay in SentimentClassifier, so they are the same whatever the engine. A version's
ONNX engine is built before it is published (backend.model.engine_build) and recorded in its meta.json under
`engine`: `chosen` is the best engine that passed the accuracy gate (onnx-int8, else onnx-fp32, else torch).

ENGINE=auto serves `chosen` on CPU and torch on CUDA (the ONNX export is built and measured for CPU; torch on a
GPU is not slower). ENGINE=torch always serves torch. ENGINE=onnx forces the version's ONNX export (on CUDA too,
and even one that failed its gate, with a warning): an operator's override that may change answers slightly
under the same version string. Importing this module imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from backend.errors import InvalidCheckpoint

log = logging.getLogger(__name__)

TORCH = "torch"
ONNX_INT8 = "onnx-int8"
ONNX_FP32 = "onnx-fp32"
ENGINE_DIR = "onnx"  # inside the version's checkpoint directory
ENGINE_FILES = {ONNX_INT8: "model.int8.onnx", ONNX_FP32: "model.fp32.onnx"}
BUNDLE_FILE = "engine.json"  # labels, max_length, special ids: what loading the ONNX engine needs besides the graph
TOKENIZER_FILE = "tokenizer.json"

Requested = Literal["auto", "torch", "onnx"]
Role = Literal["api", "worker", "cli"]


class Engine(Protocol):
    """A forward pass: int64 ids and attention mask [rows, width] → float32 class probabilities [rows, labels]."""

    name: str

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Softmax probabilities, one row per input row."""
        ...


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32 (what torch.softmax gives)."""
    z = logits.astype(np.float32)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True), dtype=np.float32)


def record_of(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A version's engine record; versions published before engines existed have torch only."""
    record = meta.get("engine")
    if isinstance(record, dict) and record.get("chosen") in (TORCH, ONNX_INT8, ONNX_FP32):
        return dict(record)
    return {"chosen": TORCH, "reason": "published before engines were built (`models optimize VERSION` adds one)"}


def unbuilt_record(reason: str = "published without an engine build") -> dict[str, Any]:
    """The `engine` record of a version published without an ONNX engine: it serves torch, and why."""
    return {"chosen": TORCH, "reason": reason}


def built(path: Path) -> list[str]:
    """The ONNX engines present in a checkpoint directory, best first."""
    folder = Path(path) / ENGINE_DIR
    if not (folder / BUNDLE_FILE).is_file():
        return []
    return [name for name, file in ENGINE_FILES.items() if (folder / file).is_file()]


def choose(requested: Requested, *, cuda: bool, record: Mapping[str, Any], present: list[str]) -> str:
    """The engine to serve a version with (see the module docstring); InvalidCheckpoint when ENGINE=onnx and the
    version has no ONNX export."""
    if requested == TORCH:
        return TORCH
    chosen = str(record.get("chosen", TORCH))
    if requested == "auto":
        return TORCH if cuda or chosen not in present else chosen
    if chosen in present:
        return chosen
    if not present:
        raise InvalidCheckpoint("ENGINE=onnx, but this version has no ONNX engine: run `sentiment-backend models "
                                "optimize VERSION` (it publishes an optimized copy as a new version), or set "
                                "ENGINE=auto")
    log.warning("ENGINE=onnx forces %s, which did not pass its accuracy gate (%s): answers may differ from torch's",
                present[0], record.get("reason", "see the version's meta.json"))
    return present[0]


def cuda_wanted(device: str) -> bool:
    """Whether inference would run on CUDA, importing torch only when a GPU may really be there (DEVICE=auto with
    a CUDA build of torch and an NVIDIA driver loaded): a CPU host serving ONNX never imports torch."""
    if device != "auto":
        return device == "cuda"
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    version_file = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        cpu_build = "cuda: Optional[str] = None" in version_file.read_text(encoding="utf-8")
    except OSError:
        cpu_build = False
    if cpu_build or not (Path("/proc/driver/nvidia").exists() or Path("/dev/nvidia0").exists()):
        return False
    import torch

    return bool(torch.cuda.is_available())


def usable_cpus() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota when one is set."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text(encoding="utf-8").split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def inference_threads(setting: int, role: Role) -> int:
    """Intra-op threads of one process's engine: INFERENCE_THREADS when set (> 0); else 1 in a worker, so N
    workers on a host use N cores and never oversubscribe them (bulk throughput scales by workers), and the
    usable cores in the API and the CLI (a single interactive process: latency wants them all)."""
    if setting > 0:
        return setting
    return 1 if role == "worker" else usable_cpus()
