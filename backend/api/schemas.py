"""Request bodies Label Studio 1.23.2 sends, as pydantic models that tolerate keys added by later versions."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

# "<project id>.<project created_at as epoch seconds>", e.g. "2.1795343493"; a bare id is accepted too
_PROJECT = re.compile(r"([0-9]{1,18})(?:\.[0-9]{1,20})?")
PROJECT_FORMAT = "project must be '<id>.<created_ts>' as Label Studio sends it (e.g. '2.1795343493')"


def parse_project_id(project: str) -> int:
    """The project id of a Label Studio project string; raises ValueError (without echoing it) when malformed."""
    match = _PROJECT.fullmatch(project.strip())
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
        return value.strip()
    return value  # let pydantic report the wrong type


class SetupRequest(BaseModel):
    """POST /setup: {"project", "schema", "hostname", "access_token", "extra_params"}."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    project: str
    label_config: str = Field(alias="schema")
    hostname: str | None = None
    access_token: SecretStr | None = None
    extra_params: Any = None

    _check_project = field_validator("project", mode="before")(_project_string)

    @property
    def project_id(self) -> int:
        """The integer project id."""
        return parse_project_id(self.project)


class PredictRequest(BaseModel):
    """POST /predict: {"tasks": [...], "project", "label_config", "params": {"login", "password", "context"}}."""

    model_config = ConfigDict(extra="ignore")

    tasks: list[dict[str, Any]]
    project: str | None = None
    label_config: str | None = None
    params: dict[str, Any] | None = Field(default=None, repr=False)

    _check_project = field_validator("project", mode="before")(_project_string)

    @property
    def project_id(self) -> int | None:
        """The integer project id, None when the request named no project."""
        return parse_project_id(self.project) if self.project is not None else None


class WebhookEvent(BaseModel):
    """POST /webhook: {"action": "...", ...} with every other key kept (annotation, task(s), project...)."""

    model_config = ConfigDict(extra="allow")

    action: str = Field(min_length=1, max_length=100)

    def __repr_args__(self) -> Any:
        # the payload carries the project token and task_data_password: never let a repr show it
        return [("action", self.action)]

    def payload(self) -> dict[str, Any]:
        """Everything besides `action`, as Label Studio sent it."""
        return dict(self.model_extra or {})
