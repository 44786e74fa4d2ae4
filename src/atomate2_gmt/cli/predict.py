"""``atomate2-gmt predict FILES... --task T [--model PATH] [--json OUT]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from atomate2_gmt.model.config import TASK_KIND


def read_structures(files: list[Path]) -> list[tuple[str, Any]]:
    """(name, Structure or the exception that stopped reading it) for each input: one per
    structure file (its path), one per record of a collection file (the record's id or
    ``<file>#<index>``; :mod:`atomate2_gmt.sources`). The inputs go through the screening's
    reader and structure check (:func:`atomate2_gmt.candidates.candidates_from_files`)."""
    from atomate2_gmt.candidates import candidates_from_files

    out: list[tuple[str, Any]] = []
    for f in files:
        for cand in candidates_from_files([f]):
            name = str(f) if cand.source == f.name else cand.source
            if cand.structure is not None and cand.error is None:
                out.append((name, cand.structure))
            else:
                out.append((name, ValueError(f"cannot read {cand.source}: {cand.error}")))
    return out


def check_device(device: str) -> str:
    """``device`` if torch can use it on this machine (``auto``, ``cpu``, ``cuda``, ``cuda:N``,
    ``mps``); ``ValueError`` saying why not otherwise."""
    import torch

    from atomate2_gmt.model.predict import resolve_device

    valid = "use auto, cpu, cuda, cuda:N or mps"
    try:
        dev = resolve_device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; {valid}") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            built = "" if torch.version.cuda else ", this torch is built without CUDA"
            raise ValueError(f"device {device!r}: no CUDA device is available here{built}")
        if dev.index is not None and dev.index >= n:
            raise ValueError(
                f"device {device!r}: this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r}: MPS is not available here")
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r} is not supported; {valid}")
    return device


def predict(
    files: list[Path] = typer.Argument(..., help="structure files (CIF, POSCAR, JSON, ...)"),
    task: str = typer.Option(..., help=f"one of {', '.join(TASK_KIND)}"),
    model: Path | None = typer.Option(None, help="checkpoint; default: the shipped model"),
    json_out: Path | None = typer.Option(None, "--json", help="write all results here"),
    device: str = typer.Option("auto"),
    batch_size: int = typer.Option(64, min=1),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
) -> None:
    """Predict a tensor for each file; the frame is that of the structure the file gives.

    Exit status: 0 when every input was predicted; 1 when any input could not be read or
    predicted (each is listed with its reason; the others are printed and written); 2 for a
    bad option (task, model, device)."""
    from atomate2_gmt import progress
    from atomate2_gmt.model.config import check_task
    from atomate2_gmt.model.predict import predict as run_predict
    from atomate2_gmt.model.predict import resolve_model

    try:  # bad options are an Error line, not a traceback
        check_task(task)
        check_device(device)
        net, _ = resolve_model(model, task)  # loaded once for every batch
    except (ValueError, OSError) as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None
    read = read_structures(files)
    structures = [s for _, s in read if not isinstance(s, Exception)]
    predicted: list[dict[str, Any]] = []
    with (
        progress.reporting(quiet=quiet),
        progress.task(f"predicting {task}", len(structures), unit="structures") as bar,
    ):
        for start in range(0, len(structures), batch_size):
            chunk = structures[start : start + batch_size]
            predicted += run_predict(chunk, task, model=net, device=device, batch_size=batch_size)
            bar.advance(len(chunk))
    results = iter(predicted)
    rows: list[dict[str, Any]] = []
    for name, s in read:
        if isinstance(s, Exception):
            row: dict[str, Any] = {"state": "failed", "error": str(s), "tensor": None}
        else:
            row = dict(next(results))
            row["formula"] = s.composition.reduced_formula
        row["file"] = name
        rows.append(row)
    table = Table(title=f"GMTNet {task} predictions")
    for col in ("file", "formula", "point group", "state", "Voigt / error"):
        table.add_column(col, overflow="fold")
    for row in rows:
        if row["state"] == "successful":
            voigt = np.array2string(np.array(row["voigt"]), precision=3, suppress_small=True)
        else:
            voigt = row["error"]
        table.add_row(
            Path(row["file"]).name,
            row.get("formula", ""),
            row.get("point_group", ""),
            row["state"],
            voigt,
        )
    Console(width=140).print(table)
    if json_out:
        json_out.write_text(json.dumps(rows, indent=1))
        typer.echo(f"wrote {json_out}")
    failed = [row for row in rows if row["state"] != "successful"]
    if failed:  # exit status 1: the successful rows are printed (and written) above
        typer.echo(f"{len(failed)} of {len(rows)} inputs could not be predicted:", err=True)
        for row in failed:
            typer.echo(f"  {row['file']}: {row['error']}", err=True)
        raise typer.Exit(1)
