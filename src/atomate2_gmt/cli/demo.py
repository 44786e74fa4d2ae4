"""``atomate2-gmt demo``: the main job with nothing to configure.

Generates substitution candidates on known prototypes (offline), screens them with the shipped
models into the embedded store (``PROJECT_DIR``, default ``./gmt_project``) through the
relaxation funnel (predict all, relax the best ``--relax-top`` per property with CHGNet, predict
them again; :mod:`atomate2_gmt.flows.funnel`), prints the top candidates per property, each with
its stability estimate, and writes a picture of the best piezo candidate's tensors.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from atomate2_gmt.cli.context import ProjectDirOption, cli_settings


def demo(
    n: int = typer.Option(300, help="number of substitution candidates to generate"),
    top: int = typer.Option(10, help="rows shown per property"),
    relax_top: int = typer.Option(
        5,
        min=0,
        help="documents per property relaxed with CHGNet and predicted again before the final "
        "ranking; every relaxed crystal is ranked for every property, so 5 per property fill "
        "the top-10 tables (0: no relaxation; generated crystals are then ranked unrelaxed)",
    ),
    seed: int = typer.Option(0),
    project_dir: ProjectDirOption = None,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Generate candidates, screen them with the shipped models into the embedded store, print
    the top candidates per property and write one tensor picture."""
    start = time.perf_counter()
    if not quiet:  # before the imports below (torch, pymatgen, matplotlib: seconds)
        typer.echo(f"atomate2-gmt demo: {n} substitution candidates, the shipped models", err=True)
    from atomate2_gmt import progress

    def lines() -> Any:  # a line at least every 2 s of a counted loop
        return progress.reporting(quiet=quiet, every_s=2.0)

    with lines(), progress.heartbeat("importing torch, pymatgen, atomate2"):
        from rich.console import Console

        from atomate2_gmt.cli.screen import print_screening, run_screening
        from atomate2_gmt.known_warnings import ignore_known_warnings
        from atomate2_gmt.pretrained import available
        from atomate2_gmt.substitution import generate_substitution_candidates

    ignore_known_warnings()  # jobflow's use of monty's deprecated cd; other warnings show
    settings = cli_settings(ctx, project_dir)
    console = Console(width=160)
    with lines():
        candidates = generate_substitution_candidates(n=n, seed=seed)
    console.print(
        f"generated {len(candidates)} charge-balanced substitution candidates "
        f"({time.perf_counter() - start:.1f} s); shipped models: {', '.join(available())}"
    )
    t0 = time.perf_counter()
    from atomate2_gmt.jobs.predict import DEFAULT_TASKS

    tasks = tuple(t for t in DEFAULT_TASKS if t in available())  # what is shipped
    with lines():
        output = run_screening(
            candidates, tasks=tasks, top=top, settings=settings, relax_top=relax_top
        )
    print_screening(output, time.perf_counter() - t0)
    with lines(), progress.heartbeat("drawing the tensor picture"):
        _picture(output, settings, console)
    console.print(
        f"done in {time.perf_counter() - start:.1f} s; query the store with e.g. "
        "`atomate2-gmt query --property piezo --top 20 --exclude-elements Pb,Cd`"
    )


def _picture(output: dict[str, Any], settings: Any, console: Any) -> None:
    """The tensor picture of the best piezo candidate (else the best of any property)."""
    from atomate2_gmt.plotting import plot_tensor_surfaces
    from atomate2_gmt.query import find_document
    from atomate2_gmt.stores import candidate_store

    best = next(iter(output["ranking"].get("piezo") or []), None)
    if best is None:
        best = next((rows[0] for rows in output["ranking"].values() if rows), None)
    if best is None:
        return
    store = candidate_store(settings)
    doc = find_document(store, best["prediction_id"])
    tensors = {
        task: pred["tensor"]
        for task, pred in doc["predictions"].items()
        if pred.get("state") == "successful"
    }
    if doc.get("born_stable") is not True:
        tensors.pop("elastic", None)  # no Young's modulus surface without a compliance
    picture = Path(settings.PROJECT_DIR).expanduser() / "figures" / "demo_top_piezo.png"
    plot_tensor_surfaces(tensors, picture, title=f"{doc['formula_pretty']} ({best['source']})")
    console.print(f"tensor picture of {doc['formula_pretty']}: {picture}")
