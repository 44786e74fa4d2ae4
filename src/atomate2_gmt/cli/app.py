"""The ``atomate2-gmt`` command: assembles the command groups."""

from __future__ import annotations

import gc

import typer

from atomate2_gmt import __version__
from atomate2_gmt.cli import baselines as baselines_cli
from atomate2_gmt.cli import campaign as campaign_cli
from atomate2_gmt.cli import context as context_cli
from atomate2_gmt.cli import data as data_cli
from atomate2_gmt.cli import demo as demo_cli
from atomate2_gmt.cli import models as models_cli
from atomate2_gmt.cli import mongo as mongo_cli
from atomate2_gmt.cli import predict as predict_cli
from atomate2_gmt.cli import query as query_cli
from atomate2_gmt.cli import retrain as retrain_cli
from atomate2_gmt.cli import screen as screen_cli
from atomate2_gmt.cli import serve as serve_cli
from atomate2_gmt.cli import train as train_cli

app = typer.Typer(
    name="atomate2-gmt",
    help="GMTNet crystal-tensor screening: predict, screen, query, train.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # click's help: full option names at any width, paragraphs reflowed
)


@app.callback()
def settings_callback(
    ctx: typer.Context,
    project_dir: context_cli.ProjectDirOption = None,
) -> None:
    """GMTNet crystal-tensor screening: predict, screen, query, train."""
    ctx.obj = context_cli.CLIState(project_dir=project_dir)


@app.command()
def version() -> None:
    """Print the package version."""
    typer.echo(__version__)


app.add_typer(data_cli.app, name="data", help="Datasets: info, fetch the GMTNet JARVIS benchmark.")
app.command()(demo_cli.demo)
app.command()(predict_cli.predict)
app.command()(screen_cli.screen)
app.command()(screen_cli.show)
app.command()(screen_cli.report)
app.command()(train_cli.train)
app.command()(train_cli.evaluate)
app.command()(baselines_cli.baselines)
app.command()(retrain_cli.retrain)
app.command()(serve_cli.serve)


query_cli.register(app)
app.add_typer(models_cli.app, name="models", help="Model registry: list, show, promote, seed.")
app.add_typer(campaign_cli.app, name="campaign", help="Active-learning campaigns: simulate.")
app.add_typer(mongo_cli.app, name="mongo", help="Local MongoDB-compatible server, for trying.")


def main() -> None:
    """Console-script entry point."""
    from atomate2_gmt.known_warnings import ignore_known_warnings

    ignore_known_warnings()
    try:
        app()
    finally:
        # The interpreter's exit walks every object alive (modules, torch, the models) in its
        # last garbage collections: 0.8-1.7 s at the end of a screen (docs/benchmarks.md).
        # Frozen objects are left to the operating system, which frees the process anyway;
        # atexit handlers and the modules' own cleanup still run.
        gc.freeze()


if __name__ == "__main__":
    main()
