"""Write data/sst2/calibration_rows.tsv: the starter's calibration split, drawn once from SST-2 train (seeded).

SST-2 dev holds whole sentences; train mostly phrases cut from sentences. The split takes whole sentences only:
rows of at least MIN_WORDS words that are no word-span of any other train row (a sentence of the treebank, not
a fragment of one), COUNT of them by a seeded draw. The file lists 0-based data-row indexes of train.tsv with
their label, so a reader can check it still points at the same rows. The starter (backend.starter) keeps these
rows, and every train row that is a word-span of one of them, out of training and early stopping.

Run: python -m devtools.sst2_calibration_split [DATA_DIR]   (deterministic: the same train.tsv gives the same file)
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from backend.datasets import LABELS, read_examples
from backend.starter import whole_sentences

MIN_WORDS = 15
COUNT = 1000
SEED = 20261201


def main(data_dir: Path) -> None:
    train = read_examples(data_dir / "sst2" / "train.tsv")
    chosen = sorted(random.Random(SEED).sample(whole_sentences([e.text for e in train], MIN_WORDS), COUNT))
    code = {label: digit for digit, label in LABELS.items()}
    lines = ["row\tlabel", *(f"{i}\t{code[train[i].label]}" for i in chosen)]
    out = data_dir / "sst2" / "calibration_rows.tsv"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}: {COUNT} rows")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("data"))
