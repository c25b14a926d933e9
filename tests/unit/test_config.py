"""Settings: environment parsing, the Basic auth pair rule, secrets that never show in a repr."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from backend.config import Settings, SettingsError, load_settings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting may leak in from the developer's shell."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.port == 9090 and settings.host == "127.0.0.1"
    assert settings.basic_auth_enabled is False
    assert settings.webhook_secret is None
    assert settings.max_tasks_per_predict == 1000
    assert settings.max_text_chars == 100_000
    assert settings.max_body_bytes == 20 * 1024 * 1024


def test_environment_is_parsed_and_typed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("PORT", "9191")
    monkeypatch.setenv("max_tasks_per_predict", "5")  # case-insensitive
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("DEVICE", "cpu")
    settings = load_settings()
    assert settings.model_dir == tmp_path
    assert settings.port == 9191
    assert settings.max_tasks_per_predict == 5
    assert settings.log_level == "DEBUG"
    assert settings.device == "cpu"


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9191")
    assert load_settings(port=9292).port == 9292


@pytest.mark.parametrize(
    ("name", "value"),
    [("PORT", "not-a-port"), ("DEVICE", "tpu"), ("LOG_LEVEL", "LOUD"), ("MAX_TASKS_PER_PREDICT", "0")],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert str(refused.value).startswith(f"invalid configuration: {name}: "), "the variable is named"
    assert value not in str(refused.value), "the value is never shown"


@pytest.mark.parametrize(
    "env",
    [{"BASIC_AUTH_USER": "label-studio"}, {"BASIC_AUTH_PASS": "pw"}, {"BASIC_AUTH_USER": "u", "BASIC_AUTH_PASS": ""}],
)
def test_basic_auth_needs_both_halves(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match="BASIC_AUTH_USER and BASIC_AUTH_PASS must be set together") as refused:
        load_settings()
    assert "input_value" not in str(refused.value)
    assert all(v not in str(refused.value) for v in env.values() if len(v) > 1)


def test_basic_auth_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASIC_AUTH_USER", "label-studio")
    monkeypatch.setenv("BASIC_AUTH_PASS", "pw-very-secret")
    settings = load_settings()
    assert settings.basic_auth_enabled is True
    assert isinstance(settings.basic_auth_pass, SecretStr)
    assert settings.basic_auth_pass.get_secret_value() == "pw-very-secret"


def test_secrets_never_show_in_a_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "BASIC_AUTH_USER": "label-studio",
        "BASIC_AUTH_PASS": "pw-very-secret",
        "WEBHOOK_SECRET": "wh-very-secret",
        "LABEL_STUDIO_API_KEY": "pat-very-secret",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        for name, value in secrets.items():
            if name != "BASIC_AUTH_USER":
                assert value not in text, name
    assert isinstance(settings.webhook_secret, SecretStr)
    assert isinstance(settings.label_studio_api_key, SecretStr)


def test_engine_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = load_settings()
    assert (defaults.engine, defaults.inference_threads, defaults.build_engine) == ("auto", 0, True)
    monkeypatch.setenv("ENGINE", "onnx")
    monkeypatch.setenv("INFERENCE_THREADS", "4")
    monkeypatch.setenv("BUILD_ENGINE", "false")
    settings = load_settings()
    assert (settings.engine, settings.inference_threads, settings.build_engine) == ("onnx", 4, False)
    monkeypatch.setenv("ENGINE", "tensorrt")
    with pytest.raises(ValueError, match="ENGINE"):
        load_settings()
