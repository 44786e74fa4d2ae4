"""``atomate2-gmt campaign simulate``: an active-learning campaign with DFT labels as the oracle."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from atomate2_gmt.active_learning.policies import STRATEGIES
from atomate2_gmt.model.config import TASK_KIND

if TYPE_CHECKING:
    from atomate2_gmt.active_learning.config import CampaignResult

app = typer.Typer(
    no_args_is_help=True, help="Active-learning campaigns (simulation).", rich_markup_mode=None
)


def format_table(summary: dict[str, Any]) -> str:
    """The found-top-K table (Markdown): one row per strategy, one column per oracle-call count,
    then the ratio to the random expectation and the held-out Fnorm after the last round."""
    calls = summary["oracle_calls"]
    head = "| strategy | " + " | ".join(str(c) for c in calls[1:]) + " | ×random | Fnorm |"
    rows = [head, "|---" * (len(calls) + 2) + "|"]
    exp = summary["random_expectation"]
    rows.append("| random, exact n·K/N | " + " | ".join(f"{e:.2f}" for e in exp[1:]) + " | 1 | |")
    for name, s in summary["strategies"].items():
        fn = s["heldout_fnorm_mean"]
        ratio = s["ratio_to_random"]
        ratio_s = "" if ratio is None else f"{ratio:.2f}"
        fn_s = "" if fn is None else f"{fn[-1]:.3f}"
        found = " | ".join(f"{v:.1f}" for v in s["found_mean"][1:])
        rows.append(f"| {name} | {found} | {ratio_s} | {fn_s} |")
    return "\n".join(rows)


@app.command()
def simulate(
    task: str = typer.Option("piezo", help=f"one of {', '.join(TASK_KIND)}"),
    rounds: int = typer.Option(5, help="rounds of select → reveal → fine-tune"),
    per_round: int = typer.Option(20, "--per-round", help="oracle calls per round"),
    seed_size: int = typer.Option(100, "--seed-size", help="labelled records at the start"),
    heldout_size: int = typer.Option(88, "--heldout-size", help="never selectable; Fnorm set"),
    top: int = typer.Option(50, help="K of the true top-K of the pool"),
    seed: int = typer.Option(0, help="split and model seed (replicate k uses seed + k)"),
    replicates: int = typer.Option(1, help="campaigns on different splits, averaged"),
    strategies: str = typer.Option(",".join(STRATEGIES), help="comma-separated subset"),
    ensemble: int = typer.Option(3, help="ucb ensemble members"),
    kappa: float = typer.Option(1.0, help="ucb exploration weight"),
    max_per_chemsys: int = typer.Option(
        1, "--max-per-chemsys", help="SelectionPolicy cap: picks per chemical system and round"
    ),
    random_repeats: int = typer.Option(200, "--random-repeats", help="random draws averaged"),
    init_epochs: int = typer.Option(60, "--init-epochs"),
    finetune_epochs: int = typer.Option(20, "--finetune-epochs"),
    retrain: str = typer.Option(
        "finetune", help="after each round: 'finetune' the model or train it from 'scratch'"
    ),
    batch_size: int = typer.Option(32, "--batch-size"),
    relative_loss: float = typer.Option(
        0.0, "--relative-loss", help="weight of the relative-error loss term (0 = off)"
    ),
    pretrain_task: str | None = typer.Option(
        None,
        "--pretrain-task",
        help="transfer learning: first train this task on other materials, start models from it",
    ),
    pretrain_epochs: int = typer.Option(40, "--pretrain-epochs"),
    select_on: str = typer.Option(
        "val_fnorm",
        "--select-on",
        help="what picks each model's best epoch: val_fnorm, "
        "val_ewt25, val_median_rel or val_spearman",
    ),
    curate: bool = typer.Option(
        False, "--curate", help="leave the records data.curation names out (labels and pool)"
    ),
    model_overrides: str | None = typer.Option(
        None, "--model-overrides", help="GMTNetConfig fields as JSON (default: the small model)"
    ),
    limit: int | None = typer.Option(None, help="use only the first N records"),
    out: Path | None = typer.Option(None, help="write the summary + replicates as JSON"),
    plot: Path | None = typer.Option(None, help="write the found-top-K curves (PNG)"),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="no progress output and no per-round log lines"
    ),
) -> None:
    """Simulate an active-learning campaign: a seed set with labels, a pool whose labels the
    oracle (the known DFT tensors) reveals per pick; count the true top-K found per strategy.
    The picks are production's (SelectionPolicy on the documents' default sort field)."""
    from atomate2_gmt import progress
    from atomate2_gmt.active_learning.simulate import (
        SMALL_MODEL,
        CampaignConfig,
        run_replicates,
        summarize,
    )

    if not quiet:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        cfg = CampaignConfig(
            task=task, rounds=rounds, per_round=per_round, seed_size=seed_size,
            heldout_size=heldout_size, top=top, seed=seed,
            strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()),
            ensemble=ensemble, kappa=kappa, max_per_chemsys=max_per_chemsys,
            random_repeats=random_repeats,
            init_epochs=init_epochs, finetune_epochs=finetune_epochs, batch_size=batch_size,
            retrain=retrain, relative_loss=relative_loss,
            pretrain_task=pretrain_task, pretrain_epochs=pretrain_epochs,
            select_on=select_on, curate=curate,
            model_overrides=json.loads(model_overrides) if model_overrides else dict(SMALL_MODEL),
            limit=limit,
        )  # fmt: skip
        with progress.reporting(quiet=quiet):
            results = run_replicates(cfg, replicates)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    _report(summarize(results), results, task=task, top=top, out=out, plot=plot)


def _report(
    summary: dict[str, Any],
    results: list[CampaignResult],
    *,
    task: str,
    top: int,
    out: Path | None,
    plot: Path | None,
) -> None:
    """Print the found-top-K table and the target line; write the JSON and the plot if asked."""
    from atomate2_gmt.active_learning.plot import plot_campaign

    typer.echo(format_table(summary))
    t = summary["target"]
    met = ", ".join(t["met_by"]) or "no strategy"
    typer.echo(
        f"target ≥ {t['factor']:g}× random after {t['oracle_calls']} oracle calls "
        f"(≥ {t['needed']:.1f} of the top-{top}): met by {met}"
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"summary": summary, "replicates": [r.as_dict() for r in results]}
        out.write_text(json.dumps(payload, indent=1))
        typer.echo(f"wrote {out}")
    if plot is not None:
        typer.echo(f"wrote {plot_campaign(summary, plot, title=f'Simulated {task} campaign')}")
