"""The one typed Settings object. Nothing else in the package reads os.environ."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "distilbert-base-uncased-finetuned-sst-2-english"


class Settings(BaseSettings):
    """Every environment variable the backend reads, with its default (see README's settings table)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # model and store
    model: str = Field(DEFAULT_MODEL, description="Hugging Face id or local checkpoint directory")
    model_dir: Path = Field(Path("models"), description="the model store")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    engine: Literal["auto", "torch", "onnx"] = Field(
        "auto", description="auto: the version's best engine that passed its accuracy gate (torch on CUDA); torch; "
        "onnx: force the ONNX export (an override: answers may change slightly under the same version string)"
    )
    inference_threads: int = Field(
        0, ge=0, le=1024, description="intra-op threads of a process's engine; 0: 1 per worker, the usable cores in "
        "the API and the CLI"
    )
    build_engine: bool = Field(
        True, description="build and gate the ONNX engine of every version before it is published"
    )
    token_budget: int = Field(1024, ge=64, description="max padded tokens per inference batch")
    window_stride: int = Field(128, ge=0, description="tokens shared by consecutive windows of a long text")
    max_loaded_models: int = Field(
        3, ge=1, le=64, description="model versions one process keeps in memory (least recently used dropped)"
    )
    keep_rejected: int = Field(2, ge=0, description="rejected training candidates kept per project (weights)")
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
    max_tokens_per_predict: int = Field(
        100_000, ge=1, description="word pieces one /predict may ask the model to read (413 beyond); ~1 min of CPU"
    )
    max_concurrent_predicts: int = Field(
        16, ge=1, le=10_000, description="/predict requests running or waiting for the model; beyond: 503"
    )
    max_label_config_chars: int = Field(262_144, ge=1024, description="longest labeling config accepted (400 beyond)")
    body_timeout_s: float = Field(30.0, gt=0, description="a request body must arrive within this (408 beyond)")

    # bulk pre-labeling (rq workers)
    label_studio_timeout_s: float = Field(60.0, gt=0, description="read timeout of one Label Studio API call")
    prelabel_chunk_size: int = Field(500, ge=1, le=5000, description="tasks per chunk job")
    prelabel_write_batch: int = Field(
        0, ge=0, le=5000, description="predictions per Label Studio write in a chunk, the next batch predicted while "
        "one is written; 0: the whole chunk in one write"
    )
    prelabel_on_tasks_created: bool = Field(False, description="pre-label new tasks on TASKS_CREATED webhooks")
    job_retries: int = Field(3, ge=0, le=20, description="rq retries of a failing chunk job (backoff 5/20/60 s)")

    # trusting the scores (backend/quality.py)
    prefill: Literal["all", "confident"] = Field(
        "all", description="confident: a row scoring under the project's threshold gets its score but no choice"
    )
    prefill_target_precision: float = Field(0.97, gt=0.5, lt=1, description="precision the threshold guarantees")
    prefill_confidence: float = Field(0.9, gt=0.5, lt=1, description="confidence of that guarantee")
    label_error_max_p: float = Field(
        0.1, gt=0, le=1, description="an annotation is a likely error below this model probability of its label"
    )

    # retraining on accepted annotations (rq workers)
    train_after_annotations: int = Field(
        50, ge=0, description="distinct new accepted annotations that start a training; 0: only on request"
    )
    train_on_prediction_copies: bool = Field(
        False, description="count and train on annotations Label Studio copied from predictions in bulk"
    )
    train_min_annotations: int = Field(20, ge=1, description="fewest accepted annotations a training runs on")
    train_holdout_fraction: float = Field(0.2, gt=0, lt=1, description="share of new tasks drawn into the holdout")
    train_min_holdout: int = Field(30, ge=1, description="fewer holdout rows: evaluate, but promote only if forced")
    promote_margin: float = Field(
        0.0, ge=-1, le=1, description="candidate holdout accuracy must reach the current one's plus this"
    )
    train_base: str | None = Field(None, description="store version to fine-tune from (default: the current one)")
    train_epochs: float = Field(3.0, gt=0, le=50)
    train_learning_rate: float = Field(3e-5, gt=0, le=1)
    train_batch_size: int = Field(16, ge=1, le=512)
    train_max_length: int = Field(256, ge=16, le=4096, description="training texts are cut to this many tokens")
    train_max_seconds: float = Field(600, gt=0, description="wall-clock budget of one training's fine-tuning")
    train_rehearsal_file: Path | None = Field(
        None, description="labelled text,label TSV/CSV of the base model's domain, mixed into training (rehearsal)"
    )
    train_rehearsal_ratio: float = Field(1.0, ge=0, le=10, description="rehearsal rows per project training row")
    prelabel_after_promotion: bool = Field(
        False, description="after a promotion, pre-label the project's unlabeled tasks with the new version"
    )

    # serving
    model_check_interval_s: float = Field(
        1.0, ge=0, le=3600, description="how stale the API's view of a project's model line (and pre-fill "
        "threshold) may be after another process changed it; 0: read the files on every request"
    )
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


class SettingsError(ValueError):
    """Invalid configuration; the message names the environment variables and the problems, never their values."""


def load_settings(**overrides: object) -> Settings:
    """Read Settings from the environment; keyword overrides win (used by the CLI and tests); raises SettingsError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:  # its text carries input_value=..., a password included: never show it
        raise SettingsError(f"invalid configuration: {settings_problems(exc)}") from None


def settings_problems(error: ValidationError) -> str:
    """`VARIABLE: what is wrong` for each problem, joined by "; ", without the offending values."""
    problems = []
    for problem in error.errors(include_url=False, include_context=False, include_input=False):
        loc = problem.get("loc") or ()
        message = str(problem.get("msg", "")).removeprefix("Value error, ")
        problems.append(f"{str(loc[0]).upper()}: {message}" if loc else message)
    return "; ".join(problems)
