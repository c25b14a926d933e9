"""Bringing checkpoints into the model store: import a local directory, or fetch MODEL once from the hub.

An offline machine must learn quickly that the hub is out of reach: huggingface_hub retries a failed
connection for about 50 s, so the hub is tried from the local cache first, then probed with one short
request, and only a reachable hub gets the real download.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend import calibration
from backend.calibration import temperature_of
from backend.datasets import read_examples
from backend.errors import InvalidRequest, ModelUnavailable
from backend.model import engine
from backend.model.classifier import SentimentClassifier
from backend.model.types import Example
from backend.store import ModelStore, ModelVersion

if TYPE_CHECKING:
    from backend.model.engine_build import EngineBuild

log = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT_S = 3.0
_CHECK_TEXT = "a quick check that the checkpoint predicts"
CALIBRATE_FIT_SHARE = 0.7  # of an import's --calibrate rows: the fit; the rest measures it


def import_checkpoint(
    store: ModelStore, src_dir: Path | str, *, name: str | None = None, source: str | None = None,
    make_current: bool = True, calibrate_on: Path | None = None, build: EngineBuild | None = None,
) -> ModelVersion:
    """Validate that src_dir loads and predicts, fit its temperature on `calibrate_on` (a text/label TSV or CSV;
    without one it serves at 1.0, uncalibrated), build its engine with `build` (gated on the calibration file's
    rows, or the build's fallback rows; None: no engine), then publish it as a new version; raises
    InvalidCheckpoint."""
    src = Path(src_dir)
    classifier = SentimentClassifier.from_path(src, device="cpu")
    classifier.predict([_CHECK_TEXT])
    own = _calibration_rows(calibrate_on)
    meta = {"source": source or str(src.resolve()), "labels": list(classifier.labels), "kind": "import",
            "calibration": _import_calibration(classifier, calibrate_on, own)}
    with store.staging() as staged:
        _copy_checkpoint(src, staged)
        meta["engine"] = _engine_record(staged, build, own, f"the --calibrate rows ({calibrate_on})")
        version = store.publish(staged, meta, name=name or src.name, make_current=make_current)
    log.info("imported %s as %s", meta["source"], version.version)
    return version


def optimize_version(
    store: ModelStore, version: str, build: EngineBuild, *, gate_on: list[Example] | None = None,
    gate_source: str = "", name: str | None = None,
) -> ModelVersion:
    """Build the engine of a stored version (its weights, calibration and metrics as they are) and publish the
    result as a new version, parent = `version`, moving no line; gated on `gate_on` or the build's fallback rows."""
    parent = store.get(version)
    if parent.collected:
        raise InvalidRequest(f"model version {version!r} had its weights removed by `models gc`: nothing to optimize")
    kept = {k: v for k, v in parent.meta.items() if k not in _NOT_INHERITED}
    meta = {**kept, "kind": "optimize", "parent": parent.version, "optimized_from": parent.version}
    with store.staging() as staged:
        _copy_checkpoint(parent.path, staged)
        meta["engine"] = build.record(staged, gate_on or [], gate_source)
        optimized = store.publish(staged, meta, name=name or _base_name(parent.version), make_current=False)
    log.info("optimized %s as %s: engine %s", version, optimized.version, meta["engine"]["chosen"])
    return optimized


_NOT_INHERITED = ("version", "created_at", "engine", "status", "decision", "collected_at", "bytes_freed", "job",
                  "compared_with", "compared_metrics")


def _base_name(version: str) -> str:
    """`p3-retrain-20261201-102433` → `p3-retrain-optimized` (the store adds a fresh timestamp)."""
    parts = version.split("-")
    while len(parts) > 1 and parts[-1].isdigit():
        parts.pop()
    return "-".join(parts) + "-optimized"


def _copy_checkpoint(src: Path, staged: Path) -> None:
    """The checkpoint's files into a staging directory; an engine directory it carries is never copied (engines
    are built for the version being published, never inherited)."""
    shutil.copytree(src, staged, dirs_exist_ok=True, ignore=lambda d, names: [engine.ENGINE_DIR]
                    if Path(d) == src and engine.ENGINE_DIR in names else [])


def _engine_record(staged: Path, build: EngineBuild | None, own: list[Example], source: str) -> dict[str, Any]:
    if build is None:
        return engine.unbuilt_record()
    return build.record(staged, own, source)


def _calibration_rows(path: Path | None) -> list[Example]:
    """The rows of an import's --calibrate file (none without one); raises InvalidRequest when it is unreadable."""
    if path is None:
        return []
    try:
        return read_examples(path)
    except ValueError as exc:
        raise InvalidRequest(f"--calibrate {path}: {exc}") from exc


def _import_calibration(classifier: SentimentClassifier, path: Path | None, examples: list[Example]) -> dict[str, Any]:
    """Fit on a seeded CALIBRATE_FIT_SHARE of the --calibrate file's rows (`examples`) and measure before/after on
    the rest (rows the fit did not see); raises InvalidRequest when they are too few."""
    if path is None:
        return calibration.uncalibrated(1.0, "imported without --calibrate: no labelled rows to fit on")
    try:
        rows = list(examples)
        random.Random(0).shuffle(rows)
        cut = round(CALIBRATE_FIT_SHARE * len(rows))
        fit_rows, check_rows = rows[:cut], rows[cut:]
        if not check_rows:
            raise ValueError(f"{path}: {len(rows)} row(s) leave nothing to measure the fit on")
        raw = classifier.predict([e.text for e in rows])
        temperature = calibration.fit(raw[:cut], [e.label for e in fit_rows])
    except ValueError as exc:
        raise InvalidRequest(f"--calibrate {path}: {exc}") from exc
    check_gold = [e.label for e in check_rows]
    own = calibration.own_rows_record(calibration.calibrate(raw[cut:], temperature), check_gold,
                                      f"{len(check_rows)} rows of {path.name} (--calibrate) the fit did not use")
    return calibration.fitted(temperature, f"{cut} of {len(rows)} rows of {path.name} (seeded)", cut,
                              f"the other {len(check_rows)} rows of {path.name}", raw[cut:], check_gold, own)


def ensure_current(store: ModelStore, model_ref: str) -> ModelVersion:
    """The store's current version; an empty store first imports model_ref (local dir or hub id) or raises
    ModelUnavailable naming the three ways to provide a model."""
    current = store.current()
    if current is not None:
        return current
    try:
        if Path(model_ref).is_dir():
            return import_checkpoint(store, Path(model_ref))
        return _import_from_hub(store, model_ref)
    except Exception as exc:  # any failure here means "no model": one actionable message, cause chained
        raise ModelUnavailable(unavailable_message(model_ref, exc)) from exc


def unavailable_message(model_ref: str, cause: BaseException) -> str:
    """One line: which model, why, and the three ways to provide one."""
    lines = str(cause).strip().splitlines()
    reason = f"{type(cause).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return (
        f"model {model_ref!r} is not available and the model store is empty ({reason}); provide one by "
        "(1) `sentiment-backend models bootstrap` (offline starter: fine-tunes the bundled MiniLM on SST-2), "
        "(2) `sentiment-backend models import DIR` (a checkpoint saved with save_pretrained elsewhere), or "
        "(3) setting MODEL to a local checkpoint directory (or running once with network access / a warm "
        "Hugging Face cache)"
    )


