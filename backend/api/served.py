"""The model the API serves: one store version, loaded in the background, swapped without a restart.

Loading never happens on a request thread: `start_loading()` (app start) and `refresh()` (each /setup, and
/health while loading failed) start a background thread when the store's CURRENT names a version other
than the one served. Until the new version is loaded the old one keeps answering; the swap is one
assignment under a lock, and a request takes one `LoadedModel` snapshot so its predictions and its
model_version always belong together.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from backend.config import Settings
from backend.errors import ModelNotReady
from backend.model.types import Prediction
from backend.store import ModelStore, ModelVersion

log = logging.getLogger(__name__)

# a version that failed to load is tried again by refresh() only after this long (or when CURRENT changes)
RETRY_FAILED_AFTER_S = 60.0


class Classifier(Protocol):
    """What the API needs of backend.model.classifier.SentimentClassifier."""

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's label names, e.g. ("NEGATIVE", "POSITIVE")."""
        ...

    def predict(self, texts: Sequence[str], *, max_tokens: int | None = None) -> list[Prediction]:
        """One Prediction per text, same order; thread-safe; TooManyTokens past max_tokens word pieces."""
        ...


Loader = Callable[[ModelVersion], Classifier]


@dataclass(frozen=True)
class LoadedModel:
    """A loaded classifier together with the store version it came from (the Label Studio model_version)."""

    version: str
    classifier: Classifier
    load_seconds: float


def classifier_loader(settings: Settings) -> Loader:
    """The production loader: SentimentClassifier.from_path on a version's checkpoint with the settings' knobs."""

    def load(version: ModelVersion) -> Classifier:
        from backend.model.loading import load_version  # torch: imported only when a model loads

        return load_version(
            version, device=settings.device, token_budget=settings.token_budget, stride=settings.window_stride
        )

    return load


class ServedModel:
    """Holds the ModelStore and the currently loaded classifier; see the module docstring."""

    def __init__(self, store: ModelStore, loader: Loader, *, retry_failed_after: float = RETRY_FAILED_AFTER_S) -> None:
        self.store = store
        self._loader = loader
        self._retry_failed_after = retry_failed_after
        self._lock = threading.Lock()
        self._model: LoadedModel | None = None
        self._loading: str | None = None
        self._failed: str | None = None
        self._failed_at = 0.0
        self._error: str | None = None
        self._idle = threading.Event()
        self._idle.set()

    @property
    def ready(self) -> bool:
        """True once a version is loaded (stays true while a newer one loads)."""
        return self._model is not None

    @property
    def version(self) -> str | None:
        """The version being served, None before the first load."""
        model = self._model
        return model.version if model else None

    @property
    def error(self) -> str | None:
        """Why the last load failed; None once a load succeeds."""
        return self._error

    @property
    def loading(self) -> str | None:
        """The version a background thread is loading now, if any."""
        return self._loading

    def current(self) -> LoadedModel:
        """The served snapshot; raises ModelNotReady while nothing is loaded."""
        model = self._model
        if model is None:
            if self._error:
                raise ModelNotReady(f"the model failed to load: {self._error}")
            raise ModelNotReady("the model is still loading; retry in a few seconds")
        return model

    def classifier(self) -> Classifier:
        """The served classifier; raises ModelNotReady while nothing is loaded."""
        return self.current().classifier

    def start_loading(self) -> None:
        """Load the store's current version in the background unless it is already served or loading."""
        self.refresh()

    def refresh(self) -> bool:
        """Cheap (one small file read): start loading the store's CURRENT if it changed. True when a load began."""
        try:
            target = self.store.current_version()
        except OSError as exc:
            log.warning("cannot read the model store's current version: %s", exc)
            return False
        with self._lock:
            if target is None:
                if self._model is None:
                    self._error = f"the model store {self.store.root} has no current version"
                return False
            served = self._model.version if self._model else None
            failed_recently = target == self._failed and time.monotonic() - self._failed_at < self._retry_failed_after
            if target == served or self._loading is not None or failed_recently:
                return False
            self._loading = target
            self._idle.clear()
        threading.Thread(target=self._load, args=(target,), name=f"load-model-{target}", daemon=True).start()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no load is in flight; False on timeout (tests and the CLI use it)."""
        return self._idle.wait(timeout)

    def _load(self, target: str) -> None:
        started = time.monotonic()
        log.info("loading model version %s", target)
        try:
            classifier = self._loader(self.store.get(target))
        except Exception as exc:  # any loader failure must leave the old model serving and be reported
            log.exception("loading model version %s failed", target)
            with self._lock:
                self._failed, self._failed_at, self._loading = target, time.monotonic(), None
                self._error = f"{type(exc).__name__}: {exc}"
            self._idle.set()
            return
        loaded = LoadedModel(version=target, classifier=classifier, load_seconds=time.monotonic() - started)
        with self._lock:
            previous = self._model.version if self._model else None
            self._model, self._failed, self._error, self._loading = loaded, None, None, None
        self._idle.set()
        log.info("serving model version %s (loaded in %.1f s; was %s)", target, loaded.load_seconds, previous)
