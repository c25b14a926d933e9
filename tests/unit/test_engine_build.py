"""The engine build on tiny random DistilBERTs: the engines agree with torch on windowed long texts, a broken export
(wrong weights) is refused by the gate and the fallback is recorded and served, ENGINE picks what serves, and a
process serving the ONNX engine never imports torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from backend.datasets import read_examples
from backend.errors import InvalidCheckpoint
from backend.model.classifier import SentimentClassifier
from backend.model.engine import ENGINE_DIR, ENGINE_FILES, ONNX_FP32, ONNX_INT8, TORCH, built
from backend.model.engine_build import EngineBuild, GateRows, export, gate, gate_rows
from backend.model.loading import import_checkpoint, load_version, optimize_version
from backend.model.types import Example
from backend.store import ModelStore
from tests.modelfactory import build_distilbert

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DEV = read_examples(ROOT / "data" / "sst2" / "dev.tsv")
ROWS = GateRows(DEV[:40], "40 SST-2 dev rows")
LONG_TEXT = " ".join(f"word{i % 37} sentence number {i} was rather good ." for i in range(60))
TEXTS = ["The movie was great!", "", "a dull , lifeless and overlong mess", LONG_TEXT, "bad", LONG_TEXT[:700]]


@pytest.fixture(scope="module")
def windowed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint with a 32-token window (long texts get many windows) and its engines exported."""
    path = build_distilbert(tmp_path_factory.mktemp("engine32") / "ck", max_length=32, seed=1)
    export(path, SentimentClassifier.from_path(path, device="cpu"))
    return path


def _probs(predictions: list) -> np.ndarray:
    return np.array([[p.probs["NEGATIVE"], p.probs["POSITIVE"]] for p in predictions])


def test_the_export_holds_fused_graphs_and_a_torch_free_bundle(windowed: Path) -> None:
    assert built(windowed) == [ONNX_INT8, ONNX_FP32]
    bundle = json.loads((windowed / ENGINE_DIR / "engine.json").read_text())
    assert bundle == {"labels": ["NEGATIVE", "POSITIVE"], "max_length": 32,
                      "special_ids": {"cls": 101, "sep": 102, "pad": 0}}
    ops = {n.op_type for n in onnx.load(str(windowed / ENGINE_DIR / ENGINE_FILES[ONNX_FP32])).graph.node}
    assert {"Attention", "EmbedLayerNormalization", "SkipLayerNormalization"} <= ops  # fused, not SDPA-shaped
    int8_nodes = onnx.load(str(windowed / ENGINE_DIR / ENGINE_FILES[ONNX_INT8])).graph.node
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= {n.op_type for n in int8_nodes}
    # INT8_RECIPE: the first two encoder layers (all of the tiny model's) stay fp32, the rest (its head) is int8
    for layer in ("layer.0/", "layer.1/"):
        assert {n.op_type for n in int8_nodes if layer in n.name and "MatMul" in n.op_type} == {"MatMul"}
    assert any(n.op_type == "MatMulInteger" and "classifier" in n.name for n in int8_nodes)


@pytest.mark.parametrize(("name", "atol", "batch_atol"), [(ONNX_FP32, 1e-5, 1e-5), (ONNX_INT8, 2e-2, 1e-3)])
def test_engines_agree_with_torch_on_windowed_long_texts(
    windowed: Path, name: str, atol: float, batch_atol: float
) -> None:
    reference = SentimentClassifier.from_path(windowed, device="cpu", stride=8, temperature=0.5)
    onnx_clf = SentimentClassifier.from_path(windowed, device="cpu", stride=8, temperature=0.5, engine=name, threads=1)
    assert onnx_clf.engine.name == name and onnx_clf.max_length == reference.max_length == 32
    assert onnx_clf.encoder.encode(TEXTS) == reference.encoder.encode(TEXTS)  # the same word pieces
    expected, got = reference.predict(TEXTS), onnx_clf.predict(TEXTS)
    assert [p.windows for p in got] == [p.windows for p in expected]
    assert expected[3].windows > 10  # the long text really is windowed
    np.testing.assert_allclose(_probs(got), _probs(expected), atol=atol)
    small_budget = SentimentClassifier.from_path(windowed, device="cpu", stride=8, temperature=0.5, engine=name,
                                                 token_budget=64, threads=1)
    # dynamic int8 scales activations per batch, so batch composition moves its outputs a little (~2e-5 here)
    np.testing.assert_allclose(_probs(small_budget.predict(TEXTS)), _probs(got), atol=batch_atol)


def _break(graph: Path) -> None:
    """Wrong weights: the classifier head's float initializers negated (every logit changes sign)."""
    model = onnx.load(str(graph))
    for init in model.graph.initializer:
        if init.name.startswith("classifier.") and init.data_type == onnx.TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    onnx.save(model, str(graph))


def _exported_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_a_broken_int8_export_is_refused_and_the_fp32_fallback_is_recorded_and_served(
    windowed: Path, tmp_path: Path
) -> None:
    checkpoint = _exported_copy(windowed, tmp_path / "ck")
    _break(checkpoint / ENGINE_DIR / ENGINE_FILES[ONNX_INT8])
    reference = SentimentClassifier.from_path(checkpoint, device="cpu")
    record = gate(checkpoint, ROWS, reference, threads=1)
    assert record["chosen"] == ONNX_FP32 and "int8 failed" in record["reason"]
    figures = record["gate"]
    assert figures["passed"] is False and figures["agreement"] < 0.5 and figures["rows"] == 40
    assert figures["source"] == "40 SST-2 dev rows"
    assert figures["fallback"]["engine"] == ONNX_FP32 and figures["fallback"]["passed"] is True
    assert figures["fallback"]["agreement"] == 1.0
    assert built(checkpoint) == [ONNX_FP32]  # the refused graph is not kept
    store = ModelStore(tmp_path / "models")
    version = store.publish(checkpoint, {"engine": record}, name="broken-int8")
    served = load_version(version, device="cpu", token_budget=2048, stride=128)
    assert served.engine.name == ONNX_FP32


