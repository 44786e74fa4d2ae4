"""Test-set evaluation: the paper's metrics overall and per crystal system, plus timing."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

from atomate2_gmt.data.records import TensorRecord
from atomate2_gmt.model.tensor_model import TensorModel
from atomate2_gmt.tensors.conventions import rotate
from atomate2_gmt.tensors.metrics import (
    direction_metrics,
    ensemble_coverage,
    equality_success,
    fnorm,
    ranking_metrics,
    relative_error,
    zero_success,
)
from atomate2_gmt.training.trainer import PreparedSet, predict_prepared


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation matrix (det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def rotated_records(records: Sequence[TensorRecord], seed: int) -> list[TensorRecord]:
    """Each record with its structure and its tensor rotated by its own random rotation R.

    Cartesian lattice and positions map x → R x, the tensor T → R·T (``tensors.rotate``), so the
    physics is unchanged and only the frame differs: an equivariant model scores the same on
    these as on the originals; a model that learned the frame of the data set does not.
    """
    rng = np.random.default_rng(seed)
    out = []
    for rec in records:
        R = random_rotation(rng)
        s = rec.structure
        moved = Structure(
            Lattice(s.lattice.matrix @ R.T),
            s.species,
            s.cart_coords @ R.T,
            coords_are_cartesian=True,
        )
        out.append(replace(rec, structure=moved, tensor=rotate(rec.tensor, R)))
    return out


def symmetry_success(pred: np.ndarray, projector: np.ndarray) -> tuple[bool, bool]:
    """(zero-element success, equality success) of one predicted full tensor.

    Zeros and ties are read off the tensor-space projector of the crystal's point group; the
    thresholds are the paper's (1e-5 absolute for zeros, 1e-4 for ties; tensors.metrics).
    """
    return bool(zero_success(pred, projector)), bool(equality_success(pred, projector))


def metrics_table(
    pred: np.ndarray, true: np.ndarray, kind: str, projectors: list[np.ndarray]
) -> dict[str, Any]:
    """Fnorm (mean, Voigt), EwT 50/25/10/5 %, zero and equality success (fractions), the
    ranking by frame-free magnitude (``tensors.metrics.ranking_metrics``) and direction against
    magnitude (``tensors.metrics.direction_metrics``)."""
    fn = np.asarray(fnorm(pred, true, kind))
    rel = np.asarray(relative_error(pred, true, kind))
    succ = np.array([symmetry_success(p, P) for p, P in zip(pred, projectors, strict=True)])
    return {
        "n": len(pred),
        "fnorm": float(fn.mean()),
        "ewt50": float((rel < 0.50).mean()),
        "ewt25": float((rel < 0.25).mean()),
        "ewt10": float((rel < 0.10).mean()),
        "ewt5": float((rel < 0.05).mean()),
        "zero_success": float(succ[:, 0].mean()),
        "equality_success": float(succ[:, 1].mean()),
        **ranking_metrics(pred, true),
        **direction_metrics(pred, true),
    }


def free_parameters(projector: np.ndarray) -> int:
    """Independent components the crystal's point group allows (the rank of its tensor-space
    projector): 1 means symmetry fixes the direction and only magnitude and sign are learnt."""
    return round(float(np.trace(projector)))


def evaluate_prepared(
    model: TensorModel,
    data: PreparedSet,
    batch_size: int = 64,
    device: Any = "cpu",
    parity_png: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on a prepared set: overall, per crystal system, and time per batch."""
    model.to(device)
    start = time.perf_counter()
    pred = predict_prepared(model, data, batch_size, device)
    elapsed = time.perf_counter() - start
    true = data.targets.numpy()
    kind = model.config.kind
    projectors = [c.output_projector for c in data.crystals]
    report: dict[str, Any] = {"overall": metrics_table(pred, true, kind, projectors)}
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(data.crystals):
        groups[c.crystal_system].append(i)
    report["per_crystal_system"] = {
        cs: metrics_table(pred[idx], true[idx], kind, [projectors[i] for i in idx])
        for cs, idx in sorted(groups.items())
    }
    by_dim: dict[int, list[int]] = defaultdict(list)
    for i, projector in enumerate(projectors):
        by_dim[free_parameters(projector)].append(i)
    report["per_free_parameters"] = {
        str(d): metrics_table(pred[idx], true[idx], kind, [projectors[i] for i in idx])
        for d, idx in sorted(by_dim.items())
    }
    if kind == "piezo":
        nonzero = [i for i, t in enumerate(true) if np.abs(t).max() > 1e-8]
        if nonzero:
            report["nonzero_subset"] = metrics_table(
                pred[nonzero], true[nonzero], kind, [projectors[i] for i in nonzero]
            )
    n_batches = max(1, -(-len(pred) // batch_size))
    report["time_per_batch_s"] = elapsed / n_batches
    if parity_png:
        from atomate2_gmt.training.report import parity_plot

        parity_plot(pred, true, kind, parity_png, title=f"GMTNet {model.config.task} (test)")
    report["batch_size"] = batch_size
    return report


def evaluate_ensemble(
    models: Sequence[TensorModel],
    data: PreparedSet,
    batch_size: int = 64,
    device: Any = "cpu",
    spread_scale: float = 1.0,
) -> dict[str, Any]:
    """An ensemble of same-task models on a prepared set: the metrics of the members' mean
    tensor (``overall``) and how well the members' spread, times ``spread_scale``, covers the
    truth (``coverage``, :func:`~atomate2_gmt.tensors.metrics.ensemble_coverage`)."""
    if len(models) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {len(models)}")
    tasks = {m.config.task for m in models}
    if len(tasks) != 1:
        raise ValueError(f"ensemble members must share one task, got {sorted(tasks)}")
    preds = np.stack([predict_prepared(m.to(device), data, batch_size, device) for m in models])
    true = data.targets.numpy()
    projectors = [c.output_projector for c in data.crystals]
    return {
        "members": len(models),
        "overall": metrics_table(preds.mean(axis=0), true, models[0].config.kind, projectors),
        "coverage": ensemble_coverage(preds, true, spread_scale),
    }


def per_source_metrics(
    model: TensorModel, data: PreparedSet, batch_size: int = 64
) -> dict[str, Any]:
    """Overall metrics of ``model`` on the records of each ``source`` in ``data`` (empty when
    there is only one source)."""
    sources = sorted({r.source for r in data.records})
    if len(sources) < 2:
        return {}
    out: dict[str, Any] = {}
    for src in sources:
        subset = data.subset(lambda record: record.source == src)  # noqa: B023 (used at once)
        out[src] = evaluate_prepared(model, subset, batch_size)["overall"]
    return out
