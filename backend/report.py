"""The evaluation report of one version for one project: a single self-contained HTML page.

Six sections: the confusion matrix, a reliability diagram before and after temperature scaling, the
coverage-precision curve with the pre-fill threshold t marked, score histograms per predicted label, the
acceptance of pre-fills per version (kept vs corrected, from the annotations' `origin`) and holdout accuracy
across the line's versions. Images are inline PNG data URIs and the page has no external CSS, JS or links, so it
opens offline; every string that comes from data is HTML-escaped.

Rows are the project's accepted annotations out of sample for the version, the same rows backend.quality chose
the threshold on (its frozen holdout and newer annotations on a line of its own; every one on the default line),
so t sits on the curve it was chosen from. They are scored once, as served (at the version's temperature T);
"before scaling" undoes T on those probabilities (calibration.apply with 1/T), which needs no second forward.

`build` renders and stores the page at MODEL_DIR/projects/<id>/reports/<version>.html (the worker after each
assessment, `sentiment-backend report`); `stored` reads it back (GET /models/{version}/report, `report
--stored`) and never renders.
"""

from __future__ import annotations

import base64
import html
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from backend import calibration, quality
from backend.annotations import AnnotationSet
from backend.errors import ReportNotFound, VersionNotFound
from backend.holdout import project_dir
from backend.model.types import Classifier, Prediction
from backend.store import VERSION_PATTERN, ModelStore, atomic_write
from backend.studio import StudioClient

log = logging.getLogger(__name__)

REPORTS = "reports"
_VERSION = re.compile(VERSION_PATTERN)


@dataclass(frozen=True)
class ScoredRow:
    """One labelled row: the annotator's label, the model's, its score as served and at T=1."""

    label: str
    predicted: str
    score: float
    raw_score: float

    @property
    def correct(self) -> bool:
        """The model agreed with the annotator."""
        return self.predicted == self.label


@dataclass(frozen=True)
class LinePoint:
    """One version of the line as the accuracy section shows it."""

    version: str
    created_at: str
    status: str | None
    accuracy: float | None
    holdout_rows: int | None


@dataclass(frozen=True)
class ReportData:
    """Everything a page shows, as plain values (see render)."""

    project: int
    version: str
    labels: tuple[str, ...]
    rows: Sequence[ScoredRow]
    temperature: float
    rows_source: str = ""
    prefill: Mapping[str, Any] | None = None  # the stored threshold record of this version (quality "prefill")
    prefill_source: str = ""  # the rows it was chosen on (quality "rows_source")
    acceptance: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # version → kept/corrected/rate
    line: Sequence[LinePoint] = ()
    generated_at: str = ""


def render(data: ReportData) -> str:
    """The page: one HTML document with the six sections, images inline, every data string escaped."""
    from backend import report_figures as figures  # matplotlib: only when a page is drawn

    sections = [_confusion(data, figures), _reliability(data, figures), _coverage(data, figures),
                _histograms(data, figures), _acceptance(data, figures), _line(data, figures)]
    title = f"Evaluation report: {data.version}, project {data.project}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1><p class=\"meta\">generated {_e(data.generated_at)}; temperature "
        f"{data.temperature:.4g}; {len(data.rows)} labelled row(s): {_e(data.rows_source)}</p>"
        + "".join(sections) + "</body></html>\n"
    )


