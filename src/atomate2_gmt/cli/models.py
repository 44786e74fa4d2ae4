"""``atomate2-gmt models``: list, show, register, promote and seed registry model versions.

The registry comes from :class:`~atomate2_gmt.settings.GMTSettings` (embedded in ``PROJECT_DIR``
unless MongoDB is configured). Mount with ``app.add_typer(models.app, name="models")``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from atomate2_gmt.cli.context import cli_settings

if TYPE_CHECKING:
    from atomate2_gmt.settings import GMTSettings

__all__ = ["app", "render_versions"]

app = typer.Typer(
    help="Model registry: list, show, register, promote, seed.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _registry(settings: GMTSettings) -> Any:
    from atomate2_gmt.registry import ModelRegistry

    return ModelRegistry(settings=settings).connect()


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def _metric_text(metrics: dict[str, Any]) -> str:
    parts = [
        f"{k}={v:.4g}"
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    return " ".join(parts[:4]) or "-"


def render_versions(docs: list[Any]) -> str:
    """The versions as a rich table (plain text)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(docs)} registered model version(s)")
    for column in ("version", "promoted", "model_id", "parent", "metrics", "created", "by"):
        table.add_column(column)
    for d in docs:
        table.add_row(
            d.version,
            "yes" if d.promoted else "",
            d.model_id,
            d.parent or "-",
            _metric_text(d.metrics),
            d.created_at.strftime("%Y-%m-%d %H:%M"),
            d.created_by.user or "-",
        )
    console = Console(width=160, file=io.StringIO())
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


@app.command("list")
def list_command(
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """List the registered model versions (oldest first)."""
    settings = cli_settings(ctx)
    try:
        docs = _registry(settings).list_versions(task)
    except Exception as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps([d.summary() for d in docs], indent=2))
    else:
        typer.echo(render_versions(docs))


@app.command("show")
def show_command(
    model: Annotated[str, typer.Argument(help="model_id or version (e.g. piezo-v2).")],
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Show everything recorded about one model version (JSON)."""
    settings = cli_settings(ctx)
    try:
        doc = _registry(settings).get(model)
    except Exception as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps(doc.model_dump(mode="json"), indent=2))


@app.command("register")
def register_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file (.pt).")],
    task: Annotated[str, typer.Option(help="Task of the checkpoint.")],
    metrics: Annotated[
        Path | None, typer.Option(help="JSON file of metrics on the held-out set.")
    ] = None,
    metrics_set: Annotated[str | None, typer.Option(help="Name of the held-out set.")] = None,
    parent: Annotated[str | None, typer.Option(help="Parent model_id or version.")] = None,
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Register a checkpoint as the next version of its task."""
    settings = cli_settings(ctx)
    try:
        values = json.loads(metrics.read_text()) if metrics is not None else {}
        doc = _registry(settings).register(
            checkpoint, task, values.get("overall", values), parent, metrics_set=metrics_set
        )
    except Exception as exc:
        raise _fail(exc) from None
    typer.echo(f"{doc.version}  {doc.model_id}  sha256 {doc.weights_sha256[:12]}")


@app.command("promote")
def promote_command(
    model: Annotated[str, typer.Argument(help="model_id or version to promote.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the history).")],
    compare_on: Annotated[
        str | None,
        typer.Option(help="Refuse unless at least as good as the promoted model on this metric."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Promote even if the policy refuses.")] = False,
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Promote a model version for its task (the previous one is demoted)."""
    settings = cli_settings(ctx)
    try:
        doc = _registry(settings).promote(model, reason, compare_on=compare_on, force=force)
    except Exception as exc:
        raise _fail(exc) from None
    typer.echo(f"promoted {doc.version} ({doc.model_id}) for {doc.task}: {reason}")


@app.command("seed")
def seed_command(ctx: typer.Context = None) -> None:  # type: ignore[assignment]
    """Register the shipped pretrained checkpoints as v1 and promote them (idempotent)."""
    from atomate2_gmt.registry import seed_from_pretrained

    settings = cli_settings(ctx)
    try:
        docs = seed_from_pretrained(_registry(settings))
    except Exception as exc:
        raise _fail(exc) from None
    typer.echo(render_versions(docs))
