"""SentimentClassifier on a tiny random DistilBERT: order, probabilities, batching, windows, bad checkpoints."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.errors import InvalidCheckpoint, TooManyTokens
from backend.model.classifier import SentimentClassifier, aggregate_windows, pack_batches, window_spans
from backend.model.torch_engine import TorchEngine
from tests.modelfactory import build_distilbert

pytestmark = pytest.mark.unit

TEXTS = [
    "The movie was great!",
    "a dull , lifeless and overlong mess",
    "",
    "it 's a charming and often affecting journey .",
    "bad",
    "one of the most exhilarating films of the year , with a cast that never hits a false note " * 3,
]
LONG_TEXT = " ".join(f"word{i % 37} sentence number {i} was rather good ." for i in range(60))


@pytest.fixture(scope="module")
def short_window_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_distilbert(tmp_path_factory.mktemp("tiny32"), max_length=32, seed=1)


def _probs(prediction: object) -> np.ndarray:
    return np.array(list(prediction.probs.values()))  # type: ignore[attr-defined]


def test_loads_labels_and_limits(tiny_classifier: SentimentClassifier) -> None:
    assert tiny_classifier.labels == ("NEGATIVE", "POSITIVE")
    assert tiny_classifier.max_length == 64
    engine = tiny_classifier.engine
    assert isinstance(engine, TorchEngine) and engine.name == "torch"
    assert engine.device == torch.device("cpu")
    assert not engine.model.training


def test_tokenizer_yields_real_word_pieces(tiny_classifier: SentimentClassifier) -> None:
    encoder = tiny_classifier.encoder
    assert encoder.encode(["The movie was great!"]) == [[1996, 3185, 2001, 2307, 999]]
    assert (encoder.special.cls, encoder.special.sep, encoder.special.pad) == (101, 102, 0)
    assert encoder.pieces("unflinchingly") == ["un", "##fl", "##in", "##ching", "##ly"]


def test_predictions_are_well_formed(tiny_classifier: SentimentClassifier) -> None:
    predictions = tiny_classifier.predict(TEXTS)
    assert len(predictions) == len(TEXTS)
    for p in predictions:
        assert list(p.probs) == ["NEGATIVE", "POSITIVE"]
        assert sum(p.probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert p.label == max(p.probs, key=p.probs.__getitem__)
        assert p.score == p.probs[p.label]
    assert [p.windows for p in predictions] == [1, 1, 1, 1, 1, 2]  # the last text is longer than 62 tokens


def test_batch_equals_one_by_one_and_keeps_order(tiny_classifier: SentimentClassifier) -> None:
    batched = tiny_classifier.predict(TEXTS)
    single = [tiny_classifier.predict([t])[0] for t in TEXTS]
    for b, s in zip(batched, single, strict=True):
        assert b.label == s.label
        np.testing.assert_allclose(_probs(b), _probs(s), atol=1e-5)
    reversed_batch = tiny_classifier.predict(TEXTS[::-1])
    for r, s in zip(reversed_batch, single[::-1], strict=True):
        np.testing.assert_allclose(_probs(r), _probs(s), atol=1e-5)
    # the texts really get different outputs, so the order checks above can fail
    assert len({round(p.probs["POSITIVE"], 7) for p in single}) == len(TEXTS)


def test_token_budget_does_not_change_results(tiny_model_dir: Path, tiny_classifier: SentimentClassifier) -> None:
    small = SentimentClassifier.from_path(tiny_model_dir, device="cpu", token_budget=16)
    for a, b in zip(small.predict(TEXTS), tiny_classifier.predict(TEXTS), strict=True):
        np.testing.assert_allclose(_probs(a), _probs(b), atol=1e-5)


def test_empty_inputs(tiny_classifier: SentimentClassifier) -> None:
    assert tiny_classifier.predict([]) == []
    with pytest.raises(TypeError):
        tiny_classifier.predict("a bare string would be split into characters")
    (only,) = tiny_classifier.predict([""])
    assert only.windows == 1
    assert sum(only.probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_long_text_is_windowed_not_truncated(short_window_dir: Path) -> None:
    clf = SentimentClassifier.from_path(short_window_dir, device="cpu", stride=8)
    n_tokens = len(clf.encoder.encode([LONG_TEXT])[0])
    spans = window_spans(n_tokens, 30, 8)
    (long_pred, short_pred) = clf.predict([LONG_TEXT, "fine"])
    assert clf.max_length == 32 and n_tokens > 300
    assert long_pred.windows == len(spans) > 10
    assert short_pred.windows == 1
    np.testing.assert_allclose(_probs(long_pred), _manual_window_average(clf, LONG_TEXT, spans), atol=1e-5)


def _manual_window_average(clf: SentimentClassifier, text: str, spans: list[tuple[int, int]]) -> np.ndarray:
    """The windowing done by hand: each window alone through the model, weighted by its token count."""
    ids = clf.encoder.encode([text])[0]
    special = clf.encoder.special
    model = clf.engine.model  # type: ignore[attr-defined]
    rows, weights = [], []
    with torch.inference_mode():
        for start, end in spans:
            window = torch.tensor([[special.cls, *ids[start:end], special.sep]])
            rows.append(torch.softmax(model(input_ids=window).logits, -1)[0].numpy())
            weights.append(end - start)
    return np.average(np.array(rows), axis=0, weights=weights)


def test_default_stride_is_clamped_for_a_small_window(short_window_dir: Path) -> None:
    clf = SentimentClassifier.from_path(short_window_dir, device="cpu")  # stride 128 > window 30
    assert clf.stride == 15
    (p,) = clf.predict([LONG_TEXT])
    assert p.windows > 1


@pytest.mark.parametrize(
    ("n", "size", "stride"),
    [(0, 10, 2), (1, 10, 2), (10, 10, 2), (11, 10, 2), (100, 10, 0), (100, 10, 9), (1000, 510, 128), (37, 5, 3)],
)
def test_window_spans_cover_every_token_with_the_overlap(n: int, size: int, stride: int) -> None:
    spans = window_spans(n, size, stride)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(0 < end - start <= size for start, end in spans if n)
    for (_, prev_end), (start, _) in zip(spans, spans[1:], strict=False):
        assert prev_end - start == stride  # neighbours share exactly `stride` tokens
    covered = set().union(*(range(s, e) for s, e in spans))
    assert covered == set(range(n))


def test_window_spans_examples_and_errors() -> None:
    assert window_spans(25, 10, 3) == [(0, 10), (7, 17), (14, 24), (21, 25)]
    assert window_spans(5, 10, 3) == [(0, 5)]
    with pytest.raises(ValueError):
        window_spans(20, 10, 10)


def test_aggregate_windows_weights_by_token_count() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    np.testing.assert_allclose(aggregate_windows(probs, [3, 1]), [0.725, 0.275])
    np.testing.assert_allclose(aggregate_windows(probs[:1], [0]), [0.9, 0.1])


def test_pack_batches_respects_budget_and_row_cap() -> None:
    lengths = [5, 40, 7, 3, 100, 12, 12, 9, 30, 2] * 10
    batches = pack_batches(lengths, token_budget=64, max_rows=8)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 8
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 64
    assert [lengths[i] for b in batches for i in b] == sorted(lengths)  # length-sorted → little padding
    assert [[i] for i in range(len(lengths)) if lengths[i] == 100] == [b for b in batches if lengths[b[0]] == 100]


def test_predict_is_thread_safe(tiny_classifier: SentimentClassifier) -> None:
    expected = tiny_classifier.predict(TEXTS)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: tiny_classifier.predict(TEXTS), range(8)))
    for result in results:
        for a, b in zip(result, expected, strict=True):
            np.testing.assert_allclose(_probs(a), _probs(b), atol=1e-6)


def _copy(src: Path, dst: Path, files: list[str]) -> Path:
    dst.mkdir()
    for name in files:
        shutil.copy(src / name, dst / name)
    return dst


def test_invalid_checkpoints_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    weights = ["config.json", "model.safetensors"]
    tokenizer = ["tokenizer.json", "tokenizer_config.json"]
    no_config = _copy(tiny_model_dir, tmp_path / "no-config", weights[1:] + tokenizer)
    no_tok = _copy(tiny_model_dir, tmp_path / "no-tokenizer", weights)
    one_label = _copy(tiny_model_dir, tmp_path / "one-label", weights + tokenizer)
    config = json.loads((one_label / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": "POSITIVE"}, {"POSITIVE": 0}
    (one_label / "config.json").write_text(json.dumps(config))
    bare = _copy(tiny_model_dir, tmp_path / "bare", weights + tokenizer)
    config = json.loads((bare / "config.json").read_text())
    del config["id2label"], config["label2id"]
    (bare / "config.json").write_text(json.dumps(config))
    cases = {no_config: "no config.json", no_tok: "tokenizer", one_label: "at least 2",
             bare: "no id2label", tmp_path / "absent": "not a directory"}
    for path, reason in cases.items():
        with pytest.raises(InvalidCheckpoint, match=reason) as info:
            SentimentClassifier.from_path(path, device="cpu")
        assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_weights_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = _copy(tiny_model_dir, tmp_path / "no-weights", ["config.json", "tokenizer.json", "tokenizer_config.json"])
    with pytest.raises(InvalidCheckpoint):
        SentimentClassifier.from_path(broken, device="cpu")


def test_more_word_pieces_than_max_tokens_is_refused_before_any_forward_pass(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    classifier = SentimentClassifier.from_path(tiny_model_dir, device="cpu")
    texts = ["the movie was good and the end was bad"] * 3  # 9 word pieces each
    assert len(classifier.predict(texts, max_tokens=27)) == 3  # exactly at the limit: predicted

    def no_forward(rows: list[list[int]]) -> np.ndarray:
        raise AssertionError("the model ran")

    monkeypatch.setattr(classifier, "_forward", no_forward)
    with pytest.raises(TooManyTokens) as raised:
        classifier.predict(texts, max_tokens=26)
    assert (raised.value.tokens, raised.value.limit) == (27, 26)
    assert "MAX_TOKENS_PER_PREDICT=26" in str(raised.value)


def test_a_temperature_changes_every_score_but_no_label(tiny_model_dir: Path) -> None:
    raw = SentimentClassifier.from_path(tiny_model_dir, device="cpu").predict(TEXTS)
    hot = SentimentClassifier.from_path(tiny_model_dir, device="cpu", temperature=0.25).predict(TEXTS)
    assert [p.label for p in hot] == [p.label for p in raw]
    for r, h in zip(raw, hot, strict=True):
        assert h.score > r.score  # T < 1 sharpens: the top class gets surer
        assert h.score == h.probs[h.label] and sum(h.probs.values()) == pytest.approx(1.0)
        z = np.log([r.probs["NEGATIVE"], r.probs["POSITIVE"]]) / 0.25  # softmax(logits / T) from the raw output
        assert h.probs["POSITIVE"] == pytest.approx(float(np.exp(z[1]) / np.exp(z).sum()), rel=1e-5)
    with pytest.raises(ValueError, match="positive finite"):
        SentimentClassifier.from_path(tiny_model_dir, device="cpu", temperature=-1.0)
