"""docker/compose.yml and docker/Dockerfile read statically: compose's images cannot be pulled here, so its file is
checked against what the README promises (services, environment, volumes, healthchecks, one shared model store)
and against the Dockerfile it builds. The image itself is built and run by the container tier (tests/container)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from backend.config import Settings

pytestmark = pytest.mark.unit

DOCKER = Path(__file__).resolve().parents[2] / "docker"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker/compose.yml, parsed."""
    parsed: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yml").read_text())
    return parsed


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment as a dict (list form `K=V` / `K`, or map form); None: passed through when set."""
    env = service.get("environment", {})
    if isinstance(env, dict):
        return {k: None if v is None else str(v) for k, v in env.items()}
    return {item.split("=", 1)[0]: (item.split("=", 1)[1] if "=" in item else None) for item in env}


def dockerfile_args() -> set[str]:
    """The ARG names docker/Dockerfile declares."""
    return set(re.findall(r"^ARG (\w+)", (DOCKER / "Dockerfile").read_text(), flags=re.M))


def test_the_four_services_the_readme_names(compose: dict[str, Any]) -> None:
    assert compose["name"] == "sentiment"
    assert set(compose["services"]) == {"label-studio", "redis", "backend", "worker"}
    assert set(compose["volumes"]) == {"label-studio-data", "models"}


def test_label_studio_has_the_two_network_variables_its_data_volume_and_a_healthcheck(compose: dict[str, Any]) -> None:
    studio = compose["services"]["label-studio"]
    assert studio["image"] == "heartexlabs/label-studio:1.23.2"
    env = environment(studio)
    assert env["ML_BLOCK_LOCAL_IP"] == "false" and env["SSRF_PROTECTION_ENABLED"] == "false"
    assert "LABEL_STUDIO_PASSWORD" in env
    assert studio["volumes"] == ["label-studio-data:/label-studio/data"]
    assert studio["ports"] == ["127.0.0.1:8080:8080"]
    assert "/health" in studio["healthcheck"]["test"][-1]


def test_redis_is_pinged(compose: dict[str, Any]) -> None:
    assert compose["services"]["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_backend_and_worker_share_the_model_store_and_the_settings(compose: dict[str, Any]) -> None:
    backend, worker = compose["services"]["backend"], compose["services"]["worker"]
    assert backend["volumes"][0].split()[0] == worker["volumes"][0] == "models:/models"
    assert worker["image"] == backend["image"]
    for service in (backend, worker):
        env = environment(service)
        assert env["MODEL_DIR"] == "/models"
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["LABEL_STUDIO_URL"] == "http://label-studio:8080"
        for passed_through in ("LABEL_STUDIO_API_KEY", "BASIC_AUTH_USER", "BASIC_AUTH_PASS", "WEBHOOK_SECRET"):
            assert env[passed_through] is None  # from the shell when set there, else unset
        assert {name.lower() for name in env} <= set(Settings.model_fields), "a variable nothing reads"
        assert service["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert backend["command"][:2] == ["sentiment-backend", "serve"] and worker["command"] == ["sentiment-backend",
                                                                                             "worker"]
    assert worker["depends_on"]["backend"] == {"condition": "service_healthy"}


def test_backend_uses_the_image_healthcheck_and_the_worker_disables_it(compose: dict[str, Any]) -> None:
    assert "healthcheck" not in compose["services"]["backend"]
    assert re.search(r"^HEALTHCHECK .*\n.*/health", (DOCKER / "Dockerfile").read_text(), flags=re.M)
    assert compose["services"]["worker"]["healthcheck"] == {"disable": True}


def test_backend_builds_the_dockerfile_with_arguments_it_declares(compose: dict[str, Any]) -> None:
    build = compose["services"]["backend"]["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    assert set(build["args"]) <= dockerfile_args()


def test_the_dockerfile_builds_without_buildkit_extensions() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert not re.search(r"^# *syntax=", text, flags=re.M | re.I)  # Docker would pull a frontend image
    instructions = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not any("--mount" in line for line in instructions)  # podman 4.3 refuses RUN --mount=type=bind,from=...
    assert {"PYTHON_IMAGE", "TORCH_SOURCE", "MODEL_SOURCE", "MODEL", "MODEL_NAME"} <= dockerfile_args()
