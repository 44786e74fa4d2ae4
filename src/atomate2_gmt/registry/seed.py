"""Seed the registry with the shipped pretrained checkpoints (v1 of each task, promoted)."""

from __future__ import annotations

import json
from typing import Any

from atomate2_gmt.registry.registry import ModelRegistry
from atomate2_gmt.registry.schema import CreatedBy, ModelVersionDoc

__all__ = ["SEED_REASON", "seed_from_pretrained"]

SEED_REASON = "seeded from the shipped pretrained checkpoint"


def _shipped_metadata(task: str) -> dict[str, Any]:
    from atomate2_gmt.pretrained import pretrained_path

    sidecar = pretrained_path(task).with_suffix(".json")
    return json.loads(sidecar.read_text()) if sidecar.is_file() else {}


def seed_from_pretrained(
    registry: ModelRegistry | None = None, tasks: list[str] | None = None
) -> list[ModelVersionDoc]:
    """Register each shipped ``pretrained/gmtnet_<task>.pt`` and promote it if nothing is.

    Idempotent: the shipped weights are registered once (a re-run returns the same documents),
    and a task that already has a promoted model keeps it. Metrics are the shipped test-split
    metrics (``overall``), named as the fixed held-out set when they were measured on it
    (:func:`~atomate2_gmt.training.heldout.shipped_metrics_set`); the training-data hash and size
    come from the sidecar JSON.
    """
    from atomate2_gmt.pretrained import available, pretrained_path
    from atomate2_gmt.training.heldout import shipped_metrics_set

    registry = registry or ModelRegistry()
    shipped = available()
    wanted = shipped if tasks is None else list(tasks)
    missing = sorted(set(wanted) - set(shipped))
    if missing:
        raise ValueError(
            f"no shipped pretrained checkpoint for {missing}; shipped: {', '.join(shipped)}"
        )
    out = []
    for task in wanted:
        info = _shipped_metadata(task)
        split = info.get("split_sizes") or {}
        doc = registry.register(
            pretrained_path(task),
            task,
            metrics=info.get("overall") or {},
            created_by=CreatedBy.current(command=info.get("command") or "seed_from_pretrained"),
            metrics_set=shipped_metrics_set(task, info),
            training_data_hash=info.get("training_data_hash"),
            training_data_size=split.get("train"),
            notes=info.get("status"),
        )
        if registry.promoted(task) is None:
            doc = registry.promote(doc.model_id, SEED_REASON)
        out.append(doc)
    return out
