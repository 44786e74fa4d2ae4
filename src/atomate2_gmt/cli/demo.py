"""``atomate2-gmt demo``: rank generated candidates with the shipped models (no configuration)."""

from __future__ import annotations

import time

import typer
from pymatgen.core import Structure
from rich.console import Console
from rich.table import Table


def demo(
    n: int = typer.Option(300, help="number of substitution candidates to generate"),
    top: int = typer.Option(10, help="rows shown per property"),
    seed: int = typer.Option(0),
) -> None:
    """Generate candidates by substitution on known prototypes; rank them with the shipped models.

    Not yet stored: the store-backed screening flow (`atomate2-gmt screen`) is the next step.
    """
    from atomate2_gmt.candidates import generate_substitution_candidates
    from atomate2_gmt.model.predict import predict
    from atomate2_gmt.pretrained import available
    from atomate2_gmt.tensors.properties import dielectric_eigenvalues, piezo_max_eij

    console = Console(width=120)
    start = time.perf_counter()
    candidates = [c for c in generate_substitution_candidates(n=n, seed=seed) if c.structure]
    structures: list[Structure] = [c.structure for c in candidates if c.structure is not None]
    console.print(
        f"generated {len(candidates)} charge-balanced substitution candidates "
        f"({time.perf_counter() - start:.1f} s)"
    )
    shipped = available()
    console.print(
        f"shipped pretrained models: {', '.join(shipped)} "
        "(first-pass CPU trainings; metrics in src/atomate2_gmt/pretrained/*.json)"
    )
    scorers = {
        "dielectric": ("max eigenvalue of ε∞", lambda T: float(dielectric_eigenvalues(T).max())),
        "dielectric_total": (
            "max eigenvalue of ε0",
            lambda T: float(dielectric_eigenvalues(T).max()),
        ),
        "piezo": ("max |e_iJ| (C/m²)", lambda T: piezo_max_eij(T)[0]),
    }
    for task, (label, score) in scorers.items():
        if task not in shipped:
            continue
        t0 = time.perf_counter()
        results = predict(structures, task)
        dt = time.perf_counter() - t0
        ok = [
            (score(r["tensor"]), c, r)
            for c, r in zip(candidates, results, strict=True)
            if r["state"] == "successful"
        ]
        failed = len(results) - len(ok)
        ok.sort(key=lambda t: -t[0])
        table = Table(
            title=f"top {top} by {label} — {task}: {len(ok)} predicted, {failed} failed, "
            f"{len(results) / dt:.0f} structures/s"
        )
        for col in ("rank", "formula", "point group", label, "from prototype"):
            table.add_column(col)
        for rank, (value, cand, res) in enumerate(ok[:top], 1):
            proto = cand.provenance.get("prototype", "")
            table.add_row(
                str(rank),
                cand.structure.composition.reduced_formula if cand.structure else "?",
                res["point_group"],
                f"{value:.3f}",
                str(proto),
            )
        console.print(table)
    console.print(f"done in {time.perf_counter() - start:.1f} s")
