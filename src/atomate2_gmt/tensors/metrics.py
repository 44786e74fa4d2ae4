"""Accuracy and symmetry metrics of predicted tensors, as defined in the GMTNet paper.

* Fnorm: Frobenius norm |pred - true|_F per sample (the paper reports its test-set mean), on
  the Voigt form (dielectric 3x3, piezo 3x6, elastic 6x6: tensor components, standard order)
  or on the full Cartesian tensor (``form="full"``; off-diagonal pairs then count once per
  index permutation).
* EwT(t): fraction of samples with |pred - true|_F / |true|_F < t (t = 25 %, 10 %, 5 %).
* Zero success: every symmetry-forbidden component of the prediction has |value| <= 1e-5.
* Equality success: every pair of components tied by symmetry (T_i = ±T_j) satisfies
  |T_i ∓ T_j| <= 1e-4. Both read their patterns off the crystal's projector, on the full tensor.
* R² per component over a set of samples.

Units follow the tensors (dimensionless, C/m^2, GPa); frames must match between pred and true.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from atomate2_gmt.tensors.conventions import TENSOR_ORDER, as_full, full_to_voigt, validate_kind
from atomate2_gmt.tensors.symmetry import tie_pairs, zero_mask

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = [
    "EQUALITY_ATOL",
    "EWT_THRESHOLDS",
    "ZERO_ATOL",
    "ensemble_coverage",
    "equality_success",
    "evaluate",
    "ewt",
    "fnorm",
    "r2_per_component",
    "ranking_metrics",
    "relative_error",
    "symmetry_violation",
    "zero_success",
]

ZERO_ATOL = 1e-5
"""A forbidden component counts as violated when its magnitude exceeds this (tensor units)."""
EQUALITY_ATOL = 1e-4
"""A tied pair counts as broken when |T_i - sign T_j| exceeds this (tensor units)."""
EWT_THRESHOLDS: tuple[float, ...] = (0.25, 0.10, 0.05)


def _pair(pred: ArrayLike, true: ArrayLike, kind: str, form: str) -> tuple[np.ndarray, ...]:
    validate_kind(kind)
    if form not in ("voigt", "full"):
        raise ValueError(f"form must be 'voigt' or 'full', got {form!r}")
    p, t = as_full(pred, kind), as_full(true, kind)
    if p.shape != t.shape:
        raise ValueError(f"pred and true shapes differ: {np.shape(pred)} vs {np.shape(true)}")
    if form == "voigt":
        p, t = full_to_voigt(p, kind), full_to_voigt(t, kind)
    n_axes = 2 if form == "voigt" else TENSOR_ORDER[kind]
    axes = tuple(range(p.ndim - n_axes, p.ndim))
    return p, t, np.asarray(axes)


def _scalar_or_array(x: np.ndarray) -> Any:
    return float(x) if np.ndim(x) == 0 else x


def fnorm(pred: ArrayLike, true: ArrayLike, kind: str, form: str = "voigt") -> Any:
    """|pred - true|_F per sample (leading batch dims allowed; a float for a single pair).

    ``pred``/``true``: full or standard Voigt tensors of ``kind``; ``form`` picks the norm."""
    p, t, axes = _pair(pred, true, kind, form)
    return _scalar_or_array(np.sqrt(np.sum((p - t) ** 2, axis=tuple(axes))))


def relative_error(pred: ArrayLike, true: ArrayLike, kind: str, form: str = "voigt") -> Any:
    """|pred - true|_F / |true|_F per sample (inf where true is zero and pred is not)."""
    p, t, axes = _pair(pred, true, kind, form)
    num = np.sqrt(np.sum((p - t) ** 2, axis=tuple(axes)))
    den = np.sqrt(np.sum(t**2, axis=tuple(axes)))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num > 0, np.inf, 0.0))
    return _scalar_or_array(rel)


def ewt(
    pred: ArrayLike,
    true: ArrayLike,
    kind: str,
    thresholds: Sequence[float] = EWT_THRESHOLDS,
    form: str = "voigt",
) -> dict[float, float]:
    """Energy-within-threshold analogue: fraction of samples with relative Frobenius error
    below each threshold (e.g. {0.25: 0.61, 0.1: 0.32, 0.05: 0.14})."""
    rel = np.atleast_1d(relative_error(pred, true, kind, form))
    return {float(th): float(np.mean(rel < th)) for th in thresholds}


def _flat_full(pred: ArrayLike, P: np.ndarray) -> np.ndarray:
    size = P.shape[0]
    kind = {3**order: k for k, order in TENSOR_ORDER.items()}.get(size)
    if kind is None:
        raise ValueError(f"projector size {size} is not 9, 27 or 81")
    full = as_full(pred, kind)
    return full.reshape(*full.shape[: full.ndim - TENSOR_ORDER[kind]], size)


def zero_success(pred: ArrayLike, P: ArrayLike, atol: float = ZERO_ATOL) -> Any:
    """True where every component forbidden by the projector P has |value| <= ``atol``.

    ``pred``: full or Voigt tensor(s) in P's frame; batch dims give a bool array."""
    p = np.asarray(P, dtype=float)
    flat = _flat_full(pred, p)
    mask = zero_mask(p).ravel()
    ok = np.all(np.abs(flat[..., mask]) <= atol, axis=-1)
    return bool(ok) if np.ndim(ok) == 0 else ok