def test_when_every_export_is_broken_the_version_serves_torch(windowed: Path, tmp_path: Path) -> None:
    checkpoint = _exported_copy(windowed, tmp_path / "ck")
    for name in (ONNX_INT8, ONNX_FP32):
        _break(checkpoint / ENGINE_DIR / ENGINE_FILES[name])
    record = gate(checkpoint, ROWS, SentimentClassifier.from_path(checkpoint, device="cpu"), threads=1)
    assert record["chosen"] == TORCH and record["gate"]["fallback"]["passed"] is False
    assert not (checkpoint / ENGINE_DIR).exists()
    version = ModelStore(tmp_path / "models").publish(checkpoint, {"engine": record}, name="all-broken")
    assert load_version(version, device="cpu", token_budget=2048, stride=128).engine.name == TORCH
    with pytest.raises(InvalidCheckpoint, match="models optimize"):
        load_version(version, device="cpu", token_budget=2048, stride=128, engine_setting="onnx")


def test_gate_rows_prefer_the_versions_own_rows_when_there_are_enough() -> None:
    own = [Example("fine", "POSITIVE")] * 100
    assert gate_rows(own, "holdout", ROWS) == GateRows(own, "holdout")
    assert gate_rows(own[:10], "holdout", ROWS) == ROWS  # too few: the bundled SST-2 dev rows
    assert gate_rows(own[:10], "holdout", None) == GateRows(own[:10], "holdout")
    assert gate_rows([], "holdout", None) is None


@pytest.fixture(scope="module")
def optimized_store(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> ModelStore:
    """A store with the tiny model imported with an engine build (gated on 40 SST-2 dev rows)."""
    store = ModelStore(tmp_path_factory.mktemp("engine-store") / "models")
    import_checkpoint(store, tiny_model_dir, name="tiny", build=EngineBuild(True, 1, ROWS))
    return store


def test_import_builds_the_engine_before_publishing(optimized_store: ModelStore, tiny_model_dir: Path) -> None:
    version = optimized_store.current()
    assert version is not None
    record = version.meta["engine"]
    assert record["chosen"] == ONNX_INT8 and record["gate"]["passed"] is True
    assert record["gate"]["agreement"] >= 0.99 and record["gate"]["rows"] == 40
    assert record["build"]["seconds"] > 0 and record["build"]["fused"]["Attention"] == 2
    assert built(version.path) == [ONNX_INT8]
    assert not (tiny_model_dir / ENGINE_DIR).exists()  # the source directory is left as it was
    assert {k: load_version(version, device="cpu", token_budget=2048, stride=128, engine_setting=k).engine.name
            for k in ("auto", "torch", "onnx")} == {"auto": ONNX_INT8, "torch": TORCH, "onnx": ONNX_INT8}


def test_switching_engines_keeps_labels_and_calibrated_scores_close(optimized_store: ModelStore) -> None:
    version = optimized_store.current()
    assert version is not None
    on = load_version(version, device="cpu", token_budget=2048, stride=128, engine_setting="auto")
    off = load_version(version, device="cpu", token_budget=2048, stride=128, engine_setting="torch")
    texts = [e.text for e in DEV[:40]]
    assert [p.label for p in on.predict(texts)] == [p.label for p in off.predict(texts)]
    np.testing.assert_allclose(_probs(on.predict(texts)), _probs(off.predict(texts)), atol=2e-2)


def test_a_process_serving_the_onnx_engine_never_imports_torch(optimized_store: ModelStore) -> None:
    version = optimized_store.current()
    assert version is not None
    script = (
        "import json, sys\n"
        "from backend.store import ModelStore\n"
        "from backend.model.loading import load_version\n"
        f"version = ModelStore({str(optimized_store.root)!r}).get({version.version!r})\n"
        "clf = load_version(version, device='auto', token_budget=2048, stride=128)\n"
        "[p] = clf.predict(['The movie was great!'])\n"
        "print(json.dumps({'engine': clf.engine.name, 'label': p.label, 'torch': 'torch' in sys.modules,\n"
        "                  'transformers': 'transformers' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"engine": ONNX_INT8, "label": seen["label"], "torch": False, "transformers": False}
    assert seen["label"] in ("NEGATIVE", "POSITIVE")


def test_optimize_publishes_a_new_version_and_moves_no_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    store = ModelStore(tmp_path / "models")
    old = import_checkpoint(store, tiny_model_dir, name="tiny")
    assert old.meta["engine"]["chosen"] == TORCH and built(old.path) == []
    new = optimize_version(store, old.version, EngineBuild(True, 1, ROWS))
    assert new.version != old.version and new.version.startswith("tiny-optimized-")
    assert new.meta["parent"] == old.version and new.meta["kind"] == "optimize"
    assert new.meta["calibration"] == old.meta["calibration"] and new.meta["labels"] == old.meta["labels"]
    assert new.meta["engine"]["chosen"] == ONNX_INT8 and built(new.path) == [ONNX_INT8]
    assert store.current_version() == old.version  # promoting it is the operator's call
    assert built(old.path) == []  # the old version is immutable
    skipped = optimize_version(store, old.version, EngineBuild(False, 1, ROWS))
    assert skipped.meta["engine"] == {"chosen": TORCH, "reason": "BUILD_ENGINE=false: published without an ONNX engine"}
