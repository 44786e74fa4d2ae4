"""Train + evaluate one task end to end: data → split → train → best checkpoint → test report."""

from __future__ import annotations

import json
import logging
import platform
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from atomate2_gmt.data.mp import load_mp, load_mp_newer
from atomate2_gmt.data.records import TASKS, TensorRecord, records_hash, split_by_source
from atomate2_gmt.model.checkpoint import load_checkpoint
from atomate2_gmt.model.config import GMTNetConfig, check_task
from atomate2_gmt.model.gmtnet import GMTNet
from atomate2_gmt.training.data_sources import DATA_SOURCES
from atomate2_gmt.training.evaluate import (
    evaluate_prepared,
    per_source_metrics,
    rotated_records,
)
from atomate2_gmt.training.report import learning_curves_plot, report_markdown
from atomate2_gmt.training.trainer import TrainConfig, Trainer, prepare_records

if TYPE_CHECKING:
    from atomate2_gmt.model.tensor_model import TensorModel
    from atomate2_gmt.settings import GMTSettings
    from atomate2_gmt.training.trainer import PreparedSet

logger = logging.getLogger(__name__)

#: Per-task architecture defaults used for the shipped models (see docs/training.md).
TASK_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {task: {} for task in TASKS}


def shipped_data_source(task: str) -> str:
    """The data source of the shipped model of ``task``: every shipped MP source it has."""
    from atomate2_gmt.data.mp import MP_NEWER_SOURCES

    return "mp_all" if task in MP_NEWER_SOURCES else "mp"


def load_records(
    task: str, data: str = "mp", settings: GMTSettings | None = None
) -> tuple[list[TensorRecord], dict[str, Any]]:
    """Records of ``task`` from a named source, and a summary for the report. ``settings``
    (default: built from the environment) name the training store of ``store`` sources."""
    if data in ("mp", "mp_newer"):
        ds = load_mp(task) if data == "mp" else load_mp_newer(task)
        label = "mp_legacy (shipped" if data == "mp" else "mp_newer (further shipped"
        return ds.records, {
            "source": f"{label} Materials Project tensors)",
            "n_total": ds.n_total,
            "n_kept": ds.n_kept,
            "n_excluded_residual": ds.n_excluded,
            "residual_threshold": ds.threshold,
        }
    if data == "mp_all":  # both shipped MP sources; each is split on its own (split_by_source)
        legacy, legacy_info = load_records(task, "mp")
        newer, newer_info = load_records(task, "mp_newer")
        return legacy + newer, {"source": "mp_all", "mp": legacy_info, "mp_newer": newer_info}
    if data in ("store", "mp+store"):  # DFPT feedback: TrainingDocs in the training store
        from atomate2_gmt.data.store_source import records_from_store
        from atomate2_gmt.stores import training_store

        records, info = records_from_store(training_store(settings), task)
        if data == "store":
            return records, info
        mp_records, mp_info = load_records(task, "mp")
        return mp_records + records, {"source": "mp+store", "mp": mp_info, "store": info}
    raise ValueError(f"unknown data source {data!r} (available: {', '.join(DATA_SOURCES)})")


def filter_max_abs(records: list[TensorRecord], limit: float) -> tuple[list[TensorRecord], int]:
    """Records whose largest |component| is <= ``limit`` (task units), and how many were dropped."""
    kept = [r for r in records if float(np.abs(r.tensor).max()) <= limit]
    return kept, len(records) - len(kept)


@dataclass
class TrainingSplits:
    """The records of one training run and how they were split, filtered and curated."""

    records: list[TensorRecord]
    data_info: dict[str, Any]
    train: list[TensorRecord]
    val: list[TensorRecord]
    test: list[TensorRecord]
    dropped: dict[str, int]
    curation: dict[str, Any] | None


