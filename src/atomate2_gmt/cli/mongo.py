"""``atomate2-gmt mongo start|status|stop``: a local MongoDB-compatible server for trying the
MongoDB stores (SecantusDB, see :mod:`atomate2_gmt.mongo_local`); production uses MongoDB."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from atomate2_gmt.cli.context import ProjectDirOption, cli_settings
from atomate2_gmt.mongo_local import DEFAULT_PORT

app = typer.Typer(
    help="A local MongoDB-compatible server (for trying and tests): start, status, stop.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

NOT_RUNNING_EXIT = 3
"""Exit code of ``status`` when no server runs (as ``systemctl status``)."""


def _project_dir(ctx: typer.Context, project_dir: Path | None) -> Path:
    return Path(cli_settings(ctx, project_dir).PROJECT_DIR).expanduser()


@app.command()
def start(
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Port on 127.0.0.1.")
    ] = DEFAULT_PORT,
    project_dir: ProjectDirOption = None,
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Start a local server on 127.0.0.1 with its data in PROJECT_DIR/mongo and print the
    ATOMATE2_GMT_MONGO_URI to use. For trying and tests: no authentication; production uses a
    real MongoDB server."""
    from atomate2_gmt.mongo_local import LocalMongoError, start_server

    try:
        info = start_server(_project_dir(ctx, project_dir), port=port)
    except LocalMongoError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"local MongoDB server (SecantusDB) started: {info.uri} (pid {info.pid})")
    typer.echo(f"data: {info.storage}")
    typer.echo("use it for every store of this shell with:")
    typer.echo(f"  export ATOMATE2_GMT_MONGO_URI={info.uri}")
    typer.echo("stop it with: atomate2-gmt mongo stop")
    typer.echo("for trying and tests only (no authentication); production uses a real MongoDB")


@app.command("status")
def status_command(
    project_dir: ProjectDirOption = None,
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Say whether the local server runs (exit code 0) or not (exit code 3), and its URI."""
    from atomate2_gmt.mongo_local import server_dir, status

    folder = _project_dir(ctx, project_dir)
    info = status(folder)
    if info is None:
        typer.echo(f"stopped: no local MongoDB server for {server_dir(folder).parent}")
        raise typer.Exit(NOT_RUNNING_EXIT)
    if not info.running:
        typer.echo(
            f"stopped: the local server recorded at {info.uri} (pid {info.pid}) does not run "
            "(start it again with `atomate2-gmt mongo start`)"
        )
        raise typer.Exit(NOT_RUNNING_EXIT)
    typer.echo(f"running: {info.uri} (pid {info.pid}, since {info.started}, data {info.storage})")
    typer.echo(f"  export ATOMATE2_GMT_MONGO_URI={info.uri}")


@app.command()
def stop(
    project_dir: ProjectDirOption = None,
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Stop the local server (its data stay in PROJECT_DIR/mongo/data)."""
    from atomate2_gmt.mongo_local import LocalMongoError, stop_server

    try:
        info = stop_server(_project_dir(ctx, project_dir))
    except LocalMongoError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"stopped the local MongoDB server at {info.uri} (pid {info.pid}); data kept in "
               f"{info.storage}")  # fmt: skip
