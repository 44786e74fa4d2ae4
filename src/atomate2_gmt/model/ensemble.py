"""Ensembles: several models of one task whose prediction is the members' mean tensor, with the
members' spread as its uncertainty.

An ensemble is named by its members (:func:`ensemble_info`: the same members, in the same
order, and calibration factor give the same version); its result for one structure is the
mean of the members' tensors and, for every numeric derived scalar, the standard deviation over
the members times a calibration factor (:func:`combine_members`). The derived scalars are the
caller's (``derive``): the model knows tensors, not the documents' fields.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from atomate2_gmt.tensors.conventions import full_to_voigt, kind_of

__all__ = ["combine_members", "ensemble_info"]


def ensemble_info(
    task: str, members: Sequence[tuple[Any, dict[str, Any]]], spread_scale: float = 1.0
) -> dict[str, Any]:
    """Model info of a task: the model's own (one member), or one describing the ensemble (its
    members and the calibration factor of its σ, ``spread_scale``, which is part of its
    version: another factor means other stored uncertainties)."""
    if len(members) == 1:
        return members[0][1]
    label = "|".join(str(info.get("checkpoint_hash") or info.get("name")) for _, info in members)
    spec = f"ensemble of {len(members)}: " + ", ".join(
        str(info.get("version") or info.get("name")) for _, info in members
    )
    scale = float(spread_scale)  # 4, 4.0 and np.float64(4.0) are one factor and one version
    if scale != 1.0:
        label += f"|spread_scale={scale:.12g}"
        spec += f"; uncertainty = spread × {scale:.6g}"
    digest = hashlib.sha256(label.encode()).hexdigest()
    return {
        "name": f"ensemble-{task}",
        "version": f"ens{len(members)}-{digest[:12]}",
        "checkpoint_hash": digest,
        "spec": spec,
    }


def combine_members(
    task: str,
    results: Sequence[dict[str, Any]],
    derive: Callable[[np.ndarray], dict[str, Any]],
    spread_scale: float = 1.0,
) -> tuple[dict[str, Any], dict[str, float]]:
    """One task's result from its members' results (``predict``'s dicts): the mean tensor, and
    the standard deviation over the members of each numeric derived scalar ``derive(tensor)``
    gives, times ``spread_scale`` (a calibration factor). A scalar that is not a finite number
    for every member has no spread. A failed member fails the ensemble (its result)."""
    failed = [r for r in results if r["state"] != "successful"]
    if failed:
        return failed[0], {}
    tensors = [np.asarray(r["tensor"], dtype=float) for r in results]
    mean = np.mean(tensors, axis=0)
    spread: dict[str, float] = {}
    derived = [derive(t) for t in tensors]
    for name in derived[0]:
        values = [d.get(name) for d in derived]
        numbers = [float(v) for v in values if isinstance(v, float) and np.isfinite(v)]
        if len(numbers) == len(values):
            spread[name] = spread_scale * float(np.std(numbers))
    combined = {
        **results[0],
        "tensor": mean.tolist(),
        "voigt": full_to_voigt(mean, kind_of(task)).tolist(),
    }
    return combined, spread
