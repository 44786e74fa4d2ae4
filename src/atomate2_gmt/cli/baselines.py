"""``atomate2-gmt baselines``: the four-model comparison on one task."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from atomate2_gmt.model.config import TASK_KIND


def baselines(
    task: str = typer.Option(..., help=f"one of {', '.join(TASK_KIND)}"),
    epochs: int = typer.Option(50, help="training epochs, the same for every model"),
    out: Path = typer.Option(Path("runs/baselines"), help="results go to OUT/<task>/"),
    data: str = typer.Option("mp", help="data source: 'mp' (shipped Materials Project tensors)"),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(1e-3, help="peak learning rate (AdamW, polynomial decay)"),
    seed: int = typer.Option(32, help="seed of the 80/10/10 split, shuffling and init"),
    device: str = typer.Option("cpu", help="'cpu', 'cuda', 'auto'"),
    max_abs_target: float | None = typer.Option(
        None, help="drop train/val records with a larger |component| (paper: 100 for ε); test kept"
    ),
    model: list[str] = typer.Option(
        [], "--model", help="subset: invariant, invariant_avg, gmtnet_nosym, gmtnet (repeatable)"
    ),
    limit: int | None = typer.Option(None, help="use only the first N records (quick looks)"),
    no_resume: bool = typer.Option(False, "--no-resume", help="start every model over"),
    center_targets: bool = typer.Option(
        False, "--center-targets", help="every model learns the residual from the training mean"
    ),
    model_option: list[str] = typer.Option(
        [], "--model-option", "-m", help="GMTNetConfig override KEY=VALUE for all four models"
    ),
    relative_loss: float = typer.Option(
        0.0, help="weight of the relative-error loss term, for all four models; 0 = off"
    ),
    select_on: str = typer.Option(
        "val_fnorm", help="what picks best.pt: val_fnorm, val_ewt25, val_median_rel or val_spearman"
    ),
    curate: bool = typer.Option(
        False,
        "--curate",
        help="leave implausible records (data.curation) out of train/val; test reported raw "
        "and curated",
    ),
    init_from: Path | None = typer.Option(
        None,
        "--init-from",
        help="start every model from this checkpoint's weights (any task) where names and "
        "shapes agree",
    ),
) -> None:
    """Train (a) invariant, (b) + group averaging, (c) GMTNet w/o symmetry, (d) GMTNet; compare.

    Same split, epochs, batch and learning rate for all; each model resumable in its own
    sub-folder; writes comparison.json and comparison.md into OUT/<task>/.
    """
    from atomate2_gmt.cli.train import parse_model_options
    from atomate2_gmt.training.baselines import MODEL_SPECS, compare_models

    out_dir = out / task
    comparison = compare_models(
        task,
        out_dir,
        epochs,
        data=data,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        max_abs_target=max_abs_target,
        models=tuple(model) or tuple(MODEL_SPECS),
        limit=limit,
        model_overrides=parse_model_options(model_option),
        center_targets=center_targets,
        relative_loss_weight=relative_loss,
        select_on=select_on,
        curate=curate,
        init_from=init_from,
        resume=not no_resume,
        progress=True,
        command="atomate2-gmt " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    for r in comparison["models"].values():
        m = r["overall"]
        typer.echo(
            f"{r['label']}: Fnorm {m['fnorm']:.3f}, EwT25 {m['ewt25']:.1%}, "
            f"Spearman {m['spearman_norm']:.3f}, top-10 % recall {m['top10_recall']:.0%}, "
            f"zero {m['zero_success']:.0%}, equality {m['equality_success']:.0%}"
        )
    typer.echo(f"table in {out_dir / 'comparison.md'}")
