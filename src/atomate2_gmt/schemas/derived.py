"""The derived scalars of a predicted tensor: the per-task fields of ``DERIVED_FIELDS``
(:mod:`atomate2_gmt.schemas.fields`) that prediction documents store and index.

Units: dielectric dimensionless, piezo C/m², elastic GPa (moduli) and dimensionless (AU).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["derived_quantities"]


def derived_quantities(
    task: str, tensor: np.ndarray, ieee_rotation: np.ndarray | None = None
) -> dict[str, Any]:
    """Derived scalars of one task's full tensor (the fields of ``DERIVED_FIELDS[task]``).

    Every scalar depends on the crystal alone, not on the orientation of the input: eigenvalues
    and rotation invariants, or (``e_ij_max``, emmet's definition) the tensor rotated to the IEEE
    frame by ``ieee_rotation``; without that rotation ``e_ij_max`` is None.
    """
    from atomate2_gmt.tensors import properties as props
    from atomate2_gmt.tensors.conventions import rotate

    if task in ("dielectric", "dielectric_total"):
        eig = props.dielectric_eigenvalues(tensor)
        return {
            f"{task}_mean": props.dielectric_average(tensor),
            f"{task}_eig_max": float(eig[-1]),
            "eigenvalues": [float(x) for x in eig],
        }
    if task == "piezo":
        e_long, direction = props.piezo_longitudinal_max(tensor)
        out: dict[str, Any] = {
            "e_ij_max": None,
            "e_long_max": e_long,
            "e_long_direction": [float(x) for x in direction],
            "e_norm": props.piezo_norm(tensor),
        }
        if ieee_rotation is not None:
            value, field_dir, strain = props.piezo_principal(rotate(tensor, ieee_rotation))
            out["e_ij_max"] = value
            out["max_direction_ieee"] = [float(x) for x in field_dir]
            out["strain_for_max_ieee"] = [float(x) for x in strain]
        return out
    out = {"born_stable": props.born_stable(tensor)}
    try:
        out.update(props.elastic_moduli(tensor))
    except ValueError:  # singular tensor: no Reuss bounds, no VRH moduli
        out.update(dict.fromkeys(("K_VRH", "G_VRH", "AU")))
    return out
