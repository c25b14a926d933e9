"""The HTTP contract: request bodies Label Studio 1.23.2 sends (tolerating keys later versions add), the bodies
we answer with (so the OpenAPI schema is real and fuzzable), and the bounds every id must keep.

Every id that reaches a store or Redis lookup is checked here first: Label Studio ids are positive 32-bit
integers (its PostgreSQL `serial` columns), job ids match `RUN_ID_PATTERN`, version ids `VERSION_PATTERN`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from backend.store import VERSION_PATTERN

MAX_ID = 2**31 - 1
VersionId = Annotated[str, Field(pattern=VERSION_PATTERN, max_length=128, description="a model store version")]

# 1 to 2147483647 in decimal, no leading zero (a regex so that the OpenAPI schema states it too)
ID_DIGITS = (
    r"(?:[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}"
    r"|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-7])"
)
# "<project id>.<project created_at as epoch seconds>", e.g. "2.1795343493"; a bare id is accepted too
PROJECT_PATTERN = rf"^({ID_DIGITS})(?:\.[0-9]{{1,20}})?$"
_PROJECT = re.compile(PROJECT_PATTERN)
PROJECT_FORMAT = (
    f"project must be '<id>.<created_ts>' as Label Studio sends it (e.g. '2.1795343493'), id 1 to {MAX_ID}"
)
ProjectString = Annotated[str, Field(pattern=PROJECT_PATTERN)] | Annotated[int, Field(ge=1, le=MAX_ID)]


def parse_project_id(project: str) -> int:
    """The project id of a Label Studio project string; raises ValueError (without echoing it) when malformed."""
    match = _PROJECT.match(project)
    if match is None:
        raise ValueError(PROJECT_FORMAT)
    return int(match.group(1))


def _project_string(value: Any) -> Any:
    """Normalise and check a project field before pydantic's type check; the id is parsed once, here."""
    if isinstance(value, bool):
        raise ValueError(PROJECT_FORMAT)
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str):
        parse_project_id(value)
    return value  # let pydantic report the wrong type


class SetupRequest(BaseModel):
    """POST /setup: {"project", "schema", "hostname", "access_token", "extra_params"}."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    project: ProjectString
    label_config: str = Field(alias="schema")
    hostname: str | None = None
    access_token: SecretStr | None = None
    extra_params: Any = None

    _check_project = field_validator("project", mode="before")(_project_string)

    @property
    def project_id(self) -> int:
        """The integer project id."""
        return parse_project_id(str(self.project))


class PredictRequest(BaseModel):
    """POST /predict: {"tasks": [...], "project", "label_config", "params": {"login", "password", "context"}}."""

    model_config = ConfigDict(extra="ignore")

    tasks: list[dict[str, Any]]
    project: ProjectString | None = None
    label_config: str | None = None
    params: dict[str, Any] | None = Field(default=None, repr=False)

    _check_project = field_validator("project", mode="before")(_project_string)

    @property
    def project_id(self) -> int | None:
        """The integer project id, None when the request named no project."""
        return parse_project_id(str(self.project)) if self.project is not None else None


class WebhookEvent(BaseModel):
    """POST /webhook: {"action": "...", ...} with every other key kept (annotation, task(s), project...)."""

    model_config = ConfigDict(extra="allow")

    action: str = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _bounded_ids(self) -> WebhookEvent:
        """Integer ids in project / annotation(s) / task(s) must be Label Studio ids (1 to 2**31 - 1)."""
        extra = self.model_extra or {}
        for key in ("project", "annotation", "annotations", "task", "tasks"):
            for value in _listed(extra.get(key)):
                found = value.get("id") if isinstance(value, dict) else value
                if isinstance(found, int) and not isinstance(found, bool) and not 1 <= found <= MAX_ID:
                    raise ValueError(f"{key} ids must be between 1 and {MAX_ID}")
        return self

    def __repr_args__(self) -> Any:
        # the payload carries the project token and task_data_password: never let a repr show it
        return [("action", self.action)]

    def payload(self) -> dict[str, Any]:
        """Everything besides `action`, as Label Studio sent it."""
        return dict(self.model_extra or {})


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


# ------------------------------------------------------------------ response bodies (the OpenAPI schema)
class ErrorBody(BaseModel):
    """Every error: {"detail": "..."} (422s add "errors": [{loc, msg, type}], never the input)."""

    detail: str
    errors: list[dict[str, Any]] | None = None


class HealthBody(BaseModel):
    """GET /health: UP with the served version; LOADING or ERROR (503) before."""

    status: str
    model_version: str | None = None
    detail: str | None = None


class SetupBody(BaseModel):
    """POST /setup."""

    model_version: str


class ChoiceValue(BaseModel):
    choices: list[str]


class Region(BaseModel):
    """One choices result region, as Label Studio stores it."""

    from_name: str
    to_name: str
    type: str
    value: ChoiceValue
    score: float


class PredictionBody(BaseModel):
    """One task's prediction; an empty result and a null score when the task could not be predicted."""

    result: list[Region]
    score: float | None
    model_version: str


class PredictBody(BaseModel):
    """POST /predict: one prediction per task, in task order."""

    results: list[PredictionBody]
    model_version: str


class VersionsBody(BaseModel):
    """GET /versions."""

    versions: list[str]
    current: str | None


class WebhookBody(BaseModel):
    """POST /webhook: what was done with the event (plus a job id for START_TRAINING)."""

    model_config = ConfigDict(extra="allow")

    status: str
    action: str
    detail: str | None = None


class JobBody(BaseModel):
    """One run (GET /jobs/{id}); the counters differ between pre-labeling and training."""

    model_config = ConfigDict(extra="allow")

    id: str
    kind: str
    project: int
    state: str
    percent: float


class JobsBody(BaseModel):
    """GET /jobs."""

    jobs: list[JobBody]


class ModelsBody(BaseModel):
    """GET /models: every version; the asked project's (or the default) line's current version and history."""

    project: int | None
    line: str = Field(description="the line the project is served: `default` or `project-<id>`")
    current: str | None
    lines: dict[str, str] = Field(description="every line → its current version")
    models: list[dict[str, Any]]
    history: list[dict[str, Any]]
    prefill: dict[str, Any] | None = Field(default=None, description="the project's pre-fill threshold, if assessed")


class CurrentBody(BaseModel):
    """A promotion or rollback: the version the line (and the project) is served now."""

    current: str
    line: str
    project: int | None = None
    label_studio: str | None = Field(default=None, description="whether the project's model_version was set there")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entry declaring these error statuses with the ErrorBody shape."""
    return {status: {"model": ErrorBody} for status in statuses}
