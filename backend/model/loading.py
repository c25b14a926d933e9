"""Bringing checkpoints into the model store: import a local directory, or fetch MODEL once from the hub.

An offline machine must learn quickly that the hub is out of reach: huggingface_hub retries a failed
connection for about 50 s, so the hub is tried from the local cache first, then probed with one short
request, and only a reachable hub gets the real download.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from backend import calibration
from backend.calibration import temperature_of
from backend.datasets import read_examples
from backend.errors import InvalidRequest, ModelUnavailable
from backend.model.classifier import SentimentClassifier
from backend.store import ModelStore, ModelVersion

log = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT_S = 3.0
_CHECK_TEXT = "a quick check that the checkpoint predicts"
CALIBRATE_FIT_SHARE = 0.7  # of an import's --calibrate rows: the fit; the rest measures it


def import_checkpoint(
    store: ModelStore, src_dir: Path | str, *, name: str | None = None, source: str | None = None,
    make_current: bool = True, calibrate_on: Path | None = None,
) -> ModelVersion:
    """Validate that src_dir loads and predicts, fit its temperature on `calibrate_on` (a text/label TSV or CSV;
    without one it serves at 1.0, uncalibrated), then publish it as a new version; raises InvalidCheckpoint."""
    src = Path(src_dir)
    classifier = SentimentClassifier.from_path(src, device="cpu")
    classifier.predict([_CHECK_TEXT])
    meta = {"source": source or str(src.resolve()), "labels": list(classifier.labels), "kind": "import",
            "calibration": _import_calibration(classifier, calibrate_on)}
    version = store.publish(src, meta, name=name or src.name, make_current=make_current)
    log.info("imported %s as %s", meta["source"], version.version)
    return version


def _import_calibration(classifier: SentimentClassifier, path: Path | None) -> dict[str, Any]:
    """Fit on a seeded CALIBRATE_FIT_SHARE of the file's rows and measure before/after on the rest (rows the fit
    did not see); raises InvalidRequest when the file is unreadable or too small."""
    if path is None:
        return calibration.uncalibrated(1.0, "imported without --calibrate: no labelled rows to fit on")
    try:
        examples = read_examples(path)
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
    return calibration.fitted(temperature, f"{cut} of {len(rows)} rows of {path.name} (seeded)", cut,
                              f"the other {len(check_rows)} rows of {path.name}", raw[cut:],
                              [e.label for e in check_rows])


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


def load_version(version: ModelVersion, *, device: str, token_budget: int, stride: int) -> SentimentClassifier:
    """The classifier of one store version, loaded with the given inference knobs, serving at the version's
    calibration temperature (what the API, bulk runs and evaluation of a stored version all go through)."""
    return SentimentClassifier.from_path(version.path, device=device, token_budget=token_budget, stride=stride,
                                         temperature=temperature_of(version.meta))
