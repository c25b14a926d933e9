"""Docker build step: save a Hugging Face sequence-classification checkpoint (weights + tokenizer) to a directory.

    python fetch_model.py MODEL OUT_DIR

MODEL is a hub id (default of the image: distilbert-base-uncased-finetuned-sst-2-english) or a local checkpoint
directory. Only what `from_pretrained` needs is downloaded (safetensors when the repo has them), not every format
a hub repo carries. The image then runs `sentiment-backend models import OUT_DIR`, so it serves offline.
"""

from __future__ import annotations

import sys
from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer


def main(model: str, out_dir: Path) -> None:
    """Download (or read) the model and its tokenizer and save both under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    AutoTokenizer.from_pretrained(model).save_pretrained(out_dir)
    AutoModelForSequenceClassification.from_pretrained(model).save_pretrained(out_dir)
    sys.stdout.write(f"saved {model} to {out_dir}: {sorted(p.name for p in out_dir.iterdir())}\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: fetch_model.py MODEL OUT_DIR")
    main(sys.argv[1], Path(sys.argv[2]))
