"""Strategies, the objective and the label transforms of the simulated campaign.

The picks of a round are made by production's own ranking,
:func:`atomate2_gmt.jobs.select.rank_candidates` with a
:class:`~atomate2_gmt.jobs.select.SelectionPolicy` (see :mod:`.simulate`). The value it ranks
on is the task's default sort field of the prediction documents (piezo: emmet's ``e_ij_max``,
the largest singular value of the Voigt 3×6 e in the crystal's IEEE 176 frame, C/m²), computed
from a tensor by :func:`objective_values` exactly as the documents compute it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from atomate2_gmt.schemas.derived import derived_quantities
from atomate2_gmt.schemas.fields import resolve_sort_field

__all__ = [
    "STRATEGIES",
    "TARGET_TRANSFORMS",
    "compress_targets",
    "expand_targets",
    "hypergeometric_mean",
    "objective_field",
    "objective_values",
    "pick_random",
    "pick_top",
]

STRATEGIES: tuple[str, ...] = ("random", "ranking", "exploit", "ucb")
"""random: uniform picks; ranking: the initial model's values, never retrained; exploit: the
predicted value, model retrained after each round; ucb: the ensemble-mean tensor's value + κ·std
of the members' values (``SelectionPolicy(strategy="ucb")``), every member retrained."""


TARGET_TRANSFORMS: tuple[str, ...] = ("none", "asinh")
"""How the campaign's models see the labels: ``none`` (the tensors) or ``asinh`` (each tensor
rescaled so that its Frobenius norm x becomes s·asinh(x/s); see :func:`compress_targets`)."""


def _norms(arr: np.ndarray) -> np.ndarray:
    flat = arr.reshape(len(arr), -1)
    return np.sqrt((flat * flat).sum(axis=1)).reshape((len(arr),) + (1,) * (arr.ndim - 1))


def compress_targets(
    tensors: np.ndarray, transform: str = "asinh", scale: float = 1.0
) -> np.ndarray:
    """The tensors a campaign model is trained on. ``asinh``: T · s·asinh(‖T‖/s)/‖T‖ (‖·‖ the
    Frobenius norm, ``scale`` s in task units): the norm is compressed logarithmically above s
    (a 48 C/m² outlier no longer dominates the loss) while the direction, hence the crystal's
    symmetry and O(3) equivariance, is kept. Exactly inverted by :func:`expand_targets`."""
    arr = np.asarray(tensors, dtype=np.float64)
    if transform == "none":
        return arr.copy()
    if transform != "asinh":
        raise ValueError(f"unknown target transform {transform!r}; valid: {TARGET_TRANSFORMS}")
    if scale <= 0:
        raise ValueError(f"transform scale must be positive, got {scale}")
    norm = _norms(arr)
    factor = np.where(norm > 0, scale * np.arcsinh(norm / scale) / np.where(norm > 0, norm, 1), 1)
    return arr * factor


def expand_targets(tensors: np.ndarray, transform: str = "asinh", scale: float = 1.0) -> np.ndarray:
    """The inverse of :func:`compress_targets` (a model's outputs back to task units)."""
    arr = np.asarray(tensors, dtype=np.float64)
    if transform == "none":
        return arr.copy()
    if transform != "asinh":
        raise ValueError(f"unknown target transform {transform!r}; valid: {TARGET_TRANSFORMS}")
    norm = _norms(arr)
    factor = np.where(norm > 0, scale * np.sinh(norm / scale) / np.where(norm > 0, norm, 1), 1)
    return arr * factor


def objective_field(task: str) -> str:
    """The document field production selects on for ``task`` (its default sort field)."""
    return resolve_sort_field(task, None)


def objective_values(
    tensors: np.ndarray, ieee_rotations: Sequence[np.ndarray | None], task: str = "piezo"
) -> np.ndarray:
    """:func:`objective_field` of each full Cartesian tensor (n, 3, ..., 3), in task units, as
    :func:`~atomate2_gmt.schemas.derived.derived_quantities` writes it on a prediction document;
    ``ieee_rotations[i]``: the rotation of tensor i's crystal to its IEEE frame (None: not
    found). NaN where the field is undefined (piezo without an IEEE frame), as a document
    stores None there and no selection picks it."""
    arr = np.asarray(tensors, dtype=np.float64)
    if len(ieee_rotations) != len(arr):
        raise ValueError(f"{len(arr)} tensors but {len(ieee_rotations)} IEEE rotations")
    name = objective_field(task)
    out = np.full(len(arr), np.nan)
    for i, (tensor, rotation) in enumerate(zip(arr, ieee_rotations, strict=True)):
        value = derived_quantities(task, tensor, rotation).get(name)
        if value is not None:
            out[i] = float(value)
    return out


def pick_top(scores: np.ndarray, available: Sequence[int], k: int) -> list[int]:
    """The ``k`` indices of ``available`` with the highest ``scores[i]`` (ties: lower index)."""
    avail = np.asarray(sorted(available), dtype=np.int64)
    if len(avail) == 0:
        return []
    s = np.asarray(scores, dtype=np.float64)[avail]
    order = np.lexsort((avail, -s))  # primary: score descending; then index ascending
    return [int(i) for i in avail[order[:k]]]


def pick_random(rng: np.random.Generator, available: Sequence[int], k: int) -> list[int]:
    """``k`` distinct indices drawn uniformly from ``available`` (fewer if it is smaller)."""
    avail = np.asarray(sorted(available), dtype=np.int64)
    k = min(k, len(avail))
    return [int(i) for i in rng.choice(avail, size=k, replace=False)]


def hypergeometric_mean(n_calls: int, n_top: int, n_pool: int) -> float:
    """Expected number of the ``n_top`` best found by ``n_calls`` uniform picks without
    replacement from ``n_pool`` candidates: n·K/N (the hypergeometric mean)."""
    if n_pool <= 0:
        raise ValueError("n_pool must be positive")
    return min(n_calls, n_pool) * n_top / n_pool