def _import_from_hub(store: ModelStore, model_id: str) -> ModelVersion:
    """Load model_id through transformers (cache first, network only if the hub answers), stage and import it."""
    from backend.model.torch_engine import quiet_transformers

    tokenizer, model = _from_hub(model_id)
    with store.staging() as staged:
        with quiet_transformers():
            model.save_pretrained(staged)
            tokenizer.save_pretrained(staged)
        return import_checkpoint(store, staged, name=model_id.rsplit("/", 1)[-1], source=model_id)


def _from_hub(model_id: str) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from backend.model.torch_engine import quiet_transformers

    with quiet_transformers():
        try:
            return (AutoTokenizer.from_pretrained(model_id, local_files_only=True),
                    AutoModelForSequenceClassification.from_pretrained(model_id, local_files_only=True))
        except OSError:
            log.info("%s is not in the Hugging Face cache; trying the hub", model_id)
        probe_hub()
        return (AutoTokenizer.from_pretrained(model_id),
                AutoModelForSequenceClassification.from_pretrained(model_id))


def probe_hub(timeout: float = HUB_PROBE_TIMEOUT_S) -> None:
    """One HEAD request to the hub endpoint (HF_ENDPOINT, proxies honoured); raises OSError when unreachable."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        raise OSError("HF_HUB_OFFLINE is set")
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception as exc:  # httpx's transport errors share no base with OSError
        raise OSError(f"the Hugging Face hub at {constants.ENDPOINT} is unreachable ({exc})") from exc


def load_version(
    version: ModelVersion, *, device: str, token_budget: int, stride: int, engine_setting: engine.Requested = "auto",
    threads: int | None = None,
) -> SentimentClassifier:
    """The classifier of one store version, loaded with the given inference knobs and the engine ENGINE picks
    (backend.model.engine.choose), serving at the version's calibration temperature (what the API, bulk runs and
    evaluation of a stored version all go through)."""
    cuda = engine.cuda_wanted(device)
    name = engine.choose(engine_setting, cuda=cuda, record=engine.record_of(version.meta),
                         present=engine.built(version.path))
    return SentimentClassifier.from_path(version.path, device="cuda" if cuda else "cpu", token_budget=token_budget,
                                         stride=stride, temperature=temperature_of(version.meta), engine=name,
                                         threads=threads)
