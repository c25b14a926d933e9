"""Domain errors. Each class names the HTTP status the API maps it to (the mapping lives in api/app.py)."""

from __future__ import annotations


class BackendError(Exception):
    """Base of every error the backend raises on purpose."""

    status = 500


class InvalidRequest(BackendError):
    """A request we understood but cannot serve as sent. HTTP 422."""

    status = 422


class InvalidLabelingConfig(BackendError):
    """The Label Studio config has no usable Choices bound to a Text, or labels that cannot be mapped. HTTP 400."""

    status = 400


class PayloadTooLarge(BackendError):
    """Too many tasks, too long a text or too big a body. HTTP 413."""

    status = 413


class ModelNotReady(BackendError):
    """The classifier is still loading or failed to load. HTTP 503."""

    status = 503


class VersionNotFound(BackendError):
    """No such version in the model store. HTTP 404."""

    status = 404


class ModelUnavailable(BackendError):
    """The configured model cannot be loaded or imported (no network, no cache, empty store)."""

    status = 503


class InvalidCheckpoint(BackendError):
    """A directory is not a loadable sequence-classification checkpoint. HTTP 400."""

    status = 400
