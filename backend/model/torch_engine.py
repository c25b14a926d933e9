"""The torch engine: a transformers sequence-classification checkpoint, fp32 (the exact reference), on CPU or CUDA.

Also where a checkpoint directory is validated and loaded through transformers (tokenizer and model), which the
ONNX build starts from too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from backend.errors import InvalidCheckpoint
from backend.model.engine import TORCH

_LOAD_ERRORS = (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError)
_TOKENIZER_PROBE = "the movie was good and the end was bad"
_threads_lock = threading.Lock()  # torch's intra-op pool is process-wide: one engine sets it at a time


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


class TorchEngine:
    """A transformers model in eval mode on one device; `threads` (None: torch's default) sizes torch's intra-op
    pool for the duration of each forward only, so a worker's training keeps its own thread count."""

    name = TORCH

    def __init__(self, model: Any, *, device: torch.device | str = "cpu", threads: int | None = None) -> None:
        self.device = resolve_device(str(device))
        self.model = model.to(self.device).eval()
        self.threads = threads

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Softmax probabilities (float32) of the padded rows."""
        with self._threads(), torch.inference_mode():
            logits = self.model(input_ids=torch.from_numpy(ids).to(self.device),
                                attention_mask=torch.from_numpy(mask).to(self.device)).logits
            return np.asarray(torch.softmax(logits.float(), dim=-1).cpu().numpy(), dtype=np.float32)

    @contextmanager
    def _threads(self) -> Iterator[None]:
        if self.threads is None or self.device.type != "cpu":
            yield
            return
        with _threads_lock:
            before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                yield
            finally:
                torch.set_num_threads(before)


def invalid(path: Path, reason: str) -> InvalidCheckpoint:
    """The error for a directory that is not a usable checkpoint, naming it and why."""
    return InvalidCheckpoint(f"{path} is not a loadable sequence-classification checkpoint: {reason}")


def check_config(path: Path) -> None:
    """Cheap checks on config.json before loading any weights."""
    if not path.is_dir():
        raise invalid(path, "not a directory")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise invalid(path, "no config.json") from None
    except (OSError, ValueError) as exc:
        raise invalid(path, f"config.json is unreadable ({exc})") from None
    labels = config.get("id2label") if isinstance(config, dict) else None
    if not isinstance(labels, dict):
        raise invalid(path, "config.json has no id2label (a bare encoder, not a classifier)")
    if len(labels) < 2:
        raise invalid(path, f"config.json names {len(labels)} label(s); at least 2 are needed")


def load_checkpoint(path: Path, **model_kwargs: Any) -> tuple[Any, Any]:
    """(model, tokenizer) from disk only, with transformers kept quiet; a missing head or tokenizer is an error."""
    check_config(path)
    with quiet_transformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model, info = AutoModelForSequenceClassification.from_pretrained(
                path, local_files_only=True, output_loading_info=True, **model_kwargs
            )
        except _LOAD_ERRORS as exc:
            raise invalid(path, _first_line(exc)) from exc
    if info.get("missing_keys"):
        missing = ", ".join(sorted(info["missing_keys"])[:3])
        raise invalid(path, f"weights missing from the checkpoint ({missing})")
    _check_tokenizer(path, tokenizer)
    return model, tokenizer


def _check_tokenizer(path: Path, tokenizer: Any) -> None:
    """transformers builds a 5-token placeholder when the tokenizer files are absent: refuse it."""
    ids = tokenizer(_TOKENIZER_PROBE, add_special_tokens=False)["input_ids"]
    if len(tokenizer) < 100 or all(i == tokenizer.unk_token_id for i in ids):
        raise invalid(path, "tokenizer files missing or empty (every word becomes [UNK])")
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise invalid(path, "tokenizer has no [CLS]/[SEP] tokens")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
