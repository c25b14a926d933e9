"""SentimentClassifier: one sequence-classification checkpoint, loaded once, batched windowed inference.

Long texts are never truncated: a text longer than the model's window is split into overlapping windows,
each window is classified, and the text's probabilities are the windows' probabilities averaged with
each window's token count as weight. All windows of one `predict` call are sorted by length and packed
into batches of at most `token_budget` padded tokens (performance-baseline.md: dynamic padding beats
fixed row counts, and long rows want small batches).

Only the forward pass differs per engine (backend.model.engine): tokenizing, windowing, batching, aggregation
and calibration are this module's, the same for torch and ONNX Runtime. Importing it imports no torch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backend import calibration
from backend.errors import InvalidCheckpoint, TooManyTokens
from backend.model.encoder import Encoder
from backend.model.engine import TORCH, Engine
from backend.model.types import Prediction

log = logging.getLogger(__name__)

MAX_POSITIONS = 512
MAX_ROWS_PER_BATCH = 64
# padded tokens per forward batch (the TOKEN_BUDGET default, backend.config): README, "Batching by a token budget"
DEFAULT_TOKEN_BUDGET = 1024


@dataclass(frozen=True)
class _Window:
    """One model row: the text it belongs to, its token ids with [CLS]/[SEP], and its weight (content tokens)."""

    text: int
    ids: list[int]
    weight: int


def window_spans(n_tokens: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Half-open spans of at most `size` tokens covering range(n_tokens); neighbours share `stride` tokens."""
    if size < 1 or not 0 <= stride < size:
        raise ValueError(f"need size >= 1 and 0 <= stride < size, got size={size} stride={stride}")
    spans = [(0, min(n_tokens, size))]
    while spans[-1][1] < n_tokens:
        start = spans[-1][1] - stride
        spans.append((start, min(start + size, n_tokens)))
    return spans


def aggregate_windows(probs: np.ndarray, weights: Sequence[int]) -> np.ndarray:
    """The weighted mean of per-window class probabilities (rows of `probs`); weights below 1 count as 1."""
    w = np.maximum(np.asarray(weights, dtype=np.float64), 1.0)
    return np.asarray((probs.astype(np.float64) * w[:, None]).sum(axis=0) / w.sum())