def confusion_matrix(rows: Sequence[ScoredRow], labels: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """The labels (the model's, then any other seen) and counts[annotator][model]."""
    names = list(labels) + sorted({x for r in rows for x in (r.label, r.predicted)} - set(labels))
    counts = [[0] * len(names) for _ in names]
    for row in rows:
        counts[names.index(row.label)][names.index(row.predicted)] += 1
    return names, counts


def coverage_curve(rows: Sequence[ScoredRow]) -> list[tuple[float, float, float]]:
    """(threshold, coverage, precision) for every distinct served score, highest threshold first."""
    ordered = sorted(rows, key=lambda r: -r.score)
    curve, correct = [], 0
    for i, row in enumerate(ordered, start=1):
        correct += row.correct
        if i == len(ordered) or ordered[i].score != row.score:
            curve.append((row.score, i / len(ordered), correct / i))
    return curve


def at_threshold(rows: Sequence[ScoredRow], threshold: float) -> tuple[float, float | None]:
    """(coverage, precision) of the rows scoring at least threshold (precision None when none does)."""
    chosen = [r for r in rows if r.score >= threshold]
    coverage = len(chosen) / len(rows) if rows else 0.0
    return coverage, (sum(r.correct for r in chosen) / len(chosen) if chosen else None)


def build(
    studio: StudioClient, store: ModelStore, project: int, version: str | None,
    classifier_of: Callable[[str], Classifier], *, include_prediction_copies: bool = False,
    accepted: AnnotationSet | None = None,
) -> str:
    """Render the report of `version` (None: the version the project is served) for `project` from its accepted
    annotations (read from Label Studio unless given) and the store, store it (see `path`) and return the page.
    VersionNotFound for an empty store."""
    version = version or store.current_version(project)
    if version is None:
        raise VersionNotFound("the model store is empty: there is no version to report on")
    meta = store.get(version).meta
    classifier = classifier_of(version)
    if accepted is None:
        accepted = quality.read_accepted(studio, project, classifier.labels,
                                         include_prediction_copies=include_prediction_copies)
    trained = quality.trained_task_ids(store, project)
    rows = [r for r in accepted.rows if r.task_id not in trained]
    temperature = calibration.temperature_of(meta)
    data = ReportData(
        project=project, version=version, labels=tuple(classifier.labels),
        rows=scored_rows(classifier.predict([r.text for r in rows]) if rows else [], [r.label for r in rows],
                         classifier.labels, temperature),
        temperature=temperature, rows_source=_source(trained, len(rows)), **_prefill(store, project, version),
        acceptance=accepted.acceptance(), line=line_points(store, project), generated_at=_now(),
    )
    page = render(data)
    save(store.root, project, version, page)
    return page


def scored_rows(
    predictions: Sequence[Prediction], gold: Sequence[str], labels: Sequence[str], temperature: float
) -> list[ScoredRow]:
    """Rows from predictions made as served at `temperature`, with the score at T=1 recovered from them."""
    rows = []
    for pred, label in zip(predictions, gold, strict=True):
        probs = _prob_vector(pred, labels)
        raw = calibration.apply(probs, 1.0 / temperature) if temperature != 1.0 else probs
        rows.append(ScoredRow(label=label, predicted=pred.label, score=float(pred.score),
                              raw_score=float(raw[list(labels).index(pred.label)]) if pred.label in labels
                              else float(pred.score)))
    return rows


def line_points(store: ModelStore, project: int) -> list[LinePoint]:
    """The versions of the line the project is served (every version its history names) and every version trained
    for the project (rejected candidates included), oldest first, with their holdout accuracy."""
    own = store.has_line(project)
    named = {str(c["version"]) for c in store.history(project if own else None) if c.get("version")}
    points = []
    for version in store.list():
        if version.version not in named and version.project != project:
            continue
        holdout = (version.meta.get("metrics") or {}).get("holdout") or {}
        points.append(LinePoint(version.version, version.created_at, version.meta.get("status"),
                                holdout.get("accuracy"), holdout.get("n")))
    return points


def path(model_dir: Path | str, project: int, version: str) -> Path:
    """Where the page of a version for a project is stored; VersionNotFound for a malformed version string."""
    if not _VERSION.match(version):
        raise VersionNotFound("no such model version: versions look like tiny-20261201-102433")
    return project_dir(model_dir, project) / REPORTS / f"{version}.html"


def save(model_dir: Path | str, project: int, version: str, page: str) -> Path:
    """Replace the stored page atomically; its path."""
    target = path(model_dir, project, version)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, page)
    return target


def stored(model_dir: Path | str, project: int, version: str) -> str:
    """The stored page; ReportNotFound when none is."""
    try:
        return path(model_dir, project, version).read_text(encoding="utf-8")
    except OSError:
        raise ReportNotFound(f"no evaluation report is stored for version {version} of project {project}: the "
                             "worker renders one after each training or bulk run") from None


def _confusion(data: ReportData, figures: Any) -> str:
    if not data.rows:
        return _section("confusion", "Confusion matrix", _NO_ROWS)
    names, counts = confusion_matrix(data.rows, data.labels)
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    body = "".join(f"<tr><th>{_e(n)}</th>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
                   for n, row in zip(names, counts, strict=True))
    accuracy = sum(r.correct for r in data.rows) / len(data.rows)
    table = (f"<table><tr><th>annotator \\ model</th>{head}</tr>{body}</table>"
             f"<p>accuracy {accuracy:.4f} on {len(data.rows)} row(s)</p>")
    return _section("confusion", "Confusion matrix", _img(figures.confusion(counts, names), "confusion matrix") + table)


def _reliability(data: ReportData, figures: Any) -> str:
    if not data.rows:
        return _section("reliability", "Reliability before and after temperature scaling", _NO_ROWS)
    correct = [r.correct for r in data.rows]
    before, after = [r.raw_score for r in data.rows], [r.score for r in data.rows]
    ece_before, ece_after = calibration.ece(before, correct), calibration.ece(after, correct)
    image = figures.reliability({f"before (T=1), ECE {ece_before:.4f}": (before, correct),
                                 f"after (T={data.temperature:.4g}), ECE {ece_after:.4f}": (after, correct)})
    text = (f"<p>ECE before {ece_before:.4f}, after {ece_after:.4f} (T = {data.temperature:.4g}; "
            f"{calibration.ECE_BINS} bins)</p>")
    return _section("reliability", "Reliability before and after temperature scaling",
                    _img(image, "reliability diagram") + text)


