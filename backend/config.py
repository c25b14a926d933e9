"""The one typed Settings object. Nothing else in the package reads os.environ."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "distilbert-base-uncased-finetuned-sst-2-english"


class Settings(BaseSettings):
    """Every environment variable the backend reads, with its default (see README's settings table)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # model and store
    model: str = Field(DEFAULT_MODEL, description="Hugging Face id or local checkpoint directory")
    model_dir: Path = Field(Path("models"), description="the model store")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    token_budget: int = Field(2048, ge=64, description="max padded tokens per inference batch")
    window_stride: int = Field(128, ge=0, description="tokens shared by consecutive windows of a long text")
    data_dir: Path = Field(Path("data"), description="where `models bootstrap` finds sst2/train.tsv and dev.tsv")

    # services
    redis_url: str = "redis://127.0.0.1:6379/0"
    label_studio_url: str = "http://127.0.0.1:8080"
    label_studio_api_key: SecretStr | None = None

    # security
    basic_auth_user: str | None = None
    basic_auth_pass: SecretStr | None = None
    webhook_secret: SecretStr | None = None

    # limits
    max_tasks_per_predict: int = Field(1000, ge=1)
    max_text_chars: int = Field(100_000, ge=1)
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)

    # bulk pre-labeling (rq workers)
    label_studio_timeout_s: float = Field(60.0, gt=0, description="read timeout of one Label Studio API call")
    prelabel_chunk_size: int = Field(500, ge=1, le=5000, description="tasks per chunk job")
    prelabel_on_tasks_created: bool = Field(False, description="pre-label new tasks on TASKS_CREATED webhooks")
    job_retries: int = Field(3, ge=0, le=20, description="rq retries of a failing chunk job (backoff 5/20/60 s)")

    # serving
    host: str = "127.0.0.1"
    port: int = 9090
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _auth_pair(self) -> Settings:
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass and self.basic_auth_pass.get_secret_value()):
            raise ValueError("BASIC_AUTH_USER and BASIC_AUTH_PASS must be set together")
        return self

    @property
    def basic_auth_enabled(self) -> bool:
        """True when both Basic auth variables are set."""
        return bool(self.basic_auth_user)


def load_settings(**overrides: object) -> Settings:
    """Read Settings from the environment; keyword overrides win (used by the CLI and tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
