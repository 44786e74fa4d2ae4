"""Selection policies of the simulated campaign: how a round's picks are chosen from the pool.

The scores mirror :class:`atomate2_gmt.jobs.select.SelectionPolicy`: ``exploit`` ranks by the
predicted value, ``ucb`` by value + κ·std of an ensemble. Here the value is the largest
|e_ij| (C/m², Voigt 3×6) of the predicted piezoelectric tensor (any task: the scalar of
:func:`target_value`). Ties are broken by the pool order, so a pick is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from atomate2_gmt.tensors.properties import piezo_max_eij

__all__ = [
    "STRATEGIES",
    "TARGET_TRANSFORMS",
    "compress_targets",
    "expand_targets",
    "hypergeometric_mean",
    "pick_random",
    "pick_top",
    "target_value",
    "ucb_scores",
]

STRATEGIES: tuple[str, ...] = ("random", "ranking", "exploit", "ucb")
"""random: uniform picks; ranking: one ranking by the initial model, never retrained; exploit:
predicted value, model fine-tuned after each round; ucb: ensemble mean + κ·std, fine-tuned."""


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


def target_value(tensors: np.ndarray, task: str = "piezo") -> np.ndarray:
    """The scalar a campaign looks for, per tensor: piezo → max |e_ij| (C/m², Voigt form).

    ``tensors``: (n, 3, 3, 3) full Cartesian tensors. Other tasks use the largest |component|
    of the full tensor (task units).
    """
    arr = np.asarray(tensors, dtype=np.float64)
    if task == "piezo":
        return np.array([piezo_max_eij(t)[0] for t in arr], dtype=np.float64)
    return np.abs(arr.reshape(len(arr), -1)).max(axis=1)


def ucb_scores(values: np.ndarray, kappa: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score, mean, std) of an ensemble's values, shape (members, n): mean + κ·std (ddof 0)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 1:
        raise ValueError(f"ensemble values must have shape (members, n), got {v.shape}")
    mean, std = v.mean(axis=0), v.std(axis=0)
    return mean + float(kappa) * std, mean, std


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