def equality_success(pred: ArrayLike, P: ArrayLike, atol: float = EQUALITY_ATOL) -> Any:
    """True where every pair tied by P (T_i = sign T_j) holds within ``atol``."""
    p = np.asarray(P, dtype=float)
    flat = _flat_full(pred, p)
    pairs = tie_pairs(p)
    if not pairs:
        ok = np.ones(flat.shape[:-1], dtype=bool)
    else:
        i, j, sign = (np.array(x) for x in zip(*pairs, strict=True))
        ok = np.all(np.abs(flat[..., i] - sign * flat[..., j]) <= atol, axis=-1)
    return bool(ok) if np.ndim(ok) == 0 else ok


def symmetry_violation(pred: ArrayLike, P: ArrayLike) -> Any:
    """|(1 - P) T|_F / |T|_F: the part of the prediction outside the symmetric subspace."""
    p = np.asarray(P, dtype=float)
    flat = _flat_full(pred, p)
    off = flat - flat @ p.T
    den = np.linalg.norm(flat, axis=-1)
    out = np.linalg.norm(off, axis=-1) / np.where(den > 0, den, 1.0)
    return _scalar_or_array(out)


def ranking_metrics(
    pred: ArrayLike, true: ArrayLike, top_fraction: float = 0.1
) -> dict[str, float]:
    """How well predictions rank crystals by the frame-free magnitude |T|_F (Frobenius norm of
    the full Cartesian tensor, task units): ``spearman_norm`` (Spearman rank correlation of
    predicted and true norms) and ``top10_recall`` (the fraction of the true top
    ``top_fraction`` by norm found in the predicted top, at least one crystal). Screening lives
    on ranking."""
    from scipy.stats import spearmanr

    p = np.asarray(pred, dtype=float)
    t = np.asarray(true, dtype=float)
    if p.shape != t.shape or p.ndim < 2:
        raise ValueError(f"pred and true must be stacks of equal shape, got {p.shape}, {t.shape}")
    norm_p = np.linalg.norm(p.reshape(len(p), -1), axis=1)
    norm_t = np.linalg.norm(t.reshape(len(t), -1), axis=1)
    k = max(1, round(top_fraction * len(p)))
    top_t = set(np.argsort(-norm_t, kind="stable")[:k].tolist())
    top_p = set(np.argsort(-norm_p, kind="stable")[:k].tolist())
    rho = float(spearmanr(norm_p, norm_t).statistic) if len(p) > 1 else float("nan")
    return {"spearman_norm": rho, "top10_recall": len(top_t & top_p) / k}


ALIGNED_COSINE = float(np.sqrt(1 - 0.25**2))
"""cos θ above which a prediction is within 25 % of the true full tensor at its best-fitting
magnitude (|T| cos θ along the predicted direction leaves |Δ|/|T| = sin θ < 0.25)."""

NEGLIGIBLE_NORM = 1e-6
"""A prediction smaller than this fraction of the true norm has no direction (cos θ = 0)."""


