"""The CLI's configuration errors name the variable and the problem, never the value."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from backend.cli import main
from backend.config import Settings

pytestmark = pytest.mark.unit

SECRET = "pw-cli-Vt8sK2nQ5x"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the test alone, never from the developer's shell."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_a_lone_password_is_named_not_shown() -> None:
    result = CliRunner().invoke(main, ["serve"], env={"BASIC_AUTH_PASS": SECRET})
    assert result.exit_code == 2
    assert SECRET not in result.output and "input_value" not in result.output
    assert result.output.strip() == (
        "error: invalid configuration: BASIC_AUTH_USER and BASIC_AUTH_PASS must be set together"
    )


def test_a_bad_value_names_its_variable_only() -> None:
    bad_port = f"9090-{SECRET}"
    result = CliRunner().invoke(main, ["models", "list"], env={"PORT": bad_port, "BASIC_AUTH_PASS": SECRET})
    assert result.exit_code == 2
    assert SECRET not in result.output and bad_port not in result.output
    assert result.output.startswith("error: invalid configuration: PORT: Input should be a valid integer")


def test_serve_logs_the_start_warnings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import uvicorn

    import backend.model.loading

    served: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(app))
    monkeypatch.setattr(backend.model.loading, "ensure_current", lambda store, model: None)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(main, ["serve", "--port", "9393"], env={"MODEL_DIR": str(tmp_path)})
    finally:
        root.handlers[:], root.level = saved
    assert result.exit_code == 0 and len(served) == 1
    warnings = [line for line in result.output.splitlines() if " WARNING backend.cli: " in line]
    assert len(warnings) == 2
    assert "Basic auth is off" in warnings[0]
    assert "NO AUTHENTICATION AT ALL" in warnings[1] and "127.0.0.1:9393" in warnings[1]
