"""fine_tune on a tiny random model and toy data; evaluate()'s metrics on hand-made predictions."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DistilBertConfig, DistilBertModel

from backend.model.classifier import SentimentClassifier
from backend.model.types import Example, Prediction
from backend.training import (
    TrainParams,
    TrainProgress,
    WeightAverage,
    distillation_loss,
    encode_examples,
    evaluate,
    expected_calibration_error,
    fine_tune,
    lr_factor,
    plan_batches,
    score_predictions,
    select_sentence_like,
)
from tests.modelfactory import TINY, build_tokenizer

pytestmark = pytest.mark.unit

POSITIVE_WORDS = ["great", "wonderful", "excellent", "delightful", "superb", "moving", "brilliant", "charming"]
NEGATIVE_WORDS = ["awful", "terrible", "boring", "dreadful", "dull", "lifeless", "horrible", "tedious"]
FAST = TrainParams(epochs=4, learning_rate=3e-3, batch_size=8, token_budget=256, max_length=32, warmup_ratio=0.1)


def _toy(n: int = 64, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words, label = (POSITIVE_WORDS, "POSITIVE") if i % 2 else (NEGATIVE_WORDS, "NEGATIVE")
        rows.append(Example(f"the film was {rng.choice(words)} and {rng.choice(words)}", label))
    return rows


def _accuracy(classifier: SentimentClassifier, examples: list[Example]) -> float:
    return float(evaluate(classifier, examples)["accuracy"])


def test_fine_tune_learns_the_toy_task(tiny_model_dir: Path, tmp_path: Path) -> None:
    toy = _toy()
    before = _accuracy(SentimentClassifier.from_path(tiny_model_dir, device="cpu"), toy)
    seen: list[TrainProgress] = []
    result = fine_tune(toy, tiny_model_dir, tmp_path / "out", FAST, progress=seen.append)
    after = SentimentClassifier.from_path(tmp_path / "out", device="cpu")
    assert after.labels == ("NEGATIVE", "POSITIVE")
    assert _accuracy(after, toy) >= 0.95 > before + 0.2
    assert sum(result.losses[-4:]) < sum(result.losses[:4])
    assert result.steps == result.total_steps == len(seen) and result.examples_seen == 4 * len(toy)
    assert not result.hit_budget and not result.stopped_early
    assert [p.step for p in seen] == list(range(1, result.steps + 1))
    assert seen[-1].epoch == pytest.approx(4.0) and seen[-1].eta_s == 0


def test_fine_tune_is_deterministic(tiny_model_dir: Path, tmp_path: Path) -> None:
    params = TrainParams(epochs=1, learning_rate=1e-3, batch_size=8, token_budget=256, max_length=32, seed=3)
    a = fine_tune(_toy(32), tiny_model_dir, tmp_path / "a", params)
    b = fine_tune(_toy(32), tiny_model_dir, tmp_path / "b", params)
    assert a.losses == b.losses


def test_max_seconds_stops_cleanly(tiny_model_dir: Path, tmp_path: Path) -> None:
    params = TrainParams(epochs=50, batch_size=4, token_budget=128, max_length=32, max_seconds=0.0)
    result = fine_tune(_toy(), tiny_model_dir, tmp_path / "out", params)
    assert result.hit_budget and result.steps == 1 < result.total_steps
    assert SentimentClassifier.from_path(tmp_path / "out", device="cpu").predict(["ok"])[0].windows == 1


def test_early_stopping_keeps_the_best_checkpoint(tiny_model_dir: Path, tmp_path: Path) -> None:
    params = TrainParams(epochs=3, learning_rate=0.0, batch_size=8, token_budget=256, max_length=32,
                         eval_every=2, patience=2)
    result = fine_tune(_toy(), tiny_model_dir, tmp_path / "out", params, eval_examples=_toy(16, seed=1))
    assert result.stopped_early and result.best_step == 2 and result.steps == 6
    assert result.best_eval is not None and result.best_eval["n"] == 16
    assert (tmp_path / "out" / "config.json").exists()


def test_distillation_loss_on_hand_computed_values() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])  # softmax: (0.25, 0.75) and (0.5, 0.5)
    targets = torch.tensor([1, 0])
    soft = torch.tensor([[0.5, 0.5], [0.0, 0.0]])
    has_soft = torch.tensor([True, False])
    hard = [-math.log(0.75), -math.log(0.5)]
    # T = 1: KL((0.5, 0.5) ‖ (0.25, 0.75)) = 0.5·ln(0.5/0.25) + 0.5·ln(0.5/0.75)
    kl = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    got = distillation_loss(logits, targets, soft, has_soft, 0.6, 1.0)
    assert float(got) == pytest.approx(((0.4 * hard[0] + 0.6 * kl) + hard[1]) / 2, rel=1e-6)
    # T = 2: the student's logits are halved, softmax (1/(1+√3), √3/(1+√3)); the KL term is scaled by T² = 4
    q = 1.0 / (1.0 + math.sqrt(3.0))
    kl2 = 0.5 * math.log(0.5 / q) + 0.5 * math.log(0.5 / (1.0 - q))
    got2 = distillation_loss(logits, targets, soft, has_soft, 0.6, 2.0)
    assert float(got2) == pytest.approx(((0.4 * hard[0] + 0.6 * 4 * kl2) + hard[1]) / 2, rel=1e-6)
    # weight 0, or no row with a teacher: plain cross-entropy
    plain = (hard[0] + hard[1]) / 2
    assert float(distillation_loss(logits, targets, soft, has_soft, 0.0, 2.0)) == pytest.approx(plain, rel=1e-6)
    none = torch.tensor([False, False])
    assert float(distillation_loss(logits, targets, soft, none, 0.6, 2.0)) == pytest.approx(plain, rel=1e-6)


def test_a_teacher_overrides_the_gold_labels_it_covers(tiny_model_dir: Path, tmp_path: Path) -> None:
    toy = _toy()
    # the teacher disagrees with every gold label: with weight 1 the student learns the teacher
    teacher = {e.text: ({"POSITIVE": 0.05, "NEGATIVE": 0.95} if e.label == "POSITIVE" else
                        {"POSITIVE": 0.95, "NEGATIVE": 0.05}) for e in toy}
    params = replace(FAST, epochs=8, distill_weight=1.0, distill_temperature=1.0)
    fine_tune(toy, tiny_model_dir, tmp_path / "out", params, teacher=teacher)
    student = SentimentClassifier.from_path(tmp_path / "out", device="cpu")
    assert _accuracy(student, toy) <= 0.05


def test_weight_average_is_the_mean_of_the_snapshots() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model)
    for value in (1.0, 2.0, 6.0):
        with torch.no_grad():
            model[0].weight.fill_(value)
        model[1].num_batches_tracked.fill_(int(value))
        average.add()
    average.apply()
    assert average.count == 3
    assert torch.allclose(model[0].weight, torch.full((2, 3), 3.0))
    assert int(model[1].num_batches_tracked) == 6  # an integer buffer keeps its last value


def test_fine_tune_averages_the_last_share_of_the_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    averaged = fine_tune(_toy(), tiny_model_dir, tmp_path / "avg", replace(FAST, average_last=0.5, average_every=2))
    last = fine_tune(_toy(), tiny_model_dir, tmp_path / "last", FAST)
    assert averaged.steps == 32  # 4 epochs of 8 batches; snapshots at the even steps 16, 18, …, 32: 9 of them
    assert averaged.averaged == 9 and averaged.summary()["averaged"] == 9 and last.averaged == 0
    assert averaged.losses == last.losses  # the same trajectory: only the saved weights differ
    a, b = (SentimentClassifier.from_path(tmp_path / d, device="cpu") for d in ("avg", "last"))
    pa, pb = a.predict(["the film was great"])[0], b.predict(["the film was great"])[0]
    assert pa.probs != pb.probs


def test_frozen_embeddings_are_saved_as_the_base_has_them(tiny_model_dir: Path, tmp_path: Path) -> None:
    fine_tune(_toy(), tiny_model_dir, tmp_path / "frozen", replace(FAST, freeze_embeddings=True))
    base, out = (_weights(d) for d in (tiny_model_dir, tmp_path / "frozen"))
    word = next(k for k in out if k.endswith("word_embeddings.weight"))
    assert torch.equal(out[word], base[word])
    moved = [k for k in out if k in base and k != word and not torch.equal(out[k], base[k])]
    assert any("position_embeddings" in k for k in moved) and any("attention" in k for k in moved)


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    model = AutoModelForSequenceClassification.from_pretrained(directory, local_files_only=True)
    return dict(model.state_dict())


def test_a_bare_encoder_gets_a_fresh_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    base = tmp_path / "bare"
    DistilBertModel(DistilBertConfig(vocab_size=30522, max_position_embeddings=64, **TINY)).save_pretrained(base)
    build_tokenizer(64).save_pretrained(base)
    toy = [Example(e.text, e.label[:3]) for e in _toy(16)]
    fine_tune(toy, base, tmp_path / "out", TrainParams(epochs=1, batch_size=8, max_length=32), labels=("NEG", "POS"))
    trained = SentimentClassifier.from_path(tmp_path / "out", device="cpu")
    assert trained.labels == ("NEG", "POS")
    assert trained.encoder.encode(["great film"]) == [[2307, 2143]]


def test_encode_examples_counts_cuts_and_rejects_unknown_labels(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = [Example("one two three four five six seven eight nine ten", "POSITIVE"), Example("ok", "NEGATIVE")]
    rows, truncated = encode_examples(tok, examples, ["NEGATIVE", "POSITIVE"], max_length=6)
    assert truncated == 1
    assert rows[0] == ([101, 2028, 2048, 2093, 2176, 102], 1, None)
    assert rows[1] == ([101, 7929, 102], 0, None)
    taught, _ = encode_examples(tok, examples, ["NEGATIVE", "POSITIVE"], 6, {"ok": {"POSITIVE": 0.3, "NEGATIVE": 0.7}})
    assert [r[2] for r in taught] == [None, (0.7, 0.3)]  # in the model's label order
    with pytest.raises(ValueError, match="MAYBE"):
        encode_examples(tok, [Example("x", "MAYBE")], ["NEGATIVE", "POSITIVE"], max_length=6)


def test_plan_batches_covers_each_epoch_within_budget() -> None:
    lengths = [random.Random(i).randint(3, 40) for i in range(200)]
    params = TrainParams(epochs=1.5, batch_size=16, token_budget=256)
    plan = plan_batches(lengths, params)
    one_epoch = plan_batches(lengths, TrainParams(epochs=1, batch_size=16, token_budget=256))
    assert sorted(i for b in one_epoch for i in b) == list(range(200))
    second = plan_batches(lengths, TrainParams(epochs=2, batch_size=16, token_budget=256))[len(one_epoch):]
    assert plan == one_epoch + second[: round(0.5 * len(second))]
    for batch in plan:
        assert len(batch) <= 16 and (len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 256)
    assert plan == plan_batches(lengths, params)  # seeded


class _Fixed:
    """A fake classifier that returns hand-made predictions."""

    def __init__(self, predictions: list[Prediction]) -> None:
        self.predictions = predictions

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        assert len(texts) == len(self.predictions)
        return self.predictions


def _pred(label: str, score: float) -> Prediction:
    other = "NEGATIVE" if label == "POSITIVE" else "POSITIVE"
    probs = {"NEGATIVE": 0.0, "POSITIVE": 0.0} | {label: score, other: 1 - score}
    return Prediction(label=label, score=score, probs=probs)


def test_evaluate_metrics_on_known_values() -> None:
    gold = ["POSITIVE", "POSITIVE", "POSITIVE", "NEGATIVE"]
    preds = [_pred("POSITIVE", 0.9), _pred("POSITIVE", 0.83), _pred("NEGATIVE", 0.62), _pred("NEGATIVE", 0.71)]
    metrics = evaluate(_Fixed(preds), [Example(str(i), g) for i, g in enumerate(gold)])
    assert metrics["n"] == 4
    assert metrics["accuracy"] == 0.75
    # F1(POSITIVE) = 2·2/(2+3) = 0.8, F1(NEGATIVE) = 2·1/(2+1) = 2/3
    assert metrics["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    expected_log_loss = -(math.log(0.9) + math.log(0.83) + math.log(0.38) + math.log(0.71)) / 4
    assert metrics["log_loss"] == pytest.approx(expected_log_loss)
    assert metrics["log_loss"] == pytest.approx(0.40044, abs=1e-5)
    # every score falls in its own bin: ECE = mean |correct − confidence|
    assert metrics["ece"] == pytest.approx((0.1 + 0.17 + 0.62 + 0.29) / 4)
    assert metrics["confusion"] == {
        "NEGATIVE": {"NEGATIVE": 1, "POSITIVE": 0},
        "POSITIVE": {"NEGATIVE": 1, "POSITIVE": 2},
    }


def test_ece_averages_within_a_bin_before_taking_the_gap() -> None:
    preds = [_pred("POSITIVE", 0.90), _pred("POSITIVE", 0.91)]  # same bin (13/15, 14/15]: acc 0.5, conf 0.905
    assert expected_calibration_error(preds, ["POSITIVE", "NEGATIVE"]) == pytest.approx(0.405)
    perfect = [_pred("POSITIVE", 1.0)] * 3
    assert expected_calibration_error(perfect, ["POSITIVE"] * 3) == pytest.approx(0.0)


def test_score_predictions_edge_cases() -> None:
    all_right = score_predictions([_pred("NEGATIVE", 1.0)], ["NEGATIVE"])
    assert all_right["accuracy"] == 1.0 and all_right["macro_f1"] == 1.0 and all_right["log_loss"] == pytest.approx(0)
    assert score_predictions([_pred("NEGATIVE", 1.0)], ["POSITIVE"])["log_loss"] == pytest.approx(-math.log(1e-12))
    with pytest.raises(ValueError):
        score_predictions([], [])


def test_lr_factor_warms_up_then_decays_by_steps_or_time() -> None:
    assert [lr_factor(s, 10, 2) for s in range(2)] == [0.5, 1.0]
    assert lr_factor(2, 10, 2) == 1.0 and lr_factor(6, 10, 2) == 0.5 and lr_factor(10, 10, 2) == 0.0
    assert lr_factor(2, 10, 2, time_fraction=0.75) == pytest.approx(0.25)  # the clock is further along than steps
    assert lr_factor(3, 10, 2, time_fraction=1.5) == 0.0


def test_select_sentence_like_keeps_rows_of_enough_words() -> None:
    rows = [Example("laughably", "NEGATIVE"), Example("a warm film", "POSITIVE"), Example("it 's a mess", "NEGATIVE")]
    assert select_sentence_like(rows, 0) == select_sentence_like(rows, 1) == rows
    assert [e.text for e in select_sentence_like(rows, 3)] == ["a warm film", "it 's a mess"]
    assert [e.text for e in select_sentence_like(rows, 4)] == ["it 's a mess"]  # PTB tokens count as words
    with pytest.raises(ValueError, match="5 words or more"):
        select_sentence_like(rows, 5)