def pack_batches(lengths: Sequence[int], token_budget: int, max_rows: int = MAX_ROWS_PER_BATCH) -> list[list[int]]:
    """Row indexes sorted by length, packed so rows × longest length ≤ token_budget (a longer row goes alone)."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: lengths[k]):
        if current and ((len(current) + 1) * lengths[i] > token_budget or len(current) >= max_rows):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class SentimentClassifier:
    """A loaded checkpoint: `predict(texts)` → one Prediction per text, in order, its probabilities scaled by the
    version's calibration temperature (backend.calibration; 1.0 leaves them as the model gives them). Thread-safe."""

    def __init__(
        self, engine: Engine, encoder: Encoder, labels: Sequence[str], max_length: int, *,
        token_budget: int = DEFAULT_TOKEN_BUDGET, stride: int = 128, temperature: float = 1.0,
    ) -> None:
        self.temperature = calibration.check_temperature(temperature)
        self.engine = engine
        self.encoder = encoder
        self.labels = _labels(labels)
        if max_length < 4:
            raise InvalidCheckpoint(f"max_length {max_length} leaves no room for text between [CLS] and [SEP]")
        self.max_length = max_length
        self.token_budget = token_budget
        self.stride = min(stride, (self.max_length - 2) // 2)
        self._lock = threading.Lock()

    @classmethod
    def from_model(
        cls, model: Any, tokenizer: Any, *, device: Any = "cpu", token_budget: int = DEFAULT_TOKEN_BUDGET,
        stride: int = 128, temperature: float = 1.0, threads: int | None = None,
    ) -> SentimentClassifier:
        """A classifier over an in-memory transformers model and tokenizer, run by the torch engine."""
        from backend.model.torch_engine import TorchEngine

        try:
            encoder = Encoder.from_transformers(tokenizer)
        except ValueError as exc:
            raise InvalidCheckpoint(f"the tokenizer cannot be used: {exc}") from exc
        return cls(TorchEngine(model, device=device, threads=threads), encoder, labels_of(model.config),
                   _max_length(tokenizer, model.config), token_budget=token_budget, stride=stride,
                   temperature=temperature)

    @classmethod
    def from_path(
        cls, path: Path | str, *, device: str = "auto", token_budget: int = DEFAULT_TOKEN_BUDGET,
        stride: int = 128, temperature: float = 1.0, engine: str = TORCH, threads: int | None = None,
    ) -> SentimentClassifier:
        """Load a local checkpoint directory once with the named engine (torch, or the onnx-int8/onnx-fp32 export
        the engine build left in it); raises InvalidCheckpoint."""
        path = Path(path)
        started = time.monotonic()
        if engine == TORCH:
            from backend.model.torch_engine import load_checkpoint

            model, tokenizer = load_checkpoint(path)
            classifier = cls.from_model(model, tokenizer, device=device, token_budget=token_budget, stride=stride,
                                        temperature=temperature, threads=threads)
        else:
            from backend.model.onnx_engine import load_onnx

            onnx, encoder, bundle = load_onnx(path, engine, threads=threads or 1, cuda=device == "cuda")
            classifier = cls(onnx, encoder, bundle.labels, bundle.max_length, token_budget=token_budget,
                             stride=stride, temperature=temperature)
        log.info(
            "loaded %s: engine=%s labels=%s max_length=%d temperature=%.4g in %.1fs", path, classifier.engine.name,
            ",".join(classifier.labels), classifier.max_length, classifier.temperature, time.monotonic() - started,
        )
        return classifier

    def predict(self, texts: Sequence[str], *, max_tokens: int | None = None) -> list[Prediction]:
        """One Prediction per text, same order; long texts are windowed, never truncated. With max_tokens, texts
        that tokenize to more word pieces than that raise TooManyTokens before any forward pass."""
        if isinstance(texts, str):
            raise TypeError("predict takes a sequence of texts, not one str")
        if not texts:
            return []
        with self._lock:
            windows = self._windows(texts)
            tokens = sum(w.weight for w in windows)
            if max_tokens is not None and tokens > max_tokens:
                raise TooManyTokens(tokens, max_tokens)
            probs = self._forward([w.ids for w in windows])
        return self._collect(len(texts), windows, probs)

    def _windows(self, texts: Sequence[str]) -> list[_Window]:
        encoded = self.encoder.encode(texts)
        cls_id, sep_id = self.encoder.special.cls, self.encoder.special.sep
        size = self.max_length - 2
        windows = []
        for t, ids in enumerate(encoded):
            for start, end in window_spans(len(ids), size, self.stride):
                windows.append(_Window(t, [cls_id, *ids[start:end], sep_id], end - start))
        return windows

    def _forward(self, rows: list[list[int]]) -> np.ndarray:
        out = np.zeros((len(rows), len(self.labels)), dtype=np.float32)
        for batch in pack_batches([len(r) for r in rows], self.token_budget):
            ids, mask = pad_rows([rows[i] for i in batch], self.encoder.special.pad)
            out[batch] = self.engine.forward(ids, mask)
        return out

    def _collect(self, n_texts: int, windows: list[_Window], probs: np.ndarray) -> list[Prediction]:
        rows: list[list[int]] = [[] for _ in range(n_texts)]
        for i, w in enumerate(windows):
            rows[w.text].append(i)
        return [self._prediction(probs[r], [windows[i].weight for i in r]) for r in rows]

    def _prediction(self, probs: np.ndarray, weights: list[int]) -> Prediction:
        mean = calibration.apply(aggregate_windows(probs, weights), self.temperature)
        top = int(mean.argmax())
        scores = {label: float(p) for label, p in zip(self.labels, mean, strict=True)}
        return Prediction(label=self.labels[top], score=float(mean[top]), probs=scores, windows=len(weights))


def pad_rows(rows: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 ids and attention mask [rows, longest row], right-padded with pad_id."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
    return ids, mask


def labels_of(config: Any) -> tuple[str, ...]:
    """A transformers config's label names in id order; InvalidCheckpoint unless the ids are 0..n-1, n >= 2."""
    id2label = {int(k): str(v) for k, v in config.id2label.items()}
    if sorted(id2label) != list(range(len(id2label))) or len(id2label) < 2:
        raise InvalidCheckpoint(f"id2label must number at least 2 labels 0..n-1, got {sorted(id2label)}")
    return tuple(id2label[i] for i in range(len(id2label)))


def _labels(labels: Sequence[str]) -> tuple[str, ...]:
    if len(labels) < 2:
        raise InvalidCheckpoint(f"id2label must number at least 2 labels 0..n-1, got {list(labels)}")
    return tuple(str(label) for label in labels)


def _max_length(tokenizer: Any, config: Any) -> int:
    limits = [MAX_POSITIONS, int(getattr(config, "max_position_embeddings", None) or MAX_POSITIONS)]
    if isinstance(tokenizer.model_max_length, int) and tokenizer.model_max_length > 0:
        limits.append(tokenizer.model_max_length)
    return min(limits)
