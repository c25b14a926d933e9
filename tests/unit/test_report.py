"""report: the page's sections, images and escaping; which rows build() scores and where the page is stored."""

from __future__ import annotations

import base64
import logging
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from backend import calibration, quality, report
from backend.annotations import AnnotationSet
from backend.cli import main
from backend.config import Settings
from backend.errors import ReportNotFound
from backend.holdout import Holdout
from backend.jobs import tasks
from backend.model.types import Prediction
from backend.report import LinePoint, ReportData, ScoredRow
from backend.store import ModelStore
from tests.jobs.fakes import FakeStudio, exported_task

pytestmark = pytest.mark.unit

SECTIONS = ("confusion", "reliability", "coverage", "histograms", "acceptance", "line")
EVIL = "v1<script>alert(1)</script>"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _synthetic_rows(n: int = 120) -> list[ScoredRow]:
    rng = np.random.default_rng(7)
    rows = []
    for _ in range(n):
        label = str(rng.choice(["NEGATIVE", "POSITIVE"]))
        score = float(rng.uniform(0.5, 1.0))
        wrong = rng.random() > score
        predicted = ("POSITIVE" if label == "NEGATIVE" else "NEGATIVE") if wrong else label
        rows.append(ScoredRow(label=label, predicted=predicted, score=score, raw_score=min(1.0, score ** 0.5)))
    return rows


def _data(**overrides: object) -> ReportData:
    fields: dict[str, object] = dict(
        project=3, version=EVIL, labels=("NEGATIVE", "POSITIVE"), rows=_synthetic_rows(), temperature=1.7,
        rows_source="synthetic <rows>", prefill={"threshold": 0.9, "target": 0.97, "reason": "precision & co"},
        acceptance={EVIL: {"kept": 8, "corrected": 2, "acceptance_rate": 0.8}},
        line=[LinePoint("base-1", "2026-01-01", None, None, None),
              LinePoint(EVIL, "2026-01-02", "promoted", 0.84, 50)],
        generated_at="2026-01-03T00:00:00+00:00",
    )
    fields.update(overrides)
    return ReportData(**fields)  # type: ignore[arg-type]


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_render_is_one_document_with_six_sections_and_inline_png_images() -> None:
    page = report.render(_data())
    assert page.startswith("<!DOCTYPE html>") and page.count("<html") == 1 and page.rstrip().endswith("</html>")
    assert re.findall(r'<section id="(\w+)">', page) == list(SECTIONS)
    images = _images(page)
    assert len(images) == 6 and all(png.startswith(PNG_MAGIC) for png in images)
    assert len(re.findall(r"<img ", page)) == 6  # every image is one of the data URIs above
    assert "<script" not in page and "<link" not in page and re.search(r"https?://", page) is None


def test_strings_from_data_are_escaped() -> None:
    page = report.render(_data())
    assert "v1&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "synthetic &lt;rows&gt;" in page and "precision &amp; co" in page


def test_the_numbers_shown_are_those_of_the_rows() -> None:
    rows = [ScoredRow("POSITIVE", "POSITIVE", 0.99, 0.95), ScoredRow("NEGATIVE", "POSITIVE", 0.95, 0.9),
            ScoredRow("NEGATIVE", "NEGATIVE", 0.8, 0.7), ScoredRow("POSITIVE", "POSITIVE", 0.8, 0.7)]
    assert report.confusion_matrix(rows, ("NEGATIVE", "POSITIVE")) == (["NEGATIVE", "POSITIVE"], [[1, 1], [0, 2]])
    assert report.coverage_curve(rows) == [(0.99, 0.25, 1.0), (0.95, 0.5, 0.5), (0.8, 1.0, 0.75)]
    assert report.at_threshold(rows, 0.9) == (0.5, 0.5)
    page = report.render(_data(rows=rows, prefill={"threshold": 0.9, "target": 0.97, "reason": "r"}))
    assert "accuracy 0.7500 on 4 row(s)" in page and "t = 0.9: coverage 0.500, precision 0.500" in page


def test_without_rows_or_threshold_the_page_says_so() -> None:
    page = report.render(_data(rows=[], prefill=None, acceptance={}, line=[]))
    assert re.findall(r'<section id="(\w+)">', page) == list(SECTIONS) and _images(page) == []
    assert page.count("No labelled rows out of sample") == 4 and "No submitted annotation started" in page


def test_without_annotations_the_page_names_the_rows_its_threshold_came_from() -> None:
    page = report.render(_data(rows=[], prefill={"threshold": 0.95, "target": 0.97, "reason": "held"},
                               prefill_source="no accepted annotation yet: the version's own labelled rows"))
    assert ("Pre-fill threshold from no accepted annotation yet: the version&#x27;s own labelled rows: t = 0.95. held"
            in page)


def test_scored_rows_undo_the_temperature_for_the_before_curve() -> None:
    raw = np.array([[0.1, 0.9], [0.7, 0.3]])
    served = calibration.apply(raw, 2.0)
    preds = [Prediction(label=["NEGATIVE", "POSITIVE"][int(p.argmax())], score=float(p.max()),
                        probs={"NEGATIVE": float(p[0]), "POSITIVE": float(p[1])}) for p in served]
    rows = report.scored_rows(preds, ["POSITIVE", "POSITIVE"], ("NEGATIVE", "POSITIVE"), 2.0)
    assert [r.raw_score for r in rows] == pytest.approx([0.9, 0.7])
    assert [r.score for r in rows] == pytest.approx([float(served[0, 1]), float(served[1, 0])])
    assert [r.correct for r in rows] == [True, False]


