"""The ONNX Runtime engine: a version's exported graph (fused attention; dynamic int8 or fp32) on the CPU.

Loading it reads only the version's onnx/ directory (the graph, engine.json and tokenizer.json), with numpy,
tokenizers and onnxruntime: no torch, no transformers, so a process serving it starts in well under a second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from backend.errors import InvalidCheckpoint
from backend.model.encoder import Encoder, SpecialIds
from backend.model.engine import BUNDLE_FILE, ENGINE_DIR, ENGINE_FILES, TOKENIZER_FILE, softmax


@dataclass(frozen=True)
class Bundle:
    """What engine.json records: the labels in id order, the longest row and the special ids."""

    labels: tuple[str, ...]
    max_length: int
    special: SpecialIds

    def as_dict(self) -> dict[str, Any]:
        """engine.json's content."""
        return {"labels": list(self.labels), "max_length": self.max_length,
                "special_ids": {"cls": self.special.cls, "sep": self.special.sep, "pad": self.special.pad}}


class OnnxEngine:
    """One onnxruntime InferenceSession on the CPU (or CUDA when onnxruntime has that provider and it is asked
    for), `threads` intra-op threads, one inter-op thread."""

    def __init__(self, graph: Path, name: str, *, threads: int, cuda: bool = False) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        # EXTENDED: the transformer fusions without ORT_ENABLE_ALL's layout passes; load time and speed measure
        # the same on this encoder (bench/engine_knobs.py)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        providers = ["CPUExecutionProvider"]
        if cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(graph), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
            raise InvalidCheckpoint(f"{graph} does not load in onnxruntime: {type(exc).__name__}") from exc
        self.name = name
        self.threads = threads
        self._inputs = {i.name for i in self.session.get_inputs()}

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Softmax probabilities (float32) of the padded rows."""
        feed = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
        (logits,) = self.session.run(["logits"], {k: v for k, v in feed.items() if k in self._inputs})
        return softmax(np.asarray(logits))


def read_bundle(folder: Path) -> Bundle:
    """engine.json of an engine directory; InvalidCheckpoint when it is missing or malformed."""
    try:
        raw = json.loads((folder / BUNDLE_FILE).read_text(encoding="utf-8"))
        special = raw["special_ids"]
        return Bundle(tuple(str(label) for label in raw["labels"]), int(raw["max_length"]),
                      SpecialIds(int(special["cls"]), int(special["sep"]), int(special["pad"])))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidCheckpoint(f"{folder / BUNDLE_FILE} is missing or malformed ({type(exc).__name__})") from exc


def write_bundle(folder: Path, bundle: Bundle, encoder: Encoder) -> None:
    """Write engine.json and tokenizer.json into an engine directory."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / BUNDLE_FILE).write_text(json.dumps(bundle.as_dict(), indent=2), encoding="utf-8")
    encoder.save(folder / TOKENIZER_FILE)


def load_onnx(checkpoint: Path, name: str, *, threads: int, cuda: bool = False) -> tuple[OnnxEngine, Encoder, Bundle]:
    """The engine `name` (onnx-int8 or onnx-fp32) of a checkpoint directory, with its encoder and bundle."""
    folder = Path(checkpoint) / ENGINE_DIR
    bundle = read_bundle(folder)
    graph = folder / ENGINE_FILES[name]
    if not graph.is_file():
        raise InvalidCheckpoint(f"{checkpoint} has no {name} engine ({graph.name} is missing)")
    encoder = Encoder.from_file(folder / TOKENIZER_FILE, bundle.special)
    return OnnxEngine(graph, name, threads=threads, cuda=cuda), encoder, bundle
