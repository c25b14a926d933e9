"""SentimentClassifier: one sequence-classification checkpoint, loaded once, batched windowed inference.

Long texts are never truncated: a text longer than the model's window is split into overlapping windows,
each window is classified, and the text's probabilities are the windows' probabilities averaged with
each window's token count as weight. All windows of one `predict` call are sorted by length and packed
into batches of at most `token_budget` padded tokens (performance-baseline.md: dynamic padding beats
fixed row counts, and long rows want small batches).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from backend import calibration
from backend.errors import InvalidCheckpoint, TooManyTokens
from backend.model.types import Prediction

log = logging.getLogger(__name__)

MAX_POSITIONS = 512
MAX_ROWS_PER_BATCH = 64
_LOAD_ERRORS = (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError)
_TOKENIZER_PROBE = "the movie was good and the end was bad"


@dataclass(frozen=True)
class _Window:
    """One model row: the text it belongs to, its token ids with [CLS]/[SEP], and its weight (content tokens)."""

    text: int
    ids: list[int]
    weight: int


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and load reports for the duration of the block, then restore them."""
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def resolve_device(device: str) -> torch.device:
    """"auto" → cuda when available, else cpu; any other value is passed to torch.device as is."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
        self, model: Any, tokenizer: Any, *, device: torch.device | str = "cpu", token_budget: int = 2048,
        stride: int = 128, temperature: float = 1.0,
    ) -> None:
        self.temperature = calibration.check_temperature(temperature)
        self.device = resolve_device(str(device))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.labels = _labels(model.config)
        self.max_length = _max_length(tokenizer, model.config)
        self.token_budget = token_budget
        self.stride = min(stride, (self.max_length - 2) // 2)
        self._special = _special_ids(tokenizer)
        self._lock = threading.Lock()

    @classmethod
    def from_path(
        cls, path: Path | str, *, device: str = "auto", token_budget: int = 2048, stride: int = 128,
        temperature: float = 1.0,
    ) -> SentimentClassifier:
        """Load tokenizer and model from a local checkpoint directory once; raises InvalidCheckpoint."""
        path = Path(path)
        started = time.monotonic()
        _check_config(path)
        model, tokenizer = _load(path)
        classifier = cls(model, tokenizer, device=resolve_device(device), token_budget=token_budget, stride=stride,
                         temperature=temperature)
        log.info(
            "loaded %s: labels=%s max_length=%d device=%s temperature=%.4g in %.1fs", path, ",".join(classifier.labels),
            classifier.max_length, classifier.device, classifier.temperature, time.monotonic() - started,
        )
        return classifier

    def predict(self, texts: Sequence[str], *, max_tokens: int | None = None) -> list[Prediction]:
        """One Prediction per text, same order; long texts are windowed, never truncated. With max_tokens, texts
        that tokenize to more word pieces than that raise TooManyTokens before any forward pass."""
        if isinstance(texts, str):
            raise TypeError("predict takes a sequence of texts, not one str")
        if not texts:
            return []
        with self._lock, torch.inference_mode():
            windows = self._windows(texts)
            tokens = sum(w.weight for w in windows)
            if max_tokens is not None and tokens > max_tokens:
                raise TooManyTokens(tokens, max_tokens)
            probs = self._forward([w.ids for w in windows])
        return self._collect(len(texts), windows, probs)

    def _windows(self, texts: Sequence[str]) -> list[_Window]:
        encoded = self.tokenizer(
            list(texts), add_special_tokens=False, truncation=False, verbose=False, return_attention_mask=False
        )["input_ids"]
        cls_id, sep_id, _ = self._special
        size = self.max_length - 2
        windows = []
        for t, ids in enumerate(encoded):
            for start, end in window_spans(len(ids), size, self.stride):
                windows.append(_Window(t, [cls_id, *ids[start:end], sep_id], end - start))
        return windows

    def _forward(self, rows: list[list[int]]) -> np.ndarray:
        out = np.zeros((len(rows), len(self.labels)), dtype=np.float32)
        for batch in pack_batches([len(r) for r in rows], self.token_budget):
            ids, mask = self._pad([rows[i] for i in batch])
            logits = self.model(input_ids=ids, attention_mask=mask).logits
            out[batch] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out

    def _pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        pad_id = self._special[2]
        ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)
        return ids.to(self.device), mask.to(self.device)

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


def _invalid(path: Path, reason: str) -> InvalidCheckpoint:
    return InvalidCheckpoint(f"{path} is not a loadable sequence-classification checkpoint: {reason}")


def _check_config(path: Path) -> None:
    """Cheap checks on config.json before loading any weights."""
    if not path.is_dir():
        raise _invalid(path, "not a directory")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _invalid(path, "no config.json") from None
    except (OSError, ValueError) as exc:
        raise _invalid(path, f"config.json is unreadable ({exc})") from None
    labels = config.get("id2label") if isinstance(config, dict) else None
    if not isinstance(labels, dict):
        raise _invalid(path, "config.json has no id2label (a bare encoder, not a classifier)")
    if len(labels) < 2:
        raise _invalid(path, f"config.json names {len(labels)} label(s); at least 2 are needed")


def _load(path: Path) -> tuple[Any, Any]:
    """Tokenizer and model from disk only, with transformers kept quiet; a missing head or tokenizer is an error."""
    with quiet_transformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model, info = AutoModelForSequenceClassification.from_pretrained(
                path, local_files_only=True, output_loading_info=True
            )
        except _LOAD_ERRORS as exc:
            raise _invalid(path, _first_line(exc)) from exc
    if info.get("missing_keys"):
        missing = ", ".join(sorted(info["missing_keys"])[:3])
        raise _invalid(path, f"weights missing from the checkpoint ({missing})")
    _check_tokenizer(path, tokenizer)
    return model, tokenizer


def _check_tokenizer(path: Path, tokenizer: Any) -> None:
    """transformers builds a 5-token placeholder when the tokenizer files are absent: refuse it."""
    ids = tokenizer(_TOKENIZER_PROBE, add_special_tokens=False)["input_ids"]
    if len(tokenizer) < 100 or all(i == tokenizer.unk_token_id for i in ids):
        raise _invalid(path, "tokenizer files missing or empty (every word becomes [UNK])")
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise _invalid(path, "tokenizer has no [CLS]/[SEP] tokens")


def _labels(config: Any) -> tuple[str, ...]:
    id2label = {int(k): str(v) for k, v in config.id2label.items()}
    if sorted(id2label) != list(range(len(id2label))) or len(id2label) < 2:
        raise InvalidCheckpoint(f"id2label must number at least 2 labels 0..n-1, got {sorted(id2label)}")
    return tuple(id2label[i] for i in range(len(id2label)))


def _max_length(tokenizer: Any, config: Any) -> int:
    limits = [MAX_POSITIONS, int(getattr(config, "max_position_embeddings", None) or MAX_POSITIONS)]
    if isinstance(tokenizer.model_max_length, int) and tokenizer.model_max_length > 0:
        limits.append(tokenizer.model_max_length)
    length = min(limits)
    if length < 4:
        raise InvalidCheckpoint(f"max_length {length} leaves no room for text between [CLS] and [SEP]")
    return length


def _special_ids(tokenizer: Any) -> tuple[int, int, int]:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return int(tokenizer.cls_token_id), int(tokenizer.sep_token_id), int(pad)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
