"""Checks a DFPT result must pass before it becomes training data.

:func:`check_dfpt_result` returns the reasons to reject a :class:`DFPTResultDoc` (empty list =
accept). A result is rejected when

1. its ``state`` is ``failed``, or it has no tensors, or its structure cannot be read;
2. a tensor has a non-finite component;
3. a tensor breaks its structure's symmetry: the relative residual of the point-group projector
   (with the intrinsic index symmetry), ``|T − P T|_F / max(|T|_F, floor)`` in the structure's
   Cartesian frame, is at or above :data:`SYMMETRY_TOLERANCE` for the tensor kind — the kind's
   ``residual_tolerance`` in the task registry, which the Materials Project residual filter of
   ``data.mp`` applies too (5 % dielectric and elastic, 1 % piezo), so a DFPT record passes
   where an equally clean MP record would. Since
   ``T − P_G T`` is the group average of ``T − g·T``, this residual never exceeds the data set's
   ``max_g |g·T − T| / |T|``. The floor (:data:`RESIDUAL_FLOOR`: 1 for ε, 0.01 C/m², 1 GPa) keeps
   round-off on a tensor that should vanish (the piezo tensor of a centrosymmetric crystal) from
   counting as a large relative error. A tensor in the wrong frame or the wrong Voigt order
   fails this check;
4. a value is unphysical: an eigenvalue of the (symmetric part of) ε∞ or ε0 below 1 (a
   permittivity is at least the vacuum's); an ionic dielectric part with an eigenvalue below
   −:data:`IONIC_NEGATIVE_TOL` (imaginary phonon modes: the structure is not at a minimum); an
   elastic tensor (clamped or relaxed) that is not positive definite (Born unstable);
5. its accuracy settings are missing (``data.quality.REQUIRED_SETTINGS``: ABINIT ecut, k-points,
   tolvrs_rf; VASP ENCUT, EDIFF, KSPACING or a k-point mesh) or not production quality
   (``data.quality``: the floors of each code, e.g. VASP ENCUT ≥ 520 eV, EDIFF ≤ 1e-5, k-point
   spacing ≤ 0.44 1/Å; the ``smoke`` preset of the tests);
6. a value is beyond any physical material (:data:`atomate2_gmt.tensors.bounds.PHYSICAL_BOUNDS`,
   per part, the same bounds as the predictions'): ε∞ eigenvalues above 1000, ε0 or ionic
   eigenvalues above 10⁴, a piezo component |e_ijk| above 100 C/m², an elastic component
   |C_ijkl| above 2000 GPa (the reasons are in ``tensors.bounds``);
7. a tensor breaks its intrinsic index symmetry (ε_ij = ε_ji, e_ijk = e_ikj, C_ijkl = C_jikl =
   C_ijlk = C_klij) by more than :data:`ASYMMETRY_TOLERANCE` (relative, with the residual floor);
   a smaller asymmetry (round-off of the code) is removed before the tensor is stored
   (:func:`index_symmetrised`);
8. its parts disagree with each other (:func:`part_consistency_problems`): ε0 − ε∞ must be
   positive semi-definite (the ionic part of the static permittivity is never negative; most
   negative eigenvalue −:data:`IONIC_NEGATIVE_TOL`), total = electronic + ionic within
   :data:`PART_SUM_RTOL` (dielectric and piezo, when all three are given), and C_clamped −
   C_relaxed positive semi-definite (relaxing the ions can only soften a crystal) within
   :data:`ELASTIC_RELAXATION_TOL`;
9. its ``structure_key`` is not the key of its own structure (recomputed with
   :func:`atomate2_gmt.tensors.symmetry.analysis.structure_key` at :data:`KEY_SYMPREC`): the
   training records are keyed by it, so a wrong key would file the tensors under another crystal.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import ValidationError

from atomate2_gmt.data.quality import missing_settings, production_problems
from atomate2_gmt.schemas.dfpt import DFPT_PARTS, DFPTResultDoc
from atomate2_gmt.schemas.training import index_symmetrised
from atomate2_gmt.tensors.bounds import PHYSICAL_BOUNDS, physical_bound_problem
from atomate2_gmt.tensors.properties import dielectric_eigenvalues, elastic_eigenvalues
from atomate2_gmt.tensors.symmetry import intrinsic_projector, point_group_info, projector
from atomate2_gmt.tensors.tasks import KIND_SPECS

__all__ = [
    "ASYMMETRY_TOLERANCE",
    "ELASTIC_RELAXATION_TOL",
    "IONIC_NEGATIVE_TOL",
    "KEY_SYMPREC",
    "PART_SUM_RTOL",
    "PHYSICAL_BOUNDS",
    "RESIDUAL_FLOOR",
    "SYMMETRY_TOLERANCE",
    "check_dfpt_result",
    "index_asymmetry",
    "index_symmetrised",
    "key_problem",
    "part_consistency_problems",
    "physical_bound_problem",
    "projector_residual",
]

SYMMETRY_TOLERANCE: dict[str, float] = {k: s.residual_tolerance for k, s in KIND_SPECS.items()}
"""Largest accepted relative projector residual per tensor kind (``TensorKind.
residual_tolerance``, also the MP label filter's)."""

RESIDUAL_FLOOR: dict[str, float] = {k: s.residual_floor for k, s in KIND_SPECS.items()}
"""Norm below which the residual is measured against this absolute scale (task units;
``TensorKind.residual_floor``)."""

IONIC_NEGATIVE_TOL = 0.1
"""Most negative accepted eigenvalue of the ionic dielectric part, and of ε0 − ε∞
(dimensionless)."""

ASYMMETRY_TOLERANCE = 1e-2
"""Largest accepted relative index asymmetry ``|T − P_index T|_F / max(|T|_F, floor)``; a
smaller asymmetry is symmetrised away before the tensor is stored."""

PART_SUM_RTOL = 1e-2
"""Largest accepted ``|total − (electronic + ionic)|_F / max(|total|_F, floor)``."""

ELASTIC_RELAXATION_TOL = 1.0
"""Most negative accepted Kelvin modulus of C_clamped − C_relaxed (GPa)."""

KEY_SYMPREC = 0.01
"""spglib tolerance (Å) with which the ``structure_key`` of a result is recomputed (the one
every backend and the screening documents use)."""


def projector_residual(tensor: np.ndarray, kind: str, ops: Any) -> float:
    """``|T − P T|_F / max(|T|_F, RESIDUAL_FLOOR[kind])`` for the projector of ``ops``.

    ``tensor``: full Cartesian tensor in the frame of ``ops`` (a PointGroupInfo or (n,3,3)).
    """
    p = projector(kind, ops)
    flat = np.asarray(tensor, dtype=float).reshape(-1)
    scale = max(float(np.linalg.norm(flat)), RESIDUAL_FLOOR[kind])
    return float(np.linalg.norm(flat - p @ flat) / scale)


def index_asymmetry(tensor: np.ndarray, kind: str) -> float:
    """``|T − P_index T|_F / max(|T|_F, RESIDUAL_FLOOR[kind])``: how far ``tensor`` (full
    Cartesian) is from its intrinsic index symmetry, relative."""
    flat = np.asarray(tensor, dtype=float).reshape(-1)
    scale = max(float(np.linalg.norm(flat)), RESIDUAL_FLOOR[kind])
    return float(np.linalg.norm(flat - intrinsic_projector(kind) @ flat) / scale)


def part_consistency_problems(tensors: dict[str, np.ndarray]) -> list[str]:
    """Reasons why the parts of one result contradict each other (module docstring, item 8).

    ``tensors``: part → full Cartesian tensor (finite, index-symmetric)."""
    reasons: list[str] = []
    low = _difference_floor(tensors, "dielectric_total", "dielectric_electronic")
    if low is not None and low < -IONIC_NEGATIVE_TOL:
        reasons.append(
            f"dielectric_total − dielectric_electronic: smallest eigenvalue {low:.4g} < "
            f"-{IONIC_NEGATIVE_TOL} (ε0 below ε∞: a negative ionic part)"
        )
    for kind in ("dielectric", "piezo"):
        parts = [tensors.get(f"{kind}_{p}") for p in ("electronic", "ionic", "total")]
        if any(t is None for t in parts):
            continue
        el, ion, total = (np.asarray(t) for t in parts)
        scale = max(float(np.linalg.norm(total)), RESIDUAL_FLOOR[kind])
        mismatch = float(np.linalg.norm(total - el - ion)) / scale
        if mismatch > PART_SUM_RTOL:
            reasons.append(
                f"{kind}_total is not {kind}_electronic + {kind}_ionic (relative difference "
                f"{mismatch:.3g} > {PART_SUM_RTOL:g})"
            )
    low = _difference_floor(tensors, "elastic_clamped", "elastic_relaxed")
    if low is not None and low < -ELASTIC_RELAXATION_TOL:
        reasons.append(
            f"elastic_relaxed is stiffer than elastic_clamped (smallest Kelvin modulus of "
            f"the difference {low:.4g} GPa < -{ELASTIC_RELAXATION_TOL:g}): relaxing the "
            "ions can only soften a crystal"
        )
    return reasons


def _difference_floor(tensors: dict[str, np.ndarray], upper: str, lower: str) -> float | None:
    """Smallest eigenvalue of ``tensors[upper] - tensors[lower]`` (dielectric: of the 3x3
    matrix; elastic: Kelvin modulus in GPa), or None when either part is absent."""
    a, b = tensors.get(upper), tensors.get(lower)
    if a is None or b is None:
        return None
    eigenvalues = dielectric_eigenvalues if upper.startswith("dielectric") else elastic_eigenvalues
    return float(eigenvalues(np.asarray(a) - np.asarray(b))[0])


def key_problem(doc: DFPTResultDoc) -> str | None:
    """Why ``doc.structure_key`` is not its structure's key (recomputed at
    :data:`KEY_SYMPREC`), or None (also when the result carries no key)."""
    if not doc.structure_key:
        return None
    from atomate2_gmt.tensors.symmetry.analysis import structure_key

    try:
        key = structure_key(doc.get_structure(), symprec=KEY_SYMPREC)
    except (ValueError, KeyError, TypeError) as exc:
        return f"structure_key cannot be recomputed from the structure: {exc}"
    if key != doc.structure_key:
        return (
            f"structure_key {doc.structure_key!r} is not the key of the result's structure "
            f"({doc.get_structure().composition.reduced_formula}: {key!r})"
        )
    return None


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
    try:
        structure = doc.get_structure()
    except (ValueError, KeyError, TypeError) as exc:
        return [f"structure cannot be read: {exc}"]
    quality = production_problems(doc.settings, doc.code, structure)
    if quality:
        return quality
    missing = missing_settings(doc.settings, doc.code)
    if missing:
        return missing
    limits = {**SYMMETRY_TOLERANCE, **(tolerance or {})}
    reasons: list[str] = []
    tensors: dict[str, np.ndarray] = {}
    for part, value in doc.tensors.items():
        arr = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(arr)):
            reasons.append(f"{part}: non-finite components")
            continue
        kind = DFPT_PARTS[part][0]
        asymmetry = index_asymmetry(arr, kind)
        if asymmetry > ASYMMETRY_TOLERANCE:
            reasons.append(
                f"{part}: breaks the index symmetry of a {kind} tensor (relative asymmetry "
                f"{asymmetry:.3g} > {ASYMMETRY_TOLERANCE:g})"
            )
            continue
        bound = physical_bound_problem(part, arr)
        if bound is not None:
            reasons.append(bound)
            continue
        tensors[part] = index_symmetrised(arr, kind)
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
    reasons.extend(part_consistency_problems(tensors))
    problem = key_problem(doc)
    if problem is not None:
        reasons.append(problem)
    return reasons
