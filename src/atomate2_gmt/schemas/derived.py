"""The derived scalars of a predicted tensor: the per-task fields of ``DERIVED_FIELDS``
(:mod:`atomate2_gmt.schemas.fields`) that prediction documents store and index.

Each tensor kind has one function that computes its quantities (:data:`KIND_QUANTITIES`); a
task's fields are those its :class:`~atomate2_gmt.tensors.tasks.TaskSpec` declares, each naming
the quantity it holds (``DerivedField.computes``). Units: dielectric dimensionless, piezo C/m²,
elastic GPa (moduli) and dimensionless (AU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from atomate2_gmt.tensors import properties as props
from atomate2_gmt.tensors.conventions import rotate
from atomate2_gmt.tensors.tasks import task_spec

__all__ = ["KIND_QUANTITIES", "derived_quantities"]

Quantities = tuple[dict[str, Any], dict[str, Any]]
"""(quantity → value, extra values stored beside the fields in the task's sub-document)."""


def _dielectric(tensor: np.ndarray, ieee_rotation: np.ndarray | None) -> Quantities:
    eig = props.dielectric_eigenvalues(tensor)
    quantities = {"mean": props.dielectric_average(tensor), "eig_max": float(eig[-1])}
    return quantities, {"eigenvalues": [float(x) for x in eig]}


def _piezo(tensor: np.ndarray, ieee_rotation: np.ndarray | None) -> Quantities:
    e_long, direction = props.piezo_longitudinal_max(tensor)
    quantities: dict[str, Any] = {
        "e_ij_max": None,
        "e_ij_abs_max": None,
        "e_long_max": e_long,
        "e_norm": props.piezo_norm(tensor),
    }
    extra: dict[str, Any] = {"e_long_direction": [float(x) for x in direction]}
    if ieee_rotation is not None:
        ieee = rotate(tensor, ieee_rotation)
        value, field_dir, strain = props.piezo_principal(ieee)
        quantities["e_ij_max"] = value
        quantities["e_ij_abs_max"] = props.piezo_max_eij(ieee)[0]
        extra["max_direction_ieee"] = [float(x) for x in field_dir]
        extra["strain_for_max_ieee"] = [float(x) for x in strain]
    return quantities, extra


_HILL = ("K_VRH", "G_VRH", "AU")


def _elastic(tensor: np.ndarray, ieee_rotation: np.ndarray | None) -> Quantities:
    quantities: dict[str, Any] = {"born_stable": props.born_stable(tensor)}
    moduli: dict[str, Any]
    try:
        moduli = props.elastic_moduli(tensor)
    except ValueError:  # singular tensor: no Reuss bounds, no VRH moduli
        moduli = dict.fromkeys(_HILL)
    quantities.update(moduli)
    return quantities, {k: v for k, v in moduli.items() if k not in _HILL}  # K_V, K_R, E, ν, ...


KIND_QUANTITIES: dict[str, Callable[[np.ndarray, np.ndarray | None], Quantities]] = {
    "dielectric": _dielectric,
    "piezo": _piezo,
    "elastic": _elastic,
}
"""Tensor kind → the function computing its quantities from (full tensor, IEEE rotation)."""


def derived_quantities(
    task: str, tensor: np.ndarray, ieee_rotation: np.ndarray | None = None
) -> dict[str, Any]:
    """Derived scalars of one task's full tensor: the task's declared fields (those of
    ``DERIVED_FIELDS[task]``) and its kind's extra values.

    Every scalar depends on the crystal alone, not on the orientation of the input: eigenvalues
    and rotation invariants, or (``e_ij_max``, emmet's definition) the tensor rotated to the IEEE
    frame by ``ieee_rotation``; without that rotation ``e_ij_max`` and ``e_ij_abs_max`` are None.
    """
    spec = task_spec(task)
    quantities, extra = KIND_QUANTITIES[spec.kind](tensor, ieee_rotation)
    return {**{f.name: quantities[f.computes] for f in spec.derived}, **extra}
