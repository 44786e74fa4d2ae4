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

from atomate2_gmt.data.records import TensorRecord, records_hash, split_by_source
from atomate2_gmt.model.checkpoint import load_checkpoint
from atomate2_gmt.model.config import GMTNetConfig, check_task
from atomate2_gmt.model.factory import GMTNET_ARCH, INVARIANT_ARCH, build_model
from atomate2_gmt.tensors.tasks import task_spec
from atomate2_gmt.training.evaluate import evaluate_prepared, rotated_records
from atomate2_gmt.training.run import filter_max_abs, load_records
from atomate2_gmt.training.trainer import PreparedSet, TrainConfig, Trainer, prepare_records

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
) -> dict[str, Any]:
    """Train one model of the comparison into ``out`` (resumable) and evaluate its best.pt."""
    config = GMTNetConfig(task=task, **{**base_overrides, **spec.overrides})
    torch.manual_seed(cfg.seed)  # same initialisation seed for every model, whatever the order
    model = build_model(config, spec.arch)
    meta = {**metadata, "name": f"{spec.name}-{task}", "comparison_model": spec.name}
    meta["n_parameters"] = model.n_parameters()
    trainer = Trainer(model, sets["train"], sets["val"], out, cfg, meta)
    trainer.fit(resume=resume, progress=progress)
    best, _ = load_checkpoint(trainer.best_path, task=task)
    report = evaluate_prepared(best, sets["test"], batch_size=cfg.batch_size, device=cfg.device)
    rotated = evaluate_prepared(best, sets["test_rotated"], cfg.batch_size, cfg.device)
    report["rotated_test"] = rotated["overall"]
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
            "epochs_trained": trainer.epoch,
            "mean_epoch_s": mean_epoch_s,
            "train_time_per_batch_s": mean_epoch_s / max(1, trainer.steps_per_epoch),
            "train_time_total_s": sum(epoch_s),
        }
    )
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def _prepare_sets(
    task: str,
    data: str,
    limit: int | None,
    split: tuple[float, float, float],
    seed: int,
    max_abs_target: float | None,
    base_overrides: dict[str, Any],
) -> tuple[list[TensorRecord], dict[str, Any], dict[str, PreparedSet], dict[str, int]]:
    """The records of the comparison, split, filtered and prepared once for all four models.

    Returns the records, the data summary, the prepared ``train``/``val``/``test``/
    ``test_rotated`` sets and the number of records ``max_abs_target`` dropped per split.
    """
    records, data_info = load_records(task, data)
    if limit is not None:
        records = records[:limit]
    train, val, test = split_by_source(records, split, seed=seed)
    dropped: dict[str, int] = {}
    if max_abs_target is not None:
        train, dropped["train"] = filter_max_abs(train, max_abs_target)
        val, dropped["val"] = filter_max_abs(val, max_abs_target)
    # every model shares the graph/point-group settings, so one preparation serves all four
    base = GMTNetConfig(task=task, **base_overrides)
    sets = {
        n: prepare_records(r, base) for n, r in (("train", train), ("val", val), ("test", test))
    }
    # the same test crystals in random frames: what a frame-blind model cannot handle
    sets["test_rotated"] = prepare_records(rotated_records(test, seed), base)
    return records, data_info, sets, dropped


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
    resume: bool = True,
    progress: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """Train and test the four models on one split; write comparison.json/.md in ``out_dir``.

    ``limit`` keeps the first ``limit`` records (tests, quick looks); ``max_abs_target`` drops
    train/val records with a larger |component| (task units), never test records;
    ``model_overrides`` are GMTNetConfig fields applied to all four models; ``center_targets``
    makes every model learn the residual from the training mean tensor;
    ``relative_loss_weight`` adds the relative-error loss term to every model's loss. Returns the
    comparison dict (also written as JSON).
    """
    check_task(task)
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
    )
    base_overrides = dict(model_overrides or {})
    records, data_info, sets, dropped = _prepare_sets(
        task, data, limit, split, seed, max_abs_target, base_overrides
    )
    split_sizes = {k: len(v.records) for k, v in sets.items() if k != "test_rotated"}
    command = command or " ".join(shlex.quote(a) for a in sys.argv)
    split_info = {"fractions": list(split), "seed": seed, "sizes": split_sizes}
    metadata = _comparison_metadata(records, data_info, split_info, max_abs_target, cfg, command)
    results = {}
    for name in models:
        spec = MODEL_SPECS[name]
        logger.info("comparison %s: training %s", task, name)
        results[name] = _train_and_evaluate(
            spec, task, sets, out / name, cfg, base_overrides, metadata, resume, progress
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
        "machine": metadata["machine"],
        "command": command,
        "models": results,
    }
    (out / "comparison.json").write_text(json.dumps(comparison, indent=1))
    (out / "comparison.md").write_text(comparison_markdown(comparison))
    return comparison


def _metric_cells(m: dict[str, Any]) -> str:
    return (
        f"{m['fnorm']:.3f} | {m['ewt25']:.1%} | {m['ewt10']:.1%} | {m['ewt5']:.1%} | "
        f"{m['zero_success']:.1%} | {m['equality_success']:.1%}"
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
        f"(train/val only).",
        "",
        f"| model | params | Fnorm{units} | EwT25 | EwT10 | EwT5 | zero | equality | best epoch "
        f"| s/epoch | train s/batch | eval s/batch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in models.values():
        lines.append(
            f"| {r['label']} | {r['n_parameters']:,} | {_metric_cells(r['overall'])} | "
            f"{r['best_epoch']} | {r['mean_epoch_s']:.2f} | {r['train_time_per_batch_s']:.3f} | "
            f"{r['time_per_batch_s']:.3f} |"
        )
    header = f"| model | n | Fnorm{units} | EwT25 | EwT10 | EwT5 | zero | equality |"
    if any("nonzero_subset" in r for r in models.values()):
        lines += ["", "Non-zero tensors only:", "", header, "|---|---|---|---|---|---|---|---|"]
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
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in models.values():
        if "rotated_test" in r:
            m = r["rotated_test"]
            lines.append(f"| {r['label']} | {m['n']} | {_metric_cells(m)} |")
    systems = sorted({cs for r in models.values() for cs in r["per_crystal_system"]})
    lines += ["", "Per crystal system:", "", header.replace("| model |", "| system | model |")]
    lines.append("|---|---|---|---|---|---|---|---|---|")
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
