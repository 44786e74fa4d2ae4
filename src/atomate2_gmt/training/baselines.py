"""The four-model comparison (the paper's Tables 4, 7, 11) in one harness.

(a) ``invariant``: invariant Comformer trunk + MLP on the independent Voigt components
    (MEGNET-like; :class:`~atomate2_gmt.model.baselines.InvariantTensorNet`);
(b) ``invariant_avg``: (a) with its output group-averaged over the point group (the same float64
    tensor-space projector as GMTNet's ``output_projection``);
(c) ``gmtnet_nosym``: GMTNet without the symmetry module — no Wigner-D projection of the crystal
    feature and no output projection (the structure correction is off in all four); the network
    stays O(3)-equivariant, so symmetry holds only as far as the input geometry and float32 allow;
(d) ``gmtnet``: GMTNet as shipped.

All four share one seeded split, one preparation of the structures (graph + point group), and the
trainer's loss, target scaling, AdamW, schedule, epochs, batch size and learning rate. Each model
trains in its own sub-folder with the trainer's resumable ``state.pt`` and best-on-validation
``best.pt``; re-running the same call resumes unfinished models and only re-evaluates the
finished ones. The result is ``comparison.json`` and ``comparison.md`` in ``out_dir``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from atomate2_gmt.data.records import TensorRecord, records_hash
from atomate2_gmt.model.checkpoint import load_checkpoint
from atomate2_gmt.model.config import GMTNetConfig, check_task
from atomate2_gmt.model.factory import GMTNET_ARCH, INVARIANT_ARCH, build_model
from atomate2_gmt.tensors.tasks import task_spec
from atomate2_gmt.training.evaluate import evaluate_prepared, rotated_records
from atomate2_gmt.training.run import TrainingSplits, curated_test_metrics, split_records
from atomate2_gmt.training.trainer import (
    SELECTION_METRICS,
    PreparedSet,
    TrainConfig,
    Trainer,
    prepare_records,
)
from atomate2_gmt.training.transfer import load_state, transfer_weights

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """One row of the comparison: architecture tag and GMTNetConfig overrides."""

    name: str
    label: str
    arch: str
    overrides: dict[str, Any] = field(default_factory=dict)


#: The four models of the comparison, in table order.
MODEL_SPECS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec(
            "invariant",
            "(a) invariant Voigt MLP (MEGNET-like)",
            INVARIANT_ARCH,
            {"feature_projection": False, "output_projection": False},
        ),
        ModelSpec(
            "invariant_avg",
            "(b) invariant + point-group averaging",
            INVARIANT_ARCH,
            {"feature_projection": False, "output_projection": True},
        ),
        ModelSpec(
            "gmtnet_nosym",
            "(c) GMTNet w/o symmetry module",
            GMTNET_ARCH,
            {"feature_projection": False, "output_projection": False},
        ),
        ModelSpec("gmtnet", "(d) GMTNet", GMTNET_ARCH, {}),
    )
}


def machine_description() -> str:
    """E.g. '2-core x86_64 CPU, torch 2.13.0+cpu, 1 thread' (the CUDA device when one is used)."""
    threads = torch.get_num_threads()
    text = (
        f"{os.cpu_count()}-core {platform.machine()} CPU, torch {torch.__version__}, "
        f"{threads} thread{'s' if threads != 1 else ''}"
    )
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def _train_and_evaluate(
    spec: ModelSpec,
    task: str,
    sets: dict[str, Any],
    out: Path,
    cfg: TrainConfig,
    base_overrides: dict[str, Any],
    metadata: dict[str, Any],
    resume: bool,
    progress: bool,
    init_state: dict[str, Any] | None,
    splits: TrainingSplits,
) -> dict[str, Any]:
    """Train one model of the comparison into ``out`` (resumable) and evaluate its best.pt."""
    config = GMTNetConfig(task=task, **{**base_overrides, **spec.overrides})
    torch.manual_seed(cfg.seed)  # same initialisation seed for every model, whatever the order
    model = build_model(config, spec.arch)
    transfer = None
    if init_state is not None:
        moved = transfer_weights(model, init_state)
        transfer = {"from": metadata["init_from"], "copied": len(moved.copied)}
        transfer["fraction"] = moved.fraction
    meta = {**metadata, "name": f"{spec.name}-{task}", "comparison_model": spec.name}
    meta.update({"n_parameters": model.n_parameters(), "transfer": transfer})
    if resume:
        _check_same_recipe(out, meta)
    trainer = Trainer(model, sets["train"], sets["val"], out, cfg, meta)
    trainer.fit(resume=resume, progress=progress)
    best, _ = load_checkpoint(trainer.best_path, task=task)
    report = evaluate_prepared(best, sets["test"], batch_size=cfg.batch_size, device=cfg.device)
    rotated = evaluate_prepared(best, sets["test_rotated"], cfg.batch_size, cfg.device)
    report["rotated_test"] = rotated["overall"]
    if splits.curation is not None:
        report["curated_test"] = curated_test_metrics(best, sets["test"], splits, cfg.batch_size)
    epoch_s = [row["epoch_s"] for row in trainer.history if "epoch_s" in row]
    mean_epoch_s = sum(epoch_s) / max(1, len(epoch_s))
    report.update(
        {
            "name": spec.name,
            "label": spec.label,
            "arch": spec.arch,
            "config_overrides": spec.overrides,
            "n_parameters": model.n_parameters(),
            "best_epoch": trainer.best.get("epoch"),
            "best_val_fnorm": trainer.best.get("val_fnorm"),
            "selected_on": cfg.select_on,
            "best_val_selection": trainer.best.get(cfg.select_on),
            "transfer": transfer,
            "epochs_trained": trainer.epoch,
            "mean_epoch_s": mean_epoch_s,
            "train_time_per_batch_s": mean_epoch_s / max(1, trainer.steps_per_epoch),
            "train_time_total_s": sum(epoch_s),
        }
    )
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def _check_same_recipe(out: Path, meta: dict[str, Any]) -> None:
    """Refuse to resume or re-evaluate a model in ``out`` trained with another curation or other
    initial weights than ``meta`` states (the selection criterion is checked by the trainer)."""
    best = out / "best.pt"
    if not best.is_file():
        return
    _, stored = load_checkpoint(best)
    if "curation" not in stored and "transfer" not in stored:  # written before they were kept
        logger.warning("%s does not record its curation and initial weights: not checked", best)
        return
    was = {
        "curation": bool(stored.get("curation")),
        "init_from": (stored.get("transfer") or {}).get("from"),
    }
    now = {"curation": bool(meta.get("curation")), "init_from": meta.get("init_from")}
    if was != now:
        raise ValueError(
            f"{out}: cannot resume, it was trained with {was}, this comparison asks for {now}; "
            "use another --out or --no-resume"
        )


def _prepare_sets(
    splits: TrainingSplits, task: str, seed: int, base_overrides: dict[str, Any]
) -> dict[str, PreparedSet]:
    """The ``train``/``val``/``test``/``test_rotated`` sets, prepared once for all four models."""
    # every model shares the graph/point-group settings, so one preparation serves all four
    base = GMTNetConfig(task=task, **base_overrides)
    named = (("train", splits.train), ("val", splits.val), ("test", splits.test))
    sets = {n: prepare_records(r, base) for n, r in named}
    # the same test crystals in random frames: what a frame-blind model cannot handle
    sets["test_rotated"] = prepare_records(rotated_records(splits.test, seed), base)
    return sets


def _comparison_metadata(
    records: list[TensorRecord],
    data_info: dict[str, Any],
    split_info: dict[str, Any],
    max_abs_target: float | None,
    cfg: TrainConfig,
    command: str,
) -> dict[str, Any]:
    """The checkpoint metadata every model of the comparison shares."""
    return {
        "version": "1",
        "data": data_info,
        "training_data_hash": records_hash(records),
        "split": split_info,
        "max_abs_target": max_abs_target,
        "train_config": asdict(cfg),
        "command": command,
        "machine": machine_description(),
    }


def compare_models(
    task: str,
    out_dir: str | Path,
    epochs: int,
    *,
    data: str = "mp",
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 32,
    device: str = "cpu",
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    max_abs_target: float | None = None,
    models: Sequence[str] = tuple(MODEL_SPECS),
    limit: int | None = None,
    model_overrides: dict[str, Any] | None = None,
    center_targets: bool = False,
    relative_loss_weight: float = 0.0,
    select_on: str = "val_fnorm",
    curate: bool = False,
    init_from: str | Path | None = None,
    resume: bool = True,
    progress: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """Train and test the four models on one split; write comparison.json/.md in ``out_dir``.

    ``limit`` keeps the first ``limit`` records (tests, quick looks); ``max_abs_target`` drops
    train/val records with a larger |component| (task units), never test records;
    ``model_overrides`` are GMTNetConfig fields applied to all four models; ``center_targets``
    makes every model learn the residual from the training mean tensor;
    ``relative_loss_weight`` adds the relative-error loss term to every model's loss;
    ``select_on`` is the trainer's checkpoint criterion (e.g. ``val_spearman``); ``curate`` leaves
    the records :func:`~atomate2_gmt.data.curation.curate` names out of train/val (the test split
    is reported raw, and curated under ``curated_test``); ``init_from`` starts every model from
    a checkpoint's weights where names and shapes agree (the fraction copied is reported per
    model). Returns the comparison dict (also written as JSON).
    """
    check_task(task)
    if select_on not in SELECTION_METRICS:  # before any record is loaded
        valid = ", ".join(SELECTION_METRICS)
        raise ValueError(f"select_on must be one of {valid}, got {select_on!r}")
    unknown = [m for m in models if m not in MODEL_SPECS]
    if unknown:
        raise ValueError(f"unknown models {unknown}; known: {', '.join(MODEL_SPECS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        center_targets=center_targets,
        relative_loss_weight=relative_loss_weight,
        select_on=select_on,
    )
    base_overrides = dict(model_overrides or {})
    splits = split_records(task, data, None, split, seed, None, max_abs_target, curate, limit=limit)
    records, data_info, dropped = splits.records, splits.data_info, splits.dropped
    sets = _prepare_sets(splits, task, seed, base_overrides)
    init_state = load_state(init_from) if init_from is not None else None
    split_sizes = {k: len(v.records) for k, v in sets.items() if k != "test_rotated"}
    command = command or " ".join(shlex.quote(a) for a in sys.argv)
    split_info = {"fractions": list(split), "seed": seed, "sizes": split_sizes}
    metadata = _comparison_metadata(records, data_info, split_info, max_abs_target, cfg, command)
    metadata["curation"] = splits.curation
    metadata["init_from"] = None if init_from is None else str(init_from)
    results = {}
    for name in models:
        spec = MODEL_SPECS[name]
        logger.info("comparison %s: training %s", task, name)
        results[name] = _train_and_evaluate(
            spec,
            task,
            sets,
            out / name,
            cfg,
            base_overrides,
            metadata,
            resume,
            progress,
            init_state,
            splits,
        )
    comparison = {
        "task": task,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "split_sizes": split_sizes,
        "limit": limit,
        "max_abs_target": max_abs_target,
        "dropped_by_max_abs_target": dropped,
        "failed_records": {k: v.failed for k, v in sets.items() if v.failed},
        "data": data_info,
        "model_overrides": base_overrides,
        "center_targets": center_targets,
        "relative_loss_weight": relative_loss_weight,
        "select_on": select_on,
        "curation": splits.curation,
        "init_from": None if init_from is None else str(init_from),
        "machine": metadata["machine"],
        "command": command,
        "models": results,
    }
    (out / "comparison.json").write_text(json.dumps(comparison, indent=1))
    (out / "comparison.md").write_text(comparison_markdown(comparison))
    return comparison


def _ranking_cells(m: dict[str, Any]) -> str:
    """Spearman of |T|_F and top-10 % recall ('–' where a comparison predates them)."""
    rho, recall = m.get("spearman_norm"), m.get("top10_recall")
    return f"{'–' if rho is None else f'{rho:.3f}'} | {'–' if recall is None else f'{recall:.1%}'}"


def _metric_cells(m: dict[str, Any]) -> str:
    return (
        f"{m['fnorm']:.3f} | {m['ewt25']:.1%} | {m['ewt10']:.1%} | {m['ewt5']:.1%} | "
        f"{_ranking_cells(m)} | {m['zero_success']:.1%} | {m['equality_success']:.1%}"
    )


def comparison_markdown(comparison: dict[str, Any]) -> str:
    """The four-model table (overall, piezo non-zero subset, per crystal system) as Markdown."""
    task = comparison["task"]
    units = task_spec(task).unit_suffix
    models = comparison["models"]
    lines = [
        f"# Baselines: {task}, test split",
        "",
        f"Split sizes (train/val/test): {comparison['split_sizes']}; epochs {comparison['epochs']} "
        f"for every model, batch {comparison['batch_size']}, peak lr {comparison['lr']}, "
        f"seed {comparison['seed']}; max_abs_target {comparison['max_abs_target']} "
        f"(train/val only); checkpoint chosen on {comparison.get('select_on', 'val_fnorm')}; "
        f"curation {'on' if comparison.get('curation') else 'off'}; "
        f"initial weights {comparison.get('init_from') or 'random'}.",
        "",
        f"| model | params | Fnorm{units} | EwT25 | EwT10 | EwT5 | Spearman | top-10 % recall "
        f"| zero | equality | best epoch | s/epoch | train s/batch | eval s/batch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in models.values():
        lines.append(
            f"| {r['label']} | {r['n_parameters']:,} | {_metric_cells(r['overall'])} | "
            f"{r['best_epoch']} | {r['mean_epoch_s']:.2f} | {r['train_time_per_batch_s']:.3f} | "
            f"{r['time_per_batch_s']:.3f} |"
        )
    header = (
        f"| model | n | Fnorm{units} | EwT25 | EwT10 | EwT5 | Spearman | top-10 % recall "
        "| zero | equality |"
    )
    rule = "|---|---|---|---|---|---|---|---|---|---|"
    if any("nonzero_subset" in r for r in models.values()):
        lines += ["", "Non-zero tensors only:", "", header, rule]
        for r in models.values():
            if "nonzero_subset" in r:
                m = r["nonzero_subset"]
                lines.append(f"| {r['label']} | {m['n']} | {_metric_cells(m)} |")
    lines += [
        "",
        "The same test crystals, each rotated by its own random rotation (targets rotated with "
        "them):",
        "",
        header,
        rule,
    ]
    for r in models.values():
        if "rotated_test" in r:
            m = r["rotated_test"]
            lines.append(f"| {r['label']} | {m['n']} | {_metric_cells(m)} |")
    curated = [r for r in models.values() if "curated_test" in r]
    if curated:
        lines += ["", "The test crystals the curation rule keeps:", "", header, rule]
        for r in curated:
            m = r["curated_test"]
            lines.append(f"| {r['label']} | {m['n']} | {_metric_cells(m)} |")
    systems = sorted({cs for r in models.values() for cs in r["per_crystal_system"]})
    lines += ["", "Per crystal system:", "", header.replace("| model |", "| system | model |")]
    lines.append(rule + "---|")
    for cs in systems:
        for r in models.values():
            if cs in r["per_crystal_system"]:
                m = r["per_crystal_system"][cs]
                lines.append(f"| {cs} | {r['label']} | {m['n']} | {_metric_cells(m)} |")
    lines += [
        "",
        f"Machine: {comparison['machine']}. Command: `{comparison['command']}`",
    ]
    return "\n".join(lines) + "\n"