def direction_metrics(pred: ArrayLike, true: ArrayLike) -> dict[str, float]:
    """Direction against magnitude of predicted full Cartesian tensors (frame-free): over the
    crystals with a non-zero true tensor, ``median_cosine`` of the angle between predicted and
    true tensors (Frobenius inner product), ``wrong_sign`` (fraction with cos θ < 0),
    ``aligned`` (fraction with cos θ > :data:`ALIGNED_COSINE`: within 25 % of the true full
    tensor at the best-fitting magnitude) and ``median_norm_ratio`` (|pred|_F / |true|_F). A
    prediction below :data:`NEGLIGIBLE_NORM` of the true norm counts as cos θ = 0 (round-off has
    no direction). NaN where no true tensor is non-zero."""
    p = np.asarray(pred, dtype=float)
    t = np.asarray(true, dtype=float)
    if p.shape != t.shape or p.ndim < 2:
        raise ValueError(f"pred and true must be stacks of equal shape, got {p.shape}, {t.shape}")
    p, t = p.reshape(len(p), -1), t.reshape(len(t), -1)
    norm_p, norm_t = np.linalg.norm(p, axis=1), np.linalg.norm(t, axis=1)
    keep = norm_t > 0
    if not keep.any():
        nan = float("nan")
        return {"median_cosine": nan, "wrong_sign": nan, "aligned": nan, "median_norm_ratio": nan}
    p, t, norm_p, norm_t = p[keep], t[keep], norm_p[keep], norm_t[keep]
    directed = norm_p > NEGLIGIBLE_NORM * norm_t
    cos = np.where(directed, (p * t).sum(axis=1) / (norm_t * np.where(directed, norm_p, 1.0)), 0.0)
    return {
        "median_cosine": float(np.median(cos)),
        "wrong_sign": float((cos < 0).mean()),
        "aligned": float((cos > ALIGNED_COSINE).mean()),
        "median_norm_ratio": float(np.median(norm_p / norm_t)),
    }


GAUSSIAN_MEDIAN_Z = 0.6744897501960817
"""Median of |z| for a standard normal z: the median |error| / σ of a calibrated σ."""


def ensemble_coverage(
    members: ArrayLike, true: ArrayLike, spread_scale: float = 1.0
) -> dict[str, float]:
    """How often an ensemble's spread covers the truth (calibration of σ).

    ``members``: (m, n, ...) predictions of m members for n crystals; ``true``: (n, ...), same
    frame and units. As the product reports them: the value of a crystal is the norm of the
    members' mean tensor |mean|_F, its σ the standard deviation (ddof 0) of the members' norms.
    Returns the fraction of crystals with |value − |true|_F| ≤ σ and ≤ 2σ (``coverage_1sigma``,
    ``coverage_2sigma``; a calibrated Gaussian σ gives 0.683 and 0.954), the same per tensor
    component of the members' mean and spread over components that are non-zero in the truth
    (``component_coverage_1sigma``, ``..._2sigma``), and the median |error| / σ of the norms
    (``median_z``; 0.674 when calibrated). ``spread_scale`` multiplies every σ first (a
    calibration factor, as ``GMTPredictMaker.ensemble_spread_scale`` applies it);
    ``calibrating_scale`` is the factor that would make this set's median z calibrated
    (median_z / :data:`GAUSSIAN_MEDIAN_Z`): fit it on a validation split, apply it elsewhere."""
    if not (math.isfinite(spread_scale) and spread_scale > 0):
        raise ValueError(f"spread_scale must be positive and finite, got {spread_scale}")
    stack = np.asarray(members, dtype=float)
    t = np.asarray(true, dtype=float)
    if stack.ndim < 3 or stack.shape[1:] != t.shape or stack.shape[0] < 2:
        raise ValueError(
            f"members must be (m >= 2, n, ...) with (n, ...) = true's shape, got {stack.shape} "
            f"and {t.shape}"
        )
    m, n = stack.shape[:2]
    flat = stack.reshape(m, n, -1)
    t_flat = t.reshape(n, -1)
    value = np.linalg.norm(flat.mean(axis=0), axis=1)
    sigma = spread_scale * np.linalg.norm(flat, axis=2).std(axis=0)
    err = np.abs(value - np.linalg.norm(t_flat, axis=1))
    comp_mean, comp_sigma = flat.mean(axis=0), spread_scale * flat.std(axis=0)
    nonzero = np.abs(t_flat) > 1e-8
    comp_err = np.abs(comp_mean - t_flat)[nonzero]
    comp_sigma = comp_sigma[nonzero]
    with np.errstate(divide="ignore", invalid="ignore"):  # σ = 0: exact (0) or infinitely off
        z = np.where(sigma > 0, err / sigma, np.where(err > 0, np.inf, 0.0))
    has_components = bool(comp_err.size)
    return {
        "n": float(n),
        "members": float(m),
        "coverage_1sigma": float((err <= sigma).mean()),
        "coverage_2sigma": float((err <= 2 * sigma).mean()),
        "component_coverage_1sigma": (
            float((comp_err <= comp_sigma).mean()) if has_components else math.nan
        ),
        "component_coverage_2sigma": (
            float((comp_err <= 2 * comp_sigma).mean()) if has_components else math.nan
        ),
        "median_z": float(np.median(z)),
        "spread_scale": float(spread_scale),
        "calibrating_scale": float(spread_scale * np.median(z) / GAUSSIAN_MEDIAN_Z),
    }


