"""What the API serves: each project's version from the store's model lines, loaded through the one ModelCache.

A request names its project; `version_for(project)` answers from memory and re-reads the project's line (one
or two small file reads, no lock, no load) at most once per `check_interval_s` (MODEL_CHECK_INTERVAL_S), so
most requests read no file at all and /setup answers in milliseconds. A promotion or rollback made through
this process's store (the API's own routes) is seen by the very next request; one made by another process
(the CLI, a worker's training) within the interval, with no restart. `model_for(project)` returns a loaded
version at once and otherwise awaits its load off the event loop (the cache loads on its own thread, each
version once however many requests ask), so a project whose version is not loaded yet waits while the others
keep being answered. A request holds one `LoadedModel`, so its predictions and its model_version always
belong together.

/health and /versions describe the default line: LOADING until its version first loads (loading starts with
the app), then UP; ERROR while that version fails to load or the store is empty.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from backend.errors import ModelNotReady
from backend.freshness import FreshValues
from backend.model.cache import LOAD_FAILED, RETRY_FAILED_AFTER_S, LoadedModel, Loader, ModelCache, checkpoint_loader
from backend.model.types import Classifier
from backend.store import ModelStore

log = logging.getLogger(__name__)

EMPTY_STORE = "the model failed to load: the model store has no current version; see the server log"
# Label Studio gives /predict 100 s: a request whose version is still loading after this answers 503 and retries
LOAD_WAIT_S = 90.0
# how stale a project's pointer may be when another process moved it (the MODEL_CHECK_INTERVAL_S default)
CHECK_INTERVAL_S = 1.0

__all__ = ["Classifier", "LoadedModel", "Loader", "ServedModel", "checkpoint_loader"]


class ServedModel:
    """The store and the process's ModelCache, seen from the API; see the module docstring."""

    def __init__(
        self, store: ModelStore, loader: Loader, *, max_loaded: int = 3,
        retry_failed_after: float = RETRY_FAILED_AFTER_S, load_wait_s: float = LOAD_WAIT_S,
        check_interval_s: float = CHECK_INTERVAL_S, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.cache = ModelCache(store, loader, max_loaded=max_loaded, retry_failed_after=retry_failed_after)
        self.load_wait_s = load_wait_s
        # project → its version, read under store.changes (backend.freshness)
        self._pointers: FreshValues[str | None] = FreshValues(check_interval_s, clock=clock)
        self._up = threading.Event()  # the default line's version loaded once: UP from then on
        self._empty = False

    # ---------------------------------------------------------------- per project
    def version_for(self, project: int | None) -> str:
        """The version the project is served now (its line's, else the default line's); no load, no lock.
        ModelNotReady when the store has no version at all."""
        version = self._pointer(project)
        if version is None:
            raise ModelNotReady(EMPTY_STORE)
        return version

    def _pointer(self, project: int | None) -> str | None:
        """store.current_version(project), read from the files at most once per check_interval_s (at once after a
        pointer change made through this process's store)."""
        changes = self.store.changes
        fresh, version = self._pointers.get(project, changes)
        if not fresh:
            version = self.store.current_version(project)
            self._pointers.put(project, changes, version)
        return version

    def labels_of(self, version: str) -> tuple[str, ...]:
        """A version's label names, from the loaded model or, without loading it, from its meta or config."""
        loaded = self.cache.peek(version)
        labels = loaded.classifier.labels if loaded else self.store.get(version).labels
        if not labels:
            raise ModelNotReady(f"model version {version} names no labels in its meta.json or config.json")
        return labels

    async def model_for(self, project: int | None) -> LoadedModel:
        """The project's version, loaded: at once when it is in memory, else after its load (awaited, never on the
        event loop); ModelNotReady when it fails to load or takes longer than load_wait_s."""
        version = self.version_for(project)
        future = self.cache.load(version)  # a loaded version: a done future (and its use is counted for the LRU)
        if future.done() and future.exception() is None:  # the common case: no task, no wait
            return future.result()
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.load_wait_s)
        except TimeoutError:
            raise ModelNotReady(f"model version {version} is still loading; retry in a few seconds") from None

    # ---------------------------------------------------------------- the default line
    @property
    def ready(self) -> bool:
        """True once the default line's version has loaded (stays true while a newer one loads)."""
        if self._up.is_set():
            return True
        version = self._default()
        if version and self.cache.peek(version):
            self._up.set()
        return self._up.is_set()

    @property
    def version(self) -> str | None:
        """The default line's version (what /health and /versions report), None for an empty store."""
        return self._default()

    @property
    def error(self) -> str | None:
        """Why the default line cannot be served, safe to show a client (no paths or exception text); else None."""
        version = self._default()
        if version is None:
            return EMPTY_STORE
        if self.cache.peek(version) is None and self.cache.failed(version):
            return LOAD_FAILED
        return None

    def start_loading(self) -> None:
        """Start loading the default line's version in the background (app start); never blocks."""
        self.refresh()

    def refresh(self) -> None:
        """Load the default line's version unless it is loaded, loading or failed too recently."""
        version = self._default()
        if version is None:
            if not self._empty:
                log.warning("the model store %s has no current version: nothing to serve", self.store.root)
                self._empty = True
            return
        self._empty = False
        self.cache.load(version).add_done_callback(lambda f: None if f.exception() else self._up.set())

    def current(self) -> LoadedModel:
        """The default line's version if it is loaded now; ModelNotReady otherwise."""
        version = self._default()
        loaded = self.cache.peek(version) if version else None
        if loaded is None:
            raise ModelNotReady(self.error or "the model is still loading; retry in a few seconds")
        return loaded

    def classifier(self) -> Classifier:
        """The default line's loaded classifier; ModelNotReady otherwise."""
        return self.current().classifier

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no load is in flight; False on timeout (tests and the CLI use it)."""
        return self.cache.wait(timeout)

    def _default(self) -> str | None:
        try:
            return self._pointer(None)
        except OSError as exc:
            log.warning("cannot read the model store's default line: %s", exc)
            return None
