"""The CLI: configuration errors name the variable and the problem, never the value; `models gc` output."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from backend.cli import main
from backend.config import Settings
from backend.store import ModelStore

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


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The commands configure the root logger; the next tests get it back as it was."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = saved


def _rejected_versions(root: Path, count: int) -> ModelStore:
    """A store with a current starter and `count` rejected project-1 candidates of 1,000-byte weights, oldest
    first."""
    store = ModelStore(root)
    for n in range(count + 1):
        src = root.parent / f"src-{n}"
        src.mkdir()
        (src / "model.safetensors").write_bytes(b"w" * 1000)
        meta = {"created_at": f"2026-01-01T00:00:{n:02d}+00:00"}
        if n:
            meta.update(kind="retrain", status="rejected", project=1)
        store.publish(src, meta, name=f"v{n}", make_current=n == 0)
    return store


@pytest.mark.usefixtures("root_logging")
def test_models_gc_reports_a_dry_run_then_frees_the_old_rejected_weights(tmp_path: Path) -> None:
    store = _rejected_versions(tmp_path / "models", 4)
    oldest = [v.version for v in store.list()][1:3]
    env = {"MODEL_DIR": str(store.root), "KEEP_REJECTED": "2"}
    dry = CliRunner().invoke(main, ["models", "gc", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert [line.split()[:3] for line in dry.output.splitlines() if line.startswith("would remove")] == [
        ["would", "remove", oldest[0]], ["would", "remove", oldest[1]]]
    assert dry.stdout.splitlines()[-1] == "would free 2.0 KiB (2000 bytes) from 2 version(s)"
    assert not any(v.collected for v in store.list())
    done = CliRunner().invoke(main, ["models", "gc", "--json"], env=env)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)  # the log line goes to stderr
    assert [c["version"] for c in report["collected"]] == oldest and report["bytes_freed"] == 2000
    assert report["dry_run"] is False and report["keep_rejected"] == 2
    assert [v.version for v in store.list() if v.collected] == oldest
    again = CliRunner().invoke(main, ["models", "gc"], env=env)
    assert again.stdout.splitlines()[-1] == "freed 0 B (0 bytes) from 0 version(s)"


def test_human_bytes() -> None:
    from backend.cli import _human_bytes

    assert [_human_bytes(n) for n in (0, 1023, 1536, 90 * 2**20, 5 * 2**50)] == [
        "0 B", "1023 B", "1.5 KiB", "90.0 MiB", "5120.0 TiB"]


def _labelled_tsv(path: Path, rows: int) -> Path:
    lines = ["text\tlabel"] + [f"{'a fine film' if i % 2 else 'a dull mess'} number {i}\t{i % 2}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_models_import_calibrate_fits_a_temperature_and_list_shows_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {"MODEL_DIR": str(tmp_path / "models"), "BUILD_ENGINE": "false"}
    runner = CliRunner()
    plain = runner.invoke(main, ["models", "import", str(tiny_model_dir), "--name", "plain"], env=env)
    assert plain.exit_code == 0, plain.output
    data = _labelled_tsv(tmp_path / "calib.tsv", 60)
    args = ["models", "import", str(tiny_model_dir), "--name", "fitted", "--calibrate", str(data)]
    fitted = runner.invoke(main, args, env=env)
    assert fitted.exit_code == 0, fitted.output
    version = fitted.stdout.strip()
    record = ModelStore(tmp_path / "models").get(version).meta["calibration"]
    assert record["calibrated"] is True and record["temperature"] > 0
    assert record["fitted_on"] == {"rows": 42, "description": "42 of 60 rows of calib.tsv (seeded)"}
    assert record["measured_on"] == "the other 18 rows of calib.tsv"
    assert record["before"]["rows"] == record["after"]["rows"] == 18
    assert fitted.stderr.strip().splitlines()[-2:] == [f"calibration: T={record['temperature']:.2f}", "engine=torch"]

    listing = runner.invoke(main, ["models", "list"], env=env)
    rows = [line for line in listing.stdout.splitlines() if line[2:].startswith(("plain", "fitted"))]
    lines = {line[2:].split()[0]: line for line in rows}
    assert lines[plain.stdout.strip()].endswith("T=1.00 uncalibrated engine=torch")
    assert lines[version].endswith(f"T={record['temperature']:.2f} engine=torch")
    as_json = json.loads(runner.invoke(main, ["models", "list", "--json"], env=env).stdout)
    assert {m["version"]: m["calibration"]["calibrated"] for m in as_json["models"]} == {
        plain.stdout.strip(): False, version: True}
    assert len(record["own_rows"]["scores"]) == 18  # the rows the fit did not use, as served
    shown = {m["version"]: m["calibration"] for m in as_json["models"]}[version]
    assert shown["own_rows"] == {"rows": 18, "description": "18 rows of calib.tsv (--calibrate) the fit did not use"}


def test_models_optimize_publishes_a_gated_engine_as_a_new_version_and_list_shows_the_gate(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    (data / "sst2").mkdir(parents=True)
    _labelled_tsv(data / "sst2" / "dev.tsv", 30)
    env = {"MODEL_DIR": str(tmp_path / "models"), "DATA_DIR": str(data), "BUILD_ENGINE": "false"}
    runner = CliRunner()
    old = runner.invoke(main, ["models", "import", str(tiny_model_dir), "--name", "tiny"], env=env).stdout.strip()
    result = runner.invoke(main, ["models", "optimize", old], env=env)  # builds even with BUILD_ENGINE=false
    assert result.exit_code == 0, result.output
    new = result.stdout.strip()
    assert new != old and new.startswith("tiny-optimized-")
    shown = result.stderr.strip().splitlines()[-1]
    assert shown == "engine=onnx-int8 (gate: 100.0% agree, accuracy +0.00 pts on 30 rows)"
    store = ModelStore(tmp_path / "models")
    assert store.current_version() == old  # no line moved
    assert store.get(new).meta["engine"]["gate"]["source"] == "SST-2 dev (bundled data/sst2/dev.tsv)"
    listing = runner.invoke(main, ["models", "list"], env=env).stdout
    assert any(line[2:].startswith(new) and line.endswith("pts on 30 rows)") for line in listing.splitlines())
    missing = runner.invoke(main, ["models", "optimize", "tiny-20000101-000000"], env=env)
    assert missing.exit_code == 2 and "not in the model store" in missing.stderr


def test_models_import_calibrate_refuses_too_few_rows(tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {"MODEL_DIR": str(tmp_path / "models")}
    data = _labelled_tsv(tmp_path / "tiny.tsv", 10)
    result = CliRunner().invoke(main, ["models", "import", str(tiny_model_dir), "--calibrate", str(data)], env=env)
    assert result.exit_code == 2
    assert "--calibrate" in result.stderr and "at least 20 labelled rows" in result.stderr
    assert ModelStore(tmp_path / "models").list() == []
