"""The real logging set-up under test: configure_logging(settings), with the root handler's stream captured."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from backend.config import Settings
from backend.logs import configure_logging

TOUCHED = ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore", "urllib3", "filelock", "huggingface_hub")


@contextmanager
def configured_log(settings: Settings) -> Iterator[io.StringIO]:
    """configure_logging(settings) with its one root handler writing into the yielded buffer; restores logging after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    others = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate,
                     logging.getLogger(name).level) for name in TOUCHED}
    buffer = io.StringIO()
    try:
        configure_logging(settings)
        (handler,) = root.handlers
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(buffer)
        yield buffer
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, (handlers, propagate, level) in others.items():
            logger = logging.getLogger(name)
            logger.handlers[:], logger.propagate = handlers, propagate
            logger.setLevel(level)
