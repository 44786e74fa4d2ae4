"""Batched, device-aware inference for structures; one bad structure never fails a batch."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pymatgen.core import Structure

from atomate2_gmt.model.checkpoint import load_checkpoint
from atomate2_gmt.model.config import TASK_UNITS, check_task
from atomate2_gmt.model.gmtnet import GMTNet, PreparedCrystal, collate_crystals, prepare_crystal
from atomate2_gmt.tensors.conventions import full_to_voigt

logger = logging.getLogger(__name__)

ModelLike = GMTNet | str | Path | None


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """'auto'/None → CUDA if available else CPU; otherwise ``torch.device(device)``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_model(model: ModelLike, task: str) -> tuple[GMTNet, dict[str, Any]]:
    """A GMTNet, a checkpoint path, or None (the shipped pretrained model) → (model, metadata)."""
    if isinstance(model, GMTNet):
        if model.config.task != task:
            raise ValueError(f"model is for task {model.config.task!r}, not {task!r}")
        return model, {"name": f"gmtnet-{task}", "task": task, "checkpoint_sha256": None}
    if model is None:
        from atomate2_gmt.pretrained import pretrained_path

        model = pretrained_path(task)
    return load_checkpoint(model, task=task)


def _failed(error: str, task: str) -> dict[str, Any]:
    return {
        "state": "failed",
        "error": error,
        "tensor": None,
        "voigt": None,
        "task": task,
        "units": TASK_UNITS[task],
    }


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict(
    structures: Sequence[Structure],
    task: str,
    model: ModelLike = None,
    device: str | torch.device | None = None,
    batch_size: int = 64,
) -> list[dict[str, Any]]:
    """Predict the ``task`` tensor of every structure.

    Returns one dict per input, in order: ``state`` ("successful"/"failed"), ``error`` (reason or
    None), ``tensor`` (full Cartesian, nested lists, in the frame of the structure as given, in the
    task's units), ``voigt`` (standard order xx,yy,zz,yz,xz,xy, no factors of 2), plus ``task``,
    ``units``, ``point_group`` and ``crystal_system``. Bad structures (disordered, molecules, NaN
    coordinates, unknown elements, isolated atoms, ...) fail with their reason; the rest are
    predicted. ``model``: a GMTNet, a checkpoint path, or None for the shipped pretrained model.
    """
    check_task(task)
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    net, _meta = resolve_model(model, task)
    dev = resolve_device(device)
    net = net.to(dev).eval()
    config = net.config
    results: list[dict[str, Any] | None] = [None] * len(structures)
    prepared: list[tuple[int, PreparedCrystal]] = []
    for i, structure in enumerate(structures):
        try:
            prepared.append((i, prepare_crystal(structure, config)))
        except Exception as exc:  # one bad structure never sinks the batch
            results[i] = _failed(f"{type(exc).__name__}: {exc}", task)
    for chunk in _batches(prepared, batch_size):
        try:
            tensors = _forward(net, [c for _, c in chunk], dev)
        except Exception as exc:  # e.g. out of memory: isolate, one by one
            logger.warning("batch of %d failed (%s); retrying one by one", len(chunk), exc)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            tensors = []
            for _, crystal in chunk:
                try:
                    tensors.append(_forward(net, [crystal], dev)[0])
                except Exception as exc_one:
                    tensors.append(exc_one)
        for (i, crystal), tensor in zip(chunk, tensors, strict=True):
            if isinstance(tensor, Exception):
                results[i] = _failed(f"{type(tensor).__name__}: {tensor}", task)
                continue
            if not np.all(np.isfinite(tensor)):
                results[i] = _failed("prediction is not finite", task)
                continue
            results[i] = {
                "state": "successful",
                "error": None,
                "tensor": tensor.tolist(),
                "voigt": full_to_voigt(tensor, config.kind).tolist(),
                "task": task,
                "units": TASK_UNITS[task],
                "point_group": crystal.point_group,
                "crystal_system": crystal.crystal_system,
            }
    return [r for r in results if r is not None]


def _forward(net: GMTNet, crystals: Sequence[PreparedCrystal], device: torch.device) -> list[Any]:
    batch = collate_crystals(crystals, dtype=net.dtype).to(device, net.dtype)
    with torch.no_grad():
        out = net(batch).cpu().numpy()
    return list(out)


def timed_predict(
    structures: Sequence[Structure], task: str, **kwargs: Any
) -> tuple[list[dict[str, Any]], float]:
    """:func:`predict` and its wall time in seconds."""
    start = time.perf_counter()
    out = predict(structures, task, **kwargs)
    return out, time.perf_counter() - start
