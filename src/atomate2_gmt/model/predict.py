"""Batched, device-aware inference for structures; one bad structure never fails a batch."""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pymatgen.core import Structure

from atomate2_gmt.model.batch import (
    PreparedCrystal,
    collate_crystals,
    crystal_for_kind,
    graph_key,
    prepare_structure,
)
from atomate2_gmt.model.checkpoint import load_checkpoint
from atomate2_gmt.model.config import TASK_UNITS, check_task
from atomate2_gmt.model.tensor_model import TensorModel
from atomate2_gmt.tensors.bounds import physical_bound_problem
from atomate2_gmt.tensors.conventions import full_to_voigt
from atomate2_gmt.tensors.symmetry import PointGroupInfo

logger = logging.getLogger(__name__)

ModelLike = TensorModel | str | Path | None


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """'auto'/None → CUDA if available else CPU; otherwise ``torch.device(device)``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_model(model: ModelLike, task: str) -> tuple[TensorModel, dict[str, Any]]:
    """A model (GMTNet or a baseline), a checkpoint path, or None (the shipped pretrained model)
    → (model, metadata)."""
    if isinstance(model, TensorModel):
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
    return predict_many(structures, {task: model}, device=device, batch_size=batch_size).results[
        task
    ]


@dataclass
class MultiTaskPrediction:
    """Output of :func:`predict_many`.

    ``results``: task → one result dict per structure (as :func:`predict` returns);
    ``point_groups``: per structure the :class:`PointGroupInfo` found while preparing it (None if
    it could not be prepared); ``timings``: seconds spent per task (model forward passes and the
    task's share of preparation) and in ``"prepare"`` (graphs and symmetry, shared by tasks).
    """

    results: dict[str, list[dict[str, Any]]]
    point_groups: list[PointGroupInfo | None]
    timings: dict[str, float] = field(default_factory=dict)


def predict_many(
    structures: Sequence[Structure],
    models: Mapping[str, ModelLike],
    device: str | torch.device | None = None,
    batch_size: int = 64,
    checked_sites: Sequence[int | None] | None = None,
    found_point_groups: Sequence[PointGroupInfo | None] | None = None,
) -> MultiTaskPrediction:
    """Predict several tasks for the same structures, building each graph and point group once.

    ``models``: task → a GMTNet, a checkpoint path or None (the shipped model). A key may carry
    a label after ``@`` (``"piezo@1"``, ``"piezo@2"``: members of an ensemble); results and
    timings are keyed like ``models``. Models whose graph settings agree (:func:`graph_key`)
    share one preparation of each structure, so three tasks cost one symmetry search and one
    neighbour list per structure. One bad structure never fails the batch: it gets a failed
    result (with its reason) for every task. ``checked_sites``: per structure, the
    ``max_sites`` with which it has passed :func:`~atomate2_gmt.model.graph.structure_problem`
    already (the engine's candidates), or None; a model whose ``max_sites`` is at least that
    does not check it again. ``found_point_groups``: per structure, its point group already found
    (``SymmetryAnalysis.point_group_of_dataset``), or None; a model whose ``symprec`` and
    ``angle_tolerance`` are those it was found at uses it instead of searching again.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not models:
        raise ValueError("models must name at least one task")
    for name, given, kind in (
        ("checked_sites", checked_sites, numbers.Integral),
        ("found_point_groups", found_point_groups, PointGroupInfo),
    ):
        if given is None:
            continue
        if len(given) != len(structures):
            raise ValueError(f"{name} must give one entry per structure")
        wrong = [type(g).__name__ for g in given if g is not None and not isinstance(g, kind)]
        if wrong:
            need = "integers" if kind is numbers.Integral else f"{kind.__name__}s"
            raise ValueError(f"{name} entries must be {need} or None, got a {wrong[0]}")
    nets: dict[str, TensorModel] = {}
    for name, model in models.items():
        nets[name], _meta = resolve_model(model, check_task(name.split("@", 1)[0]))
    dev = resolve_device(device)
    n = len(structures)
    timings: dict[str, float] = {"prepare": 0.0}
    shared: dict[tuple[object, ...], list[tuple[Any, PointGroupInfo] | Exception]] = {}
    for net in nets.values():
        key = graph_key(net.config)
        if key in shared:
            continue
        start = time.perf_counter()
        config = net.config
        checks = [None] * n if checked_sites is None else checked_sites
        checked = [c is not None and c <= config.max_sites for c in checks]
        tolerances = (config.symprec, config.angle_tolerance)
        found = [
            g if g is not None and (g.symprec, g.angle_tolerance) == tolerances else None
            for g in ([None] * n if found_point_groups is None else found_point_groups)
        ]
        prepared: list[tuple[Any, PointGroupInfo] | Exception] = []
        for structure, done, group in zip(structures, checked, found, strict=True):
            try:
                prepared.append(
                    prepare_structure(structure, config, checked=done, point_group=group)
                )
            except Exception as exc:  # one bad structure never sinks the batch
                prepared.append(exc)
        shared[key] = prepared
        timings["prepare"] += time.perf_counter() - start
    point_groups: list[PointGroupInfo | None] = [None] * n
    for prepared in shared.values():
        for i, item in enumerate(prepared):
            if point_groups[i] is None and not isinstance(item, Exception):
                point_groups[i] = item[1]
    results: dict[str, list[dict[str, Any]]] = {}
    for name, net in nets.items():
        task = name.split("@", 1)[0]
        start = time.perf_counter()
        if net.device != dev:  # (.to and .eval walk every module: ~1.5 ms a call)
            net = net.to(dev)
        if net.training:
            net.eval()
        crystals: list[tuple[int, PreparedCrystal]] = []
        out: list[dict[str, Any] | None] = [None] * n
        for i, item in enumerate(shared[graph_key(net.config)]):
            if isinstance(item, Exception):
                out[i] = _failed(f"{type(item).__name__}: {item}", task)
            else:
                crystals.append((i, crystal_for_kind(item[0], item[1], net.config.kind)))
        _predict_prepared(net, crystals, out, dev, batch_size, task)
        results[name] = [r for r in out if r is not None]
        timings[name] = time.perf_counter() - start
    return MultiTaskPrediction(results=results, point_groups=point_groups, timings=timings)


def _predict_prepared(
    net: TensorModel,
    prepared: list[tuple[int, PreparedCrystal]],
    results: list[dict[str, Any] | None],
    dev: torch.device,
    batch_size: int,
    task: str,
) -> None:
    """Fill ``results[i]`` for every prepared crystal, batch by batch (isolating failures)."""
    config = net.config
    pos, size = 0, batch_size
    while pos < len(prepared):
        chunk = prepared[pos : pos + size]
        try:
            tensors: list[Any] = _forward(net, [c for _, c in chunk], dev)
        except Exception as exc:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            if is_out_of_memory(exc) and size > 1:
                # smaller batches from here on; this chunk is retried at the new size
                size = max(1, size // 2)
                logger.warning(
                    "out of memory on a batch of %d; batch size now %d", len(chunk), size
                )
                continue
            # any other failure (or one crystal that does not fit): isolate, one by one
            logger.warning("batch of %d failed (%s); retrying one by one", len(chunk), exc)
            tensors = []
            for _, crystal in chunk:
                try:
                    tensors.append(_forward(net, [crystal], dev)[0])
                except Exception as exc_one:
                    tensors.append(exc_one)
        pos += len(chunk)
        for (i, crystal), tensor in zip(chunk, tensors, strict=True):
            if isinstance(tensor, Exception):
                results[i] = _failed(f"{type(tensor).__name__}: {tensor}", task)
                continue
            if not np.all(np.isfinite(tensor)):
                results[i] = _failed("prediction is not finite", task)
                continue
            beyond = physical_bound_problem(task, tensor)
            if beyond is not None:  # a broken model or checkpoint, never a discovery
                results[i] = _failed(f"prediction beyond physical bounds ({beyond})", task)
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


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (CUDA, MPS or the CPU allocator)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _forward(
    net: TensorModel, crystals: Sequence[PreparedCrystal], device: torch.device
) -> list[Any]:
    batch = collate_crystals(crystals, dtype=net.dtype).to(device, net.dtype)
    with torch.no_grad():
        out = net(batch).cpu().numpy()
    return list(out)
