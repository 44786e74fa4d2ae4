"""Checks a DFPT result must pass before it becomes training data.

:func:`check_dfpt_result` returns the reasons to reject a :class:`DFPTResultDoc` (empty list =
accept). A result is rejected when

1. its ``state`` is ``failed``, or it has no tensors, or its structure cannot be read;
2. a tensor has a non-finite component;
3. a tensor breaks its structure's symmetry: the relative residual of the point-group projector
   (with the intrinsic index symmetry), ``|T − P T|_F / max(|T|_F, floor)`` in the structure's
   Cartesian frame, is at or above :data:`SYMMETRY_TOLERANCE` for the tensor kind — the same
   numbers as the Materials Project residual filter of ``data.mp`` (5 % dielectric and elastic,
   1 % piezo), so a DFPT record passes where an equally clean MP record would. Since
   ``T − P_G T`` is the group average of ``T − g·T``, this residual never exceeds the data set's
   ``max_g |g·T − T| / |T|``. The floor (:data:`RESIDUAL_FLOOR`: 1 for ε, 0.01 C/m², 1 GPa) keeps
   round-off on a tensor that should vanish (the piezo tensor of a centrosymmetric crystal) from
   counting as a large relative error. A tensor in the wrong frame or the wrong Voigt order
   fails this check;
4. a value is unphysical: an eigenvalue of the (symmetric part of) ε∞ or ε0 below 1 (a
   permittivity is at least the vacuum's); an ionic dielectric part with an eigenvalue below
   −:data:`IONIC_NEGATIVE_TOL` (imaginary phonon modes: the structure is not at a minimum); an
   elastic tensor (clamped or relaxed) that is not positive definite (Born unstable);
5. its accuracy settings are not production quality (``data.quality``: e.g. the ``smoke``
   preset of the tests).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import ValidationError

from atomate2_gmt.data.quality import production_problems
from atomate2_gmt.schemas.dfpt import DFPT_PARTS, DFPTResultDoc
from atomate2_gmt.tensors.properties import dielectric_eigenvalues, elastic_eigenvalues
from atomate2_gmt.tensors.symmetry import point_group_info, projector

__all__ = [
    "IONIC_NEGATIVE_TOL",
    "RESIDUAL_FLOOR",
    "SYMMETRY_TOLERANCE",
    "check_dfpt_result",
    "projector_residual",
]

SYMMETRY_TOLERANCE: dict[str, float] = {"dielectric": 5e-2, "piezo": 1e-2, "elastic": 5e-2}
"""Largest accepted relative projector residual per tensor kind (= data.mp's thresholds)."""

RESIDUAL_FLOOR: dict[str, float] = {"dielectric": 1.0, "piezo": 1e-2, "elastic": 1.0}
"""Norm below which the residual is measured against this absolute scale (task units)."""

IONIC_NEGATIVE_TOL = 0.1
"""Most negative accepted eigenvalue of the ionic dielectric part (dimensionless)."""


def projector_residual(tensor: np.ndarray, kind: str, ops: Any) -> float:
    """``|T − P T|_F / max(|T|_F, RESIDUAL_FLOOR[kind])`` for the projector of ``ops``.

    ``tensor``: full Cartesian tensor in the frame of ``ops`` (a PointGroupInfo or (n,3,3)).
    """
    p = projector(kind, ops)
    flat = np.asarray(tensor, dtype=float).reshape(-1)
    scale = max(float(np.linalg.norm(flat)), RESIDUAL_FLOOR[kind])
    return float(np.linalg.norm(flat - p @ flat) / scale)


def _physical(part: str, tensor: np.ndarray) -> str | None:
    kind = DFPT_PARTS[part][0]
    if part in ("dielectric_electronic", "dielectric_total"):
        low = float(dielectric_eigenvalues(tensor)[0])
        if low < 1.0:
            return f"{part}: smallest eigenvalue {low:.4g} < 1 (a permittivity is at least 1)"
    elif part == "dielectric_ionic":
        low = float(dielectric_eigenvalues(tensor)[0])
        if low < -IONIC_NEGATIVE_TOL:
            return (
                f"{part}: smallest eigenvalue {low:.4g} < -{IONIC_NEGATIVE_TOL} "
                "(imaginary phonon modes: the structure is not at an energy minimum)"
            )
    elif kind == "elastic":
        low = float(elastic_eigenvalues(tensor)[0])
        if not low > 0.0:
            return (
                f"{part}: not positive definite (smallest Kelvin modulus {low:.4g} GPa): "
                "Born-unstable"
            )
    return None


def check_dfpt_result(
    doc: DFPTResultDoc | dict[str, Any],
    symprec: float = 0.01,
    angle_tolerance: float = 5.0,
    tolerance: dict[str, float] | None = None,
) -> list[str]:
    """Reasons to reject ``doc`` as training data; an empty list means accept.

    Args:
        doc: the DFPT result (document or its dict form).
        symprec: spglib distance tolerance (Å) for the structure's point group.
        angle_tolerance: spglib angle tolerance (degrees).
        tolerance: per-kind residual limits overriding :data:`SYMMETRY_TOLERANCE`.
    """
    if isinstance(doc, dict):
        try:
            doc = DFPTResultDoc.model_validate(doc)
        except ValidationError as exc:
            return [f"not a valid DFPTResultDoc: {exc.errors()[0]['msg']}"]
    if doc.state != "successful":
        return [f"state is {doc.state!r}: {doc.error or 'no reason given'}"]
    if not doc.tensors:
        return ["no tensors in the result"]
    quality = production_problems(doc.settings, doc.code)
    if quality:
        return quality
    limits = {**SYMMETRY_TOLERANCE, **(tolerance or {})}
    reasons: list[str] = []
    tensors: dict[str, np.ndarray] = {}
    for part, value in doc.tensors.items():
        arr = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(arr)):
            reasons.append(f"{part}: non-finite components")
        else:
            tensors[part] = arr
    try:
        info = point_group_info(
            doc.get_structure(), symprec=symprec, angle_tolerance=angle_tolerance
        )
    except (ValueError, KeyError, TypeError) as exc:
        return [*reasons, f"structure cannot be read or has no point group: {exc}"]
    for part, arr in tensors.items():
        kind = DFPT_PARTS[part][0]
        residual = projector_residual(arr, kind, info)
        if not residual < limits[kind]:
            reasons.append(
                f"{part}: breaks the {info.point_group} symmetry of its structure (relative "
                f"projector residual {residual:.3g} >= {limits[kind]:g}; symprec {symprec} Å)"
            )
        problem = _physical(part, arr)
        if problem is not None:
            reasons.append(problem)
    return reasons