def r2_per_component(preds: ArrayLike, trues: ArrayLike) -> np.ndarray:
    """Coefficient of determination 1 - SS_res/SS_tot of every component over samples (axis 0).

    Returns the component shape; NaN where the true values do not vary (SS_tot = 0)."""
    p, t = np.asarray(preds, dtype=float), np.asarray(trues, dtype=float)
    if p.shape != t.shape or p.ndim < 1:
        raise ValueError(f"preds and trues must share a shape (n, ...), got {p.shape}, {t.shape}")
    if len(p) < 2:
        raise ValueError("R² needs at least two samples")
    ss_res = np.sum((p - t) ** 2, axis=0)
    ss_tot = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)


def _summary(
    pv: np.ndarray, tv: np.ndarray, pf: np.ndarray, tf: np.ndarray, kind: str, projs: list | None
) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(pv)}
    fn = np.atleast_1d(fnorm(pv, tv, kind, "voigt"))
    out["fnorm"] = float(fn.mean())
    out["fnorm_full"] = float(np.atleast_1d(fnorm(pf, tf, kind, "full")).mean())
    for th, frac in ewt(pv, tv, kind).items():
        out[f"ewt_{round(th * 100)}"] = frac
    if projs is not None:
        out["zero_success"] = float(
            np.mean([zero_success(x, p) for x, p in zip(pf, projs, strict=True)])
        )
        out["equality_success"] = float(
            np.mean([equality_success(x, p) for x, p in zip(pf, projs, strict=True)])
        )
    if len(pv) >= 2:
        r2 = r2_per_component(pv, tv)
        out["r2"] = r2.tolist()
        finite = r2[np.isfinite(r2)]
        out["r2_mean"] = float(finite.mean()) if finite.size else float("nan")
    return out


def evaluate(
    preds: ArrayLike,
    trues: ArrayLike,
    crystal_systems: Sequence[str],
    kind: str,
    projectors: Sequence[ArrayLike] | None = None,
) -> dict[str, Any]:
    """Overall and per-crystal-system metrics of a set of predictions.

    ``preds``/``trues``: (n, ...) full or Voigt tensors of ``kind`` (matching frames);
    ``crystal_systems``: n names; ``projectors``: n projectors (3**order)^2 for the zero and
    equality success rates (skipped when None). Returns ``{"overall": {...},
    "by_crystal_system": {system: {...}}}`` with n, fnorm (Voigt, mean), fnorm_full, ewt_25,
    ewt_10, ewt_5, zero_success, equality_success, r2 (per Voigt component), r2_mean.
    """
    validate_kind(kind)
    pf, tf = as_full(preds, kind), as_full(trues, kind)
    order = TENSOR_ORDER[kind]
    if pf.ndim != order + 1 or pf.shape != tf.shape:
        raise ValueError(
            f"preds and trues must be (n, ...) {kind} tensors of one shape, got "
            f"{np.shape(preds)} and {np.shape(trues)}"
        )
    n = len(pf)
    systems = list(crystal_systems)
    if len(systems) != n:
        raise ValueError(f"{len(systems)} crystal systems for {n} samples")
    projs = None
    if projectors is not None:
        projs = [np.asarray(p, dtype=float) for p in projectors]
        if len(projs) != n:
            raise ValueError(f"{len(projs)} projectors for {n} samples")
    pv, tv = full_to_voigt(pf, kind), full_to_voigt(tf, kind)
    result: dict[str, Any] = {"overall": _summary(pv, tv, pf, tf, kind, projs)}
    by: dict[str, Any] = {}
    for system in sorted(set(systems)):
        idx = [k for k, s in enumerate(systems) if s == system]
        sub = None if projs is None else [projs[k] for k in idx]
        by[system] = _summary(pv[idx], tv[idx], pf[idx], tf[idx], kind, sub)
    result["by_crystal_system"] = by
    return result