def _coverage(data: ReportData, figures: Any) -> str:
    title = "Coverage and precision of pre-fills"
    prefill = data.prefill or {}
    t = prefill.get("threshold")
    marked, note = None, _e(prefill.get("reason") or "this version has not been assessed yet: no threshold stored")
    if not data.rows:
        shown = f"t = {float(t):g}. " if t is not None else ""
        return _section("coverage", title, f"{_NO_ROWS}<p>Pre-fill threshold from {_e(data.prefill_source)}: "
                                           f"{shown}{note}</p>" if data.prefill else _NO_ROWS)
    if t is not None:
        coverage, precision = at_threshold(data.rows, float(t))
        marked = (float(t), coverage, precision if precision is not None else 0.0)
        note = (f"t = {float(t):g}: coverage {coverage:.3f}, precision "
                f"{'n/a' if precision is None else f'{precision:.3f}'} on these rows. {note}")
    target = prefill.get("target")
    image = figures.coverage_precision(coverage_curve(data.rows), marked, float(target) if target else None)
    return _section("coverage", title, _img(image, "coverage-precision curve") + f"<p>{note}</p>")


def _histograms(data: ReportData, figures: Any) -> str:
    if not data.rows:
        return _section("histograms", "Scores per predicted label", _NO_ROWS)
    groups = {label: ([r.score for r in data.rows if r.predicted == label],
                      [r.correct for r in data.rows if r.predicted == label])
              for label in sorted({r.predicted for r in data.rows})}
    t = (data.prefill or {}).get("threshold")
    image = figures.score_histograms(groups, float(t) if t is not None else None)
    counts = ", ".join(f"{_e(k)}: {len(v[0])}" for k, v in groups.items())
    return _section("histograms", "Scores per predicted label",
                    _img(image, "score histograms") + f"<p>rows per predicted label: {counts}</p>")


def _acceptance(data: ReportData, figures: Any) -> str:
    title = "Acceptance of pre-fills per version"
    entries = [(v, int(e.get("kept", 0)), int(e.get("corrected", 0)), e.get("acceptance_rate"))
               for v, e in sorted(data.acceptance.items())]
    if not entries:
        return _section("acceptance", title, "<p>No submitted annotation started from a pre-fill yet.</p>")
    table = "<table><tr><th>version</th><th>kept</th><th>corrected</th><th>acceptance rate</th></tr>" + "".join(
        f"<tr><td>{_e(v)}</td><td>{k}</td><td>{c}</td><td>{'n/a' if r is None else f'{float(r):.3f}'}</td></tr>"
        for v, k, c, r in entries) + "</table>"
    image = figures.acceptance([(v, k, c) for v, k, c, _ in entries])
    return _section("acceptance", title, _img(image, "acceptance per version") + table)


def _line(data: ReportData, figures: Any) -> str:
    title = "Holdout accuracy across the line's versions"
    table = ("<table><tr><th>version</th><th>created</th><th>status</th><th>holdout accuracy</th><th>rows</th></tr>"
             + "".join(f"<tr><td>{_e(p.version)}</td><td>{_e(p.created_at)}</td><td>{_e(p.status or '')}</td>"
                       f"<td>{'n/a' if p.accuracy is None else f'{float(p.accuracy):.4f}'}</td>"
                       f"<td>{'' if p.holdout_rows is None else int(p.holdout_rows)}</td></tr>" for p in data.line)
             + "</table><p>Each version is measured on the holdout as it was when it trained (the holdout grows).</p>")
    points = [(p.version, float(p.accuracy), p.status != "rejected") for p in data.line if p.accuracy is not None]
    if not points:
        return _section("line", title, "<p>No version of this line has holdout metrics (imports have none).</p>"
                        + table)
    return _section("line", title, _img(figures.line_accuracy(points, data.version), "holdout accuracy") + table)


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}"><h2>{_e(title)}</h2>{body}</section>'


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _prob_vector(pred: Prediction, labels: Sequence[str]) -> np.ndarray:
    """The prediction's probabilities in label order; labels it omits share what is left."""
    known = {k: v for k, v in pred.probs.items() if k in labels} or {pred.label: pred.score}
    missing = [k for k in labels if k not in known]
    rest = max(0.0, 1.0 - sum(known.values())) / len(missing) if missing else 0.0
    return np.array([known.get(k, rest) for k in labels], dtype=np.float64)


def _prefill(store: ModelStore, project: int, version: str) -> dict[str, Any]:
    """The ReportData fields `prefill` and `prefill_source` from the project's stored record of this version."""
    record = quality.load(store.root, project)
    if not record or record.get("version") != version:
        return {"prefill": None, "prefill_source": ""}
    return {"prefill": record.get("prefill"), "prefill_source": str(record.get("rows_source") or "")}


def _source(trained: set[int], n: int) -> str:
    if trained:
        return f"{n} accepted annotation(s) never trained on (the frozen holdout and newer ones)"
    return f"every accepted annotation of the project ({n}): the version never trained on it"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


_NO_ROWS = "<p>No labelled rows out of sample for this version yet.</p>"
_CSS = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
        "section{margin:2em 0;border-top:1px solid #ccc}img{max-width:100%}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
        "text-align:right}.meta{color:#555}")
