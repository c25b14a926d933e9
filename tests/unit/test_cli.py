"""The CLI's configuration errors name the variable and the problem, never the value."""

from __future__ import annotations

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
