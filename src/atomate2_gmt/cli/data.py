"""``atomate2-gmt data``: fetch the GMTNet JARVIS benchmark, describe the datasets."""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Annotated

import typer

from atomate2_gmt.tensors.tasks import TASK_SPECS, TASKS

app = typer.Typer(
    help="Datasets: the shipped Materials Project tensors and the GMTNet JARVIS benchmark.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

FETCHABLE = ("gmtnet-jarvis",)
SOURCES = ("mp", "gmtnet-jarvis")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


@app.command()
def fetch(
    dataset: Annotated[str, typer.Argument(help="Dataset to download: gmtnet-jarvis.")],
    dest: Annotated[
        Path | None,
        typer.Option(help="Target folder (default: $ATOMATE2_GMT_DATA_DIR/gmtnet_jarvis)."),
    ] = None,
    url_base: Annotated[
        str | None,
        typer.Option(
            help="Folder URL the file names are appended to (default: the GMTNet authors' "
            "release, atomate2_gmt.data.jarvis.DEFAULT_URL_BASE)."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Download even if a verified copy exists.")] = (
        False
    ),
) -> None:
    """Download a dataset and verify its published hashes (nothing is unpickled)."""
    from atomate2_gmt.data.jarvis import (
        DEFAULT_URL_BASE,
        GMTNET_JARVIS_FILES,
        default_jarvis_dir,
        fetch_gmtnet_jarvis,
    )

    if dataset not in FETCHABLE:
        raise _fail(f"unknown dataset {dataset!r}; fetchable: {', '.join(FETCHABLE)}")
    target = dest if dest is not None else default_jarvis_dir()
    try:
        paths = fetch_gmtnet_jarvis(target, url_base or DEFAULT_URL_BASE, overwrite=overwrite)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise _fail(f"download failed: {exc}") from None
    for name, path in paths.items():
        hashes = GMTNET_JARVIS_FILES[name]
        checked = "git blob + sha256" if hashes.sha256 else "git blob"
        typer.echo(f"{name}: verified ({checked}) -> {path}")


def _mp_info(tasks: list[str]) -> None:
    from atomate2_gmt.data.mp import MP_SOURCES, load_mp
    from atomate2_gmt.data.records import records_hash

    typer.echo("Materials Project (shipped; CC BY 4.0; see data/datasets/README.md)")
    header = f"{'task':<17}{'field':<22}{'units':<14}{'shipped':>8}{'kept':>6}{'excl.':>6}"
    typer.echo(header + "  threshold  records hash (kept)")
    for task in tasks:
        ds = load_mp(task)
        typer.echo(
            f"{task:<17}{MP_SOURCES[task].field:<22}{TASK_SPECS[task].units:<14}{ds.n_total:>8}"
            f"{ds.n_kept:>6}{ds.n_excluded:>6}  {ds.threshold:<9.0e}  "
            f"{records_hash(ds.records)[:16]}"
        )


def _jarvis_info(tasks: list[str], folder: Path) -> None:
    from atomate2_gmt.data.jarvis import (
        GMTNET_JARVIS_FILES,
        JARVIS_TASK_FILES,
        load_gmtnet_jarvis,
        verify_file_bytes,
    )

    typer.echo(f"GMTNet JARVIS benchmark in {folder}")
    present: dict[str, bool] = {}
    for name, hashes in GMTNET_JARVIS_FILES.items():
        path = folder / name
        if not path.is_file():
            typer.echo(f"  {name}: not fetched (run `atomate2-gmt data fetch gmtnet-jarvis`)")
            present[name] = False
            continue
        try:
            verify_file_bytes(
                path.read_bytes(), name, sha256=hashes.sha256, git_blob=hashes.git_blob
            )
        except ValueError as exc:
            typer.echo(f"  {name}: FAILED verification: {exc}")
            present[name] = False
            continue
        typer.echo(f"  {name}: verified")
        present[name] = True
    for task in tasks:
        if task not in JARVIS_TASK_FILES or not present[JARVIS_TASK_FILES[task]]:
            continue
        splits = load_gmtnet_jarvis(folder, task)
        typer.echo(
            f"  {task:<11} entries {splits.n_total:>6}  kept {splits.n_kept:>6}  "
            f"excluded {splits.n_excluded:>6}  train/val/test {len(splits.train)}/"
            f"{len(splits.val)}/{len(splits.test)}"
        )


@app.command()
def info(
    task: Annotated[str | None, typer.Argument(help="One task (default: all).")] = None,
    source: Annotated[str, typer.Option(help="mp or gmtnet-jarvis.")] = "mp",
    path: Annotated[
        Path | None, typer.Option(help="Folder of the fetched JARVIS benchmark.")
    ] = None,
) -> None:
    """Counts after the filters, units and fields of a dataset."""
    if task is not None and task not in TASKS:
        raise _fail(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if source not in SOURCES:
        raise _fail(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    from atomate2_gmt.data.jarvis import JARVIS_TASK_FILES, default_jarvis_dir

    tasks = [task] if task is not None else list(TASKS)
    if source == "mp":
        _mp_info(tasks)
        return
    if task is not None and task not in JARVIS_TASK_FILES:
        raise _fail(
            f"task {task!r} is not in the GMTNet JARVIS benchmark; it has "
            f"{', '.join(JARVIS_TASK_FILES)}"
        )
    try:
        _jarvis_info(tasks, path if path is not None else default_jarvis_dir())
    except ValueError as exc:
        raise _fail(str(exc)) from None
