"""Encoder: texts → word-piece ids, the same way whatever engine runs the model.

Both engines tokenize with one `tokenizers.Tokenizer` (the Rust tokenizer transformers' fast tokenizers wrap), so
switching engines never changes a token id. The torch path takes it from the checkpoint's transformers tokenizer;
the ONNX path reads the copy the engine build saved (onnx/tokenizer.json), which needs neither torch nor
transformers (importing transformers' AutoTokenizer imports torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer


@dataclass(frozen=True)
class SpecialIds:
    """The ids a window is framed and padded with."""

    cls: int
    sep: int
    pad: int


class Encoder:
    """Texts → ids without special tokens (never truncated, never padded), plus the [CLS]/[SEP]/[PAD] ids."""

    def __init__(self, tokenizer: Tokenizer, special: SpecialIds) -> None:
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())  # a private copy: its settings are ours to change
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.special = special

    @classmethod
    def from_transformers(cls, tokenizer: Any) -> Encoder:
        """The encoder inside a transformers fast tokenizer; ValueError when it has none (a Python-only one)."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if not isinstance(backend, Tokenizer):
            raise ValueError(f"{type(tokenizer).__name__} is not backed by a `tokenizers` tokenizer")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return cls(backend, SpecialIds(int(tokenizer.cls_token_id), int(tokenizer.sep_token_id), int(pad)))

    @classmethod
    def from_file(cls, path: Path, special: SpecialIds) -> Encoder:
        """The encoder saved as tokenizer.json (Encoder.save)."""
        return cls(Tokenizer.from_file(str(path)), special)

    def save(self, path: Path) -> None:
        """Write the tokenizer as one tokenizer.json (the special ids are the caller's to record)."""
        self.tokenizer.save(str(path))

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """One id list per text, no special tokens added."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def pieces(self, text: str) -> list[str]:
        """The word pieces of one text (tests and checks read them)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).tokens)

    def vocab_size(self) -> int:
        """How many tokens the vocabulary holds (added tokens included)."""
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))