def split_records(
    task: str,
    data: str,
    settings: GMTSettings | None,
    split: tuple[float, float, float],
    split_seed: int,
    exclude_materials_of: str | None,
    max_abs_target: float | None,
    curate: bool,
    limit: int | None = None,
) -> TrainingSplits:
    """Load ``task``'s records (the first ``limit`` only, for quick looks), drop another task's
    held-out materials, split, filter train/val by ``max_abs_target`` and curate train/val."""
    records, data_info = load_records(task, data, settings)
    if limit is not None:
        records = records[:limit]
    if exclude_materials_of is not None:
        check_task(exclude_materials_of)
        other, _ = load_records(exclude_materials_of, data, settings)
        _, o_val, o_test = split_by_source(other, split, seed=split_seed)
        held = {r.id for r in [*o_val, *o_test]}
        n_before = len(records)
        records = [r for r in records if r.id not in held]
        data_info = {
            **data_info,
            "excluded_materials_of": exclude_materials_of,
            "n_excluded_materials": n_before - len(records),
        }
    train, val, test = split_by_source(records, split, seed=split_seed)
    dropped: dict[str, int] = {}
    if max_abs_target is not None:
        train, dropped["train"] = filter_max_abs(train, max_abs_target)
        val, dropped["val"] = filter_max_abs(val, max_abs_target)
    curation: dict[str, Any] | None = None
    if curate:
        from atomate2_gmt.data.curation import CURATION_RULES
        from atomate2_gmt.data.curation import curate as curate_records

        train, removed_train = curate_records(train)
        val, removed_val = curate_records(val)
        curation = {
            "rule": CURATION_RULES.get(task, "none for this task"),
            "removed": {"train": removed_train, "val": removed_val},
            "test_removed": curate_records(test)[1],
        }
    return TrainingSplits(records, data_info, train, val, test, dropped, curation)


def _build_model(
    task: str, model_overrides: dict[str, Any] | None, init_from: str | Path | None
) -> tuple[GMTNetConfig, GMTNet, dict[str, Any] | None]:
    """The model of ``task`` (task defaults, then overrides), warm-started from ``init_from``."""
    overrides = {**TASK_MODEL_DEFAULTS.get(task, {}), **(model_overrides or {})}
    config = GMTNetConfig(task=task, **overrides)
    model = GMTNet(config)
    transfer: dict[str, Any] | None = None
    if init_from is not None:
        from atomate2_gmt.training.transfer import load_state, transfer_weights

        moved = transfer_weights(model, load_state(init_from))
        logger.info("%s from %s", moved.summary(), init_from)
        transfer = {"from": str(init_from), "copied": len(moved.copied), "fraction": moved.fraction}
    return config, model, transfer


def _train_metadata(
    task: str,
    splits: TrainingSplits,
    split_info: dict[str, Any],
    max_abs_target: float | None,
    train_cfg: TrainConfig,
    command: str | None,
    model: GMTNet,
    transfer: dict[str, Any] | None,
) -> dict[str, Any]:
    """The checkpoint metadata of a training run (data, split, config, command, machine)."""
    return {
        "name": f"gmtnet-{task}",
        "version": "1",
        "data": splits.data_info,
        "training_data_hash": records_hash(splits.records),
        "split": split_info,
        "max_abs_target": max_abs_target,
        "dropped_by_max_abs_target": splits.dropped,
        "train_config": asdict(train_cfg),
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "machine": f"{platform.machine()} {platform.processor() or ''} "
        f"torch {torch.__version__} threads {torch.get_num_threads()}",
        "n_parameters": model.n_parameters(),
        "transfer": transfer,
        "curation": splits.curation,
    }


def curated_test_metrics(
    best: TensorModel, test: PreparedSet, splits: TrainingSplits, batch_size: int
) -> dict[str, Any]:
    """Overall test metrics of ``best`` on the test crystals the curation rule keeps."""
    removed = set((splits.curation or {}).get("test_removed", {}))
    kept = test.subset(lambda r: r.id not in removed)
    return evaluate_prepared(best, kept, batch_size=batch_size)["overall"]


def _test_report(
    task: str,
    best: TensorModel,
    sets: dict[str, PreparedSet],
    splits: TrainingSplits,
    config: GMTNetConfig,
    batch_size: int,
    split_seed: int,
    out: Path,
) -> dict[str, Any]:
    """Test metrics of ``best``: the test split, rotated, curated, textbook and per source."""
    report = evaluate_prepared(
        best, sets["test"], batch_size=batch_size, parity_png=str(out / "parity.png")
    )
    rotated = prepare_records(rotated_records(sets["test"].records, split_seed), config)
    report["rotated_test"] = evaluate_prepared(best, rotated, batch_size=batch_size)["overall"]
    if splits.curation is not None:
        report["curated_test"] = curated_test_metrics(best, sets["test"], splits, batch_size)
    if task == "piezo":  # the well-known piezoelectrics, wherever the split put them
        from atomate2_gmt.training.textbook import textbook_ratios

        where = {
            r.id: name
            for name, part in (("train", splits.train), ("val", splits.val))
            for r in part
        }
        where.update({r.id: "test" for r in splits.test})
        report["textbook"] = textbook_ratios(best, splits.records, where, batch_size)
    per_source = per_source_metrics(best, sets["test"], batch_size)
    if per_source:  # test figures per source (the split of each source is its own)
        report["per_source"] = per_source
    return report


