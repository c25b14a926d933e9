"""The loaded models of one process (the API or a worker): store versions by name, loaded once, a bounded few kept.

`load(version)` answers a Future at once: done when the version is loaded, shared when a load of it is already
in flight (several requests asking for one version at the same moment load it once), new otherwise. Loads run
one at a time on the cache's own thread, so a slow load never holds a request thread and two loads never
double the memory at once. Past `max_loaded`, the least recently used version is dropped (a request still
holding its `LoadedModel` keeps using it until it is done). A version that failed to load is not tried again
for `retry_failed_after` seconds: requests meanwhile fail fast with ModelNotReady. `get(version)` is the
blocking form the workers use.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backend.errors import ModelNotReady
from backend.model.engine import Role, inference_threads
from backend.model.types import Classifier

if TYPE_CHECKING:
    from backend.config import Settings
    from backend.store import ModelStore, ModelVersion

log = logging.getLogger(__name__)

DEFAULT_MAX_LOADED = 3
RETRY_FAILED_AFTER_S = 60.0
# what /health and 503 bodies say; the details (paths, exception text) go to the server log only
LOAD_FAILED = "the model failed to load; see the server log"


# a store version's checkpoint → its classifier (checkpoint_loader in production, fakes in tests)
Loader = Callable[["ModelVersion"], Classifier]


@dataclass(frozen=True)
class LoadedModel:
    """A loaded classifier together with the store version it came from (the Label Studio model_version)."""

    version: str
    classifier: Classifier
    load_seconds: float


def checkpoint_loader(settings: Settings, role: Role = "api") -> Loader:
    """The production loader: a version's checkpoint with the settings' knobs, its engine chosen by ENGINE and its
    threads by INFERENCE_THREADS for this kind of process (backend.model.engine.inference_threads)."""
    threads = inference_threads(settings.inference_threads, role)

    def load(version: ModelVersion) -> Classifier:
        from backend.model.loading import load_version  # the engine's libraries: imported only when a model loads

        return load_version(
            version, device=settings.device, token_budget=settings.token_budget, stride=settings.window_stride,
            engine_setting=settings.engine, threads=threads,
        )

    return load


class ModelCache:
    """See the module docstring. Thread-safe."""

    def __init__(
        self, store: ModelStore, loader: Loader, *, max_loaded: int = DEFAULT_MAX_LOADED,
        retry_failed_after: float = RETRY_FAILED_AFTER_S,
    ) -> None:
        if max_loaded < 1:
            raise ValueError("max_loaded must be at least 1")
        self.store = store
        self.max_loaded = max_loaded
        self._loader = loader
        self._retry_failed_after = retry_failed_after
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._loading: dict[str, Future[LoadedModel]] = {}
        self._failed: dict[str, float] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._idle = threading.Event()
        self._idle.set()
        self.loads = 0  # how many loads ran (tests and the closing note count them)

    def load(self, version: str) -> Future[LoadedModel]:
        """A Future of the loaded version (see the module docstring); never blocks."""
        with self._lock:
            loaded = self._loaded.get(version)
            if loaded is not None:
                self._loaded.move_to_end(version)
                return _done(loaded)
            if version in self._loading:
                return self._loading[version]
            failed_at = self._failed.get(version)
            if failed_at is not None and time.monotonic() - failed_at < self._retry_failed_after:
                return _failed(ModelNotReady(LOAD_FAILED))
            future: Future[LoadedModel] = Future()
            self._loading[version] = future
            self._idle.clear()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-model")
            executor = self._executor
        executor.submit(self._load, version, future)
        return future

    def get(self, version: str, timeout: float | None = None) -> Classifier:
        """The classifier of a version, loading it first if needed (blocks); VersionNotFound when the store lacks
        it, ModelNotReady when it fails to load."""
        return self.load(version).result(timeout).classifier

    def peek(self, version: str) -> LoadedModel | None:
        """The version if it is loaded now; never loads, never reorders."""
        with self._lock:
            return self._loaded.get(version)

    def loaded(self) -> list[str]:
        """The versions held now, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def loading(self) -> list[str]:
        """The versions being loaded (or waiting for the loader thread) now."""
        with self._lock:
            return list(self._loading)

    def failed(self, version: str) -> bool:
        """True while a failed load of the version is too recent to try again."""
        with self._lock:
            failed_at = self._failed.get(version)
        return failed_at is not None and time.monotonic() - failed_at < self._retry_failed_after

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no load is in flight; False on timeout (tests and the CLI use it)."""
        return self._idle.wait(timeout)

    def load_dir(self, path: Path | str) -> Classifier:
        """Load a checkpoint directory that is not (yet) a store version (a training's candidate), with this
        cache's loader; not kept."""
        from backend.store import ModelVersion

        return self._loader(ModelVersion(version="candidate", path=Path(path), meta={}))

    def _load(self, version: str, future: Future[LoadedModel]) -> None:
        started = time.monotonic()
        log.info("loading model version %s", version)
        try:
            classifier = self._loader(self.store.get(version))
        except Exception as exc:  # any loader failure is reported to every waiter and logged with its cause
            log.exception("loading model version %s failed", version)
            with self._lock:
                self._failed[version] = time.monotonic()
                del self._loading[version]
                self._idle_if_done()
            future.set_exception(exc if _shown(exc) else ModelNotReady(LOAD_FAILED))
            return
        loaded = LoadedModel(version=version, classifier=classifier, load_seconds=time.monotonic() - started)
        with self._lock:
            self.loads += 1
            self._failed.pop(version, None)
            self._loaded[version] = loaded
            while len(self._loaded) > self.max_loaded:
                dropped, _ = self._loaded.popitem(last=False)
                log.info("model version %s dropped from memory (MAX_LOADED_MODELS=%d)", dropped, self.max_loaded)
            del self._loading[version]
            self._idle_if_done()
        future.set_result(loaded)
        log.info("model version %s loaded in %.1f s", version, loaded.load_seconds)

    def _idle_if_done(self) -> None:
        if not self._loading:
            self._idle.set()


def _shown(exc: Exception) -> bool:
    """A missing version is said as such; any other cause (paths, library text) stays in the log."""
    from backend.errors import VersionNotFound

    return isinstance(exc, VersionNotFound)


def _done(loaded: LoadedModel) -> Future[LoadedModel]:
    future: Future[LoadedModel] = Future()
    future.set_result(loaded)
    return future


def _failed(exc: Exception) -> Future[LoadedModel]:
    future: Future[LoadedModel] = Future()
    future.set_exception(exc)
    return future
