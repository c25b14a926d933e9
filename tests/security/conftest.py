"""Security-tier fixtures: the api tier's real app with a fake classifier (the same factory, re-exported)."""

from __future__ import annotations

from tests.api.conftest import (  # noqa: F401  (fixtures pytest finds by name)
    backend,
    clean_env,
    fake_classifier,
    make_backend,
    secured,
    store,
    tiny_checkpoint,
)
