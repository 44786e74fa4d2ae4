"""Physical bounds of crystal tensors: the largest value any real material can have, per DFPT
part and per predicted task. A tensor beyond them is a broken model, checkpoint or calculation,
never a discovery: predictions beyond them fail, DFPT results beyond them never become training
data, and a checkpoint whose output scale is beyond them is refused at load.

- ε∞ eigenvalues ≤ 1000: the largest in the shipped Materials Project data is 381 (a small-gap
  semiconductor, where semi-local DFT overestimates ε∞); the largest measured electronic
  permittivities (PbTe, PbSe) are about 30–40.
- ε0 and ionic eigenvalues ≤ 10⁴: the shipped MP maximum is 427; ferroelectrics and incipient
  ferroelectrics reach a few thousand (BaTiO3, PMN-PT near their transitions).
- piezo |e_ijk| ≤ 100 C/m² for every part: the shipped MP maximum is 48.6 C/m², the largest
  measured values (PMN-PT, PZN-PT single crystals) are about 20–30 C/m².
- elastic |C_ijkl| ≤ 2000 GPa: diamond, the stiffest known material, has C11 ≈ 1080 GPa; the
  shipped MP maxima are 938 GPa (legacy) and 1191 GPa (newer release).
"""

from __future__ import annotations

import numpy as np

from atomate2_gmt.tensors.tasks import TASK_SPECS

__all__ = ["PHYSICAL_BOUNDS", "TASK_BOUNDS", "physical_bound_problem"]

PHYSICAL_BOUNDS: dict[str, tuple[str, float, str]] = {
    "dielectric_electronic": ("eigenvalue", 1e3, ""),
    "dielectric_ionic": ("eigenvalue", 1e4, ""),
    "dielectric_total": ("eigenvalue", 1e4, ""),
    "piezo_electronic": ("component", 100.0, " C/m²"),
    "piezo_ionic": ("component", 100.0, " C/m²"),
    "piezo_total": ("component", 100.0, " C/m²"),
    "elastic_clamped": ("component", 2000.0, " GPa"),
    "elastic_relaxed": ("component", 2000.0, " GPa"),
}
"""DFPT part → (what is bounded, largest accepted value, units suffix); reasons above."""

TASK_BOUNDS: dict[str, str] = {task: s.dfpt_part for task, s in TASK_SPECS.items()}
"""Predicted task → the DFPT part whose bound applies to it (its training part)."""


def physical_bound_problem(name: str, tensor: np.ndarray) -> str | None:
    """Why ``tensor`` (full Cartesian, task units) is beyond the bound of ``name`` (a DFPT part
    of :data:`PHYSICAL_BOUNDS` or a task of :data:`TASK_BOUNDS`), or None."""
    part = TASK_BOUNDS.get(name, name)
    if part not in PHYSICAL_BOUNDS:
        raise ValueError(f"no physical bound for {name!r}")
    what, bound, unit = PHYSICAL_BOUNDS[part]
    arr = np.asarray(tensor, dtype=float)
    if not np.all(np.isfinite(arr)):
        return f"{name}: the tensor is not finite"
    if what == "eigenvalue":
        high = float(np.linalg.eigvalsh(0.5 * (arr + arr.T))[-1])
        if high > bound:
            return (
                f"{name}: largest eigenvalue {high:.4g} > {bound:g}{unit}, beyond any known "
                "material"
            )
        return None
    big = float(np.max(np.abs(arr)))
    if big > bound:
        return (
            f"{name}: a component of magnitude {big:.4g}{unit} > {bound:g}{unit}, beyond any "
            "known material"
        )
    return None