def test_importing_the_report_loads_no_matplotlib() -> None:
    code = "import sys, backend.report, backend.report_figures; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class TemperedOracle:
    """Right on "good"/"bad" texts at T=1 probability 0.8, served at temperature T; records what it was asked."""

    labels = ("NEGATIVE", "POSITIVE")

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self.asked: list[str] = []

    def predict(self, texts: Sequence[str], *, max_tokens: int | None = None) -> list[Prediction]:
        self.asked.extend(texts)
        out = []
        for text in texts:
            raw = np.array([0.2, 0.8]) if text.startswith("good") else np.array([0.8, 0.2])
            p = calibration.apply(raw, self.temperature)
            label = self.labels[int(p.argmax())]
            probs = {k: float(v) for k, v in zip(self.labels, p, strict=True)}
            out.append(Prediction(label=label, score=float(p.max()), probs=probs))
        return out


def _project_store(tmp_path: Path) -> tuple[ModelStore, str]:
    """A store where project 1 has its own line at a calibrated version (T=2) whose parent is an import."""
    store = ModelStore(tmp_path / "models")
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}", encoding="utf-8")
    base = store.publish(checkpoint, {"source": "import"}, name="base")
    trained = store.publish(checkpoint, {
        "project": 1, "parent": base.version, "status": "promoted", "kind": "retrain",
        "metrics": {"holdout": {"accuracy": 0.8333, "n": 6}},
        "calibration": calibration.fitted(2.0, "validation", 30),
    }, name=EVIL.split("<")[0], make_current=False)
    store.set_current(trained.version, "promoted", project=1)
    Holdout(store.root, 1).assign([1, 2, 3], 0.0)  # trained on
    Holdout(store.root, 1).assign([4, 5, 6, 7, 8, 9], 1.0)  # the frozen holdout
    return store, trained.version


def _studio() -> FakeStudio:
    studio = FakeStudio(n_tasks=10)
    kept = {"item": {"origin": "prediction"}, "parent_prediction": 77, "_preds": [{"id": 77, "model_version": "old-1"}]}
    changed = {"item": {"origin": "prediction-changed"}, "parent_prediction": 78,
               "_preds": [{"id": 78, "model_version": "old-1"}]}
    studio.exported = [exported_task(t, f"{'good' if t % 2 else 'bad'} text {t}",
                                     "Positive" if t % 2 or t == 8 else "Negative",
                                     **(kept if t in (4, 5, 6) else changed if t == 7 else {}))
                       for t in range(1, 10)]
    return studio


def test_build_scores_the_out_of_sample_rows_and_stores_the_page(tmp_path: Path) -> None:
    store, version = _project_store(tmp_path)
    oracle = TemperedOracle(2.0)
    quality.save(store.root, 1, {"version": version, "prefill": {"threshold": 0.6, "target": 0.97, "reason": "ok"}})
    page = report.build(_studio(), store, 1, None, lambda v: oracle)
    assert oracle.asked == [f"{'good' if t % 2 else 'bad'} text {t}" for t in range(4, 10)]  # never tasks 1-3
    assert report.path(store.root, 1, version).read_text(encoding="utf-8") == page
    assert report.stored(store.root, 1, version) == page
    assert "6 accepted annotation(s) never trained on" in page and "accuracy 0.8333 on 6 row(s)" in page  # task 8
    assert "T = 2;" in page and "t = 0.6: coverage 1.000, precision 0.833" in page
    acceptance = re.search(r'<section id="acceptance">.*?</section>', page)
    assert acceptance and "<td>old-1</td><td>3</td><td>1</td><td>0.750</td>" in acceptance.group(0)
    line = re.search(r'<section id="line">.*?</section>', page)
    assert line and f"<td>{version}</td>" in line.group(0) and "<td>0.8333</td>" in line.group(0)
    assert len(_images(page)) == 6


def test_a_threshold_of_another_version_is_not_marked(tmp_path: Path) -> None:
    store, _ = _project_store(tmp_path)
    quality.save(store.root, 1, {"version": "someone-else", "prefill": {"threshold": 0.6, "reason": "old"}})
    page = report.build(_studio(), store, 1, None, lambda v: TemperedOracle(2.0))
    assert "t = 0.6" not in page and "has not been assessed yet" in page


def test_no_stored_page_is_report_not_found(tmp_path: Path) -> None:
    with pytest.raises(ReportNotFound, match="no evaluation report is stored"):
        report.stored(tmp_path, 1, "v-1")


def test_a_failed_render_in_the_worker_logs_and_is_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def no_studio() -> FakeStudio:
        raise RuntimeError("Label Studio is gone")

    ctx = SimpleNamespace(studio=no_studio, store=ModelStore(tmp_path), models=SimpleNamespace(get=None),
                          settings=SimpleNamespace(train_on_prediction_copies=False))
    with caplog.at_level(logging.WARNING, logger="backend.jobs.tasks"):
        assert tasks._render_report(ctx, 1, "v-1", AnnotationSet(rows=[]), ctx.models.get) is False  # type: ignore[arg-type]
    assert "evaluation report of v-1 was not rendered" in caplog.text


def test_the_cli_copies_the_stored_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    report.save(tmp_path, 2, "v-7", "<!DOCTYPE html><html>stored page</html>")
    out = tmp_path / "copy.html"
    args = ["report", "--project", "2", "--version", "v-7", "--out", str(out), "--stored"]
    result = CliRunner().invoke(main, args, env={"MODEL_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == "<!DOCTYPE html><html>stored page</html>"
    missing = CliRunner().invoke(main, [*args[:4], "v-8", *args[5:]], env={"MODEL_DIR": str(tmp_path)})
    assert missing.exit_code == 2 and "no evaluation report is stored for version v-8" in missing.output
