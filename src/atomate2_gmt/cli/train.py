"""``atomate2-gmt train`` and ``atomate2-gmt evaluate``."""

from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from atomate2_gmt.cli.context import cli_settings
from atomate2_gmt.model.config import TASK_KIND
from atomate2_gmt.training.data_sources import describe_data_sources

if TYPE_CHECKING:
    from atomate2_gmt.settings import GMTSettings


def _command() -> str:
    return "atomate2-gmt " + " ".join(shlex.quote(a) for a in sys.argv[1:])


# Over 80 lines because of its signature: one typer option per training setting (the
# docstring is the --help text, so the reason is stated here).
def train(
    task: str = typer.Option(..., help=f"one of {', '.join(TASK_KIND)}"),
    data: str = typer.Option("mp", help=f"data source; {describe_data_sources()}"),
    out: Path = typer.Option(Path("runs"), help="output folder (runs/<task> by default)"),
    epochs: int = typer.Option(200, help="training epochs"),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(1e-3, help="peak learning rate (AdamW, polynomial decay)"),
    seed: int = typer.Option(32, help="seed of the 80/10/10 split, shuffling and init"),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda', 'cuda:1'"),
    no_resume: bool = typer.Option(False, "--no-resume", help="start over even if state.pt exists"),
    max_abs_target: float | None = typer.Option(
        None, help="drop train/val records with a larger |component| (paper: 100 for ε); test kept"
    ),
    center_targets: bool = typer.Option(
        False,
        "--center-targets",
        help="learn the residual from the training-set mean tensor (symmetrised per crystal)",
    ),
    model_option: list[str] = typer.Option(
        [], "--model-option", "-m", help="GMTNetConfig override KEY=VALUE (JSON value), repeatable"
    ),
    relative_loss: float = typer.Option(
        0.0, help="weight of the relative-error loss term (|Δ|_F/|true|_F per crystal); 0 = off"
    ),
    log_magnitude_loss: float = typer.Option(
        0.0,
        help="weight of the log-magnitude loss term (log |pred|_F vs log |true|_F); 0 = off",
    ),
    scale_statistic: str = typer.Option(
        "rms", help="target scale: rms (all components) or median_norm (per-crystal norms)"
    ),
    select_on: str = typer.Option(
        "val_fnorm", help="what picks best.pt: val_fnorm, val_ewt25, val_median_rel or val_spearman"
    ),
    train_metrics: int = typer.Option(
        0, help="also log Fnorm/EwT/median |pred|/|true| on this many training crystals per epoch"
    ),
    init_from: Path | None = typer.Option(
        None,
        "--init-from",
        help="transfer learning: start from this checkpoint's weights (any task) where they fit",
    ),
    split_seed: int | None = typer.Option(
        None,
        "--split-seed",
        help="seed of the split only (default: --seed); ensemble members differ in --seed",
    ),
    exclude_materials_of: str | None = typer.Option(
        None,
        "--exclude-materials-of",
        help="leave out the materials of this task's validation and test split (for pretraining)",
    ),
    curate: bool = typer.Option(
        False,
        "--curate",
        help="leave implausible records (data.curation) out of train/val; test reported raw "
        "and curated",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Train GMTNet on one task; resumable; writes best.pt, log.csv/json and report.json."""
    from atomate2_gmt import progress
    from atomate2_gmt.training.run import train_task
    from atomate2_gmt.training.trainer import TrainConfig

    overrides = parse_model_options(model_option)
    out_dir = out / task if out == Path("runs") else out
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        center_targets=center_targets,
        relative_loss_weight=relative_loss,
        log_magnitude_loss_weight=log_magnitude_loss,
        scale_statistic=scale_statistic,
        select_on=select_on,
        train_metrics_size=train_metrics,
    )
    with progress.reporting(quiet=quiet):
        report = train_task(
            task,
            out_dir,
            data=data,
            train_cfg=cfg,
            model_overrides=overrides,
            resume=not no_resume,
            max_abs_target=max_abs_target,
            command=_command(),
            init_from=init_from,
            exclude_materials_of=exclude_materials_of,
            split_seed=split_seed,
            curate=curate,
            settings=_store_settings(ctx, data),
        )
    typer.echo(_summary_line(task, report["overall"], out_dir))


def _summary_line(task: str, overall: dict[str, Any], out_dir: Path) -> str:
    """One line of the test metrics of a finished training and where its report is."""
    return (
        f"{task}: test Fnorm {overall['fnorm']:.3f}, EwT25 {overall['ewt25']:.1%}, "
        f"zero {overall['zero_success']:.0%}, equality {overall['equality_success']:.0%} "
        f"(n={overall['n']}); report in {out_dir / 'report.json'}"
    )


def evaluate(
    checkpoint: Path = typer.Argument(..., help="checkpoint file (weights-only)"),
    data: str = typer.Option("mp", help=f"data source; {describe_data_sources()}"),
    split: str = typer.Option("test", help="train, val, test or all"),
    seed: int = typer.Option(32),
    json_out: Path | None = typer.Option(None, "--json", help="write the report here"),
    report_dir: Path | None = typer.Option(
        None, help="write report.json, report.md and parity.png into this folder"
    ),
    rotated: bool = typer.Option(
        False, "--rotated", help="also evaluate every record in a random frame (equivariance)"
    ),
    member: list[Path] = typer.Option(
        [],
        "--member",
        help="another checkpoint of the same task (repeatable): also evaluate the ensemble's "
        "mean and the coverage of its spread",
    ),
    spread_scale: float = typer.Option(
        1.0,
        "--spread-scale",
        help="with --member: multiply the ensemble's σ by this calibration factor (the report's "
        "calibrating_scale, fitted on another split) before its coverage is measured",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Evaluate a checkpoint on a split of a data source (the paper's metrics)."""
    from atomate2_gmt import progress
    from atomate2_gmt.data.records import split_by_source
    from atomate2_gmt.model.checkpoint import load_checkpoint
    from atomate2_gmt.training.evaluate import (
        evaluate_prepared,
        per_source_metrics,
        rotated_records,
    )
    from atomate2_gmt.training.run import load_records
    from atomate2_gmt.training.trainer import prepare_records

    if spread_scale != 1.0 and not member:
        raise typer.BadParameter("--spread-scale calibrates an ensemble: give --member too")
    if not (math.isfinite(spread_scale) and spread_scale > 0):
        raise typer.BadParameter(f"--spread-scale must be positive, got {spread_scale}")
    model, meta = load_checkpoint(checkpoint)
    records, _ = load_records(model.config.task, data, _store_settings(ctx, data))
    parts = dict(zip(("train", "val", "test"), split_by_source(records, seed=seed), strict=True))
    chosen = records if split == "all" else parts[split]
    parity = None
    if report_dir:
        report_dir.mkdir(parents=True, exist_ok=True)
        parity = str(report_dir / "parity.png")
    with progress.reporting(quiet=quiet):
        prepared = prepare_records(chosen, model.config)
        progress.phase(f"evaluating {len(prepared.records)} crystals")
        report = evaluate_prepared(model, prepared, parity_png=parity)
        per_source = per_source_metrics(model, prepared)
        if per_source:
            report["per_source"] = per_source
        if rotated:  # the same records, each in its own random frame (structure and tensor)
            turned = prepare_records(rotated_records(prepared.records, seed), model.config)
            report["rotated_test"] = evaluate_prepared(model, turned)["overall"]
        if model.config.task == "piezo":  # the well-known piezoelectrics, in whichever split
            from atomate2_gmt.training.textbook import textbook_ratios

            where = {r.id: name for name, part in parts.items() for r in part}
            report["textbook"] = textbook_ratios(model, records, where)
        if member:  # an ensemble: the mean tensor's metrics and the calibration of its spread
            from atomate2_gmt.training.evaluate import evaluate_ensemble

            others = [load_checkpoint(path, task=model.config.task)[0] for path in member]
            report["ensemble"] = evaluate_ensemble(
                [model, *others], prepared, spread_scale=spread_scale
            )
    report["checkpoint"] = {k: meta.get(k) for k in ("name", "version", "checkpoint_sha256")}
    report.update({"task": model.config.task, "split": split, "command": _command()})
    report.setdefault("epochs", (meta.get("train_config") or {}).get("epochs"))
    for key in ("split_sizes", "n_parameters", "best_epoch", "machine"):
        report.setdefault(key, meta.get(key, (meta.get("split") or {}).get("sizes")))
    text = json.dumps(report, indent=1)
    if report_dir:
        from atomate2_gmt.training.report import report_markdown

        (report_dir / "report.json").write_text(text)
        (report_dir / "report.md").write_text(report_markdown(report))
    if json_out:
        json_out.write_text(text)
    typer.echo(text)


def _store_settings(ctx: typer.Context | None, data: str) -> GMTSettings | None:
    """The invocation's settings when ``data`` reads the training store, else None."""
    return cli_settings(ctx) if "store" in data.split("+") else None


def parse_model_options(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings → GMTNetConfig overrides (VALUE parsed as JSON, else a string)."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"model option {item!r} is not KEY=VALUE")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides
