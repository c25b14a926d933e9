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


class TooManyTokens(PayloadTooLarge):
    """The texts of one /predict tokenize to more word pieces than MAX_TOKENS_PER_PREDICT. HTTP 413."""

    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(
            f"the tasks of this /predict hold {tokens} word pieces; the limit is MAX_TOKENS_PER_PREDICT={limit} "
            "(send fewer or shorter tasks, or use `sentiment-backend prelabel` for bulk work)"
        )
        self.tokens, self.limit = tokens, limit


class Overloaded(BackendError):
    """Too many /predict requests are running or waiting already; retry later. HTTP 503 with Retry-After."""

    status = 503
    retry_after_s = 1


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


class JobNotFound(BackendError):
    """No such job (run) id in Redis. HTTP 404."""

    status = 404


class JobQueueUnavailable(BackendError):
    """Redis (the job queue) cannot be reached. HTTP 503."""

    status = 503


class JobQueueFull(BackendError):
    """So many jobs of a kind are already waiting that a new run is refused (flood protection). HTTP 503."""

    status = 503
    retry_after_s = 60


class LabelStudioError(BackendError):
    """A Label Studio API call failed. HTTP 502 when it reaches a client."""

    status = 502
    retryable = False

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status  # what Label Studio answered, when it answered


class LabelStudioUnavailable(LabelStudioError):
    """Label Studio answered 5xx/429, timed out or could not be reached: worth retrying. HTTP 502."""

    retryable = True


class LabelStudioAuthError(LabelStudioError):
    """Label Studio refused our token (missing, wrong or without access). HTTP 502."""


class ProjectNotFound(LabelStudioError):
    """Label Studio has no project with that id. HTTP 404."""

    status = 404


class ReportNotFound(BackendError):
    """No evaluation report is stored for that project and version (the worker renders one after each training or
    bulk run; `sentiment-backend report` renders one now). HTTP 404."""

    status = 404


class NotEnoughAnnotations(BackendError):
    """A project has too few accepted annotations to train on. HTTP 422."""

    status = 422


class NothingToRollBack(BackendError):
    """A rollback without a version while the store's history has no earlier current version. HTTP 409."""

    status = 409


class PointerMoved(BackendError):
    """A compare-and-swap of a model line found it moved since it was read (another promotion won). HTTP 409."""

    status = 409


class ManagementDisabled(BackendError):
    """A management route (jobs, promote, rollback) was called while Basic auth is not configured. HTTP 403."""

    status = 403