def _run_fields(
    task: str,
    splits: TrainingSplits,
    sets: dict[str, PreparedSet],
    trainer: Trainer,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """The report fields that describe the run (data, split, model, timing, provenance)."""
    epoch_times = [row["epoch_s"] for row in trainer.history if "epoch_s" in row]
    return {
        "task": task,
        "model": "gmtnet",
        "data": splits.data_info,
        "split_sizes": metadata["split"]["sizes"],
        "max_abs_target": metadata["max_abs_target"],
        "dropped_by_max_abs_target": splits.dropped,
        "failed_records": {k: v.failed for k, v in sets.items() if v.failed},
        "n_parameters": metadata["n_parameters"],
        "best_epoch": trainer.best.get("epoch"),
        "epochs": trainer.cfg.epochs,
        "mean_epoch_s": sum(epoch_times) / max(1, len(epoch_times)),
        "machine": metadata["machine"],
        "command": metadata["command"],
        "training_data_hash": metadata["training_data_hash"],
        "transfer": metadata["transfer"],
        "curation": splits.curation,
    }


def train_task(
    task: str,
    out_dir: str | Path,
    data: str = "mp",
    train_cfg: TrainConfig | None = None,
    model_overrides: dict[str, Any] | None = None,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    resume: bool = True,
    progress: bool = True,
    command: str | None = None,
    max_abs_target: float | None = None,
    init_from: str | Path | None = None,
    exclude_materials_of: str | None = None,
    split_seed: int | None = None,
    curate: bool = False,
    settings: GMTSettings | None = None,
) -> dict[str, Any]:
    """Train GMTNet on ``task``; write best.pt, logs and test-set report.json into ``out_dir``.

    ``max_abs_target``: drop training and validation records whose largest |component| exceeds
    it (the paper's filter, e.g. 100 for dielectric); the test split is never filtered, so the
    test metrics stay comparable across runs.
    ``init_from``: a checkpoint (any task) whose weights start the model where names and shapes
    agree (:func:`~atomate2_gmt.training.transfer.transfer_weights`; transfer learning).
    ``exclude_materials_of``: remove, before splitting, the materials of that task's validation
    and test split (same seed and fractions), so a model pretrained here has seen nothing of the
    other task's evaluation materials.
    ``curate``: leave the records :func:`~atomate2_gmt.data.curation.curate` names out of the
    training and validation splits; the test report is then given on the raw test split
    (``overall``) and on the part the rule keeps (``curated_test``).
    ``split_seed``: the seed of the split (default ``train_cfg.seed``, which also seeds the
    initial weights and the batch order); members of an ensemble on one split differ only in
    ``train_cfg.seed``.
    ``settings``: the settings that name the training store of ``store`` data sources.
    """
    check_task(task)
    train_cfg = train_cfg or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(train_cfg.seed)
    split_seed = train_cfg.seed if split_seed is None else split_seed
    splits = split_records(
        task, data, settings, split, split_seed, exclude_materials_of, max_abs_target, curate
    )
    config, model, transfer = _build_model(task, model_overrides, init_from)
    sets = {
        name: prepare_records(recs, config)
        for name, recs in (("train", splits.train), ("val", splits.val), ("test", splits.test))
    }
    split_info: dict[str, Any] = {
        "fractions": list(split),
        "seed": split_seed,
        "init_seed": train_cfg.seed,
        "sizes": {k: len(v.records) for k, v in sets.items()},
    }
    metadata = _train_metadata(
        task, splits, split_info, max_abs_target, train_cfg, command, model, transfer
    )
    trainer = Trainer(model, sets["train"], sets["val"], out, train_cfg, metadata)
    trainer.fit(resume=resume, progress=progress)
    best, _meta = load_checkpoint(trainer.best_path, task=task)
    report = _test_report(task, best, sets, splits, config, train_cfg.batch_size, split_seed, out)
    report.update(_run_fields(task, splits, sets, trainer, metadata))
    if any(key.startswith("train_ewt") for row in trainer.history for key in row):
        learning_curves_plot(trainer.history, out / "learning_curves.png", f"GMTNet {task}")
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(report_markdown(report))
    return report
