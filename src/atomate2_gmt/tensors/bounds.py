"""Physical bounds of crystal tensors: the largest value any real material can have, per DFPT
part and per predicted task. A tensor beyond them is a broken model, checkpoint or calculation,
never a discovery: predictions beyond them fail, DFPT results beyond them never become training
data, and a checkpoint whose output scale is beyond them is refused at load.

The bounds, and the reasons for them, belong to the tensor kinds of the task registry
(:class:`atomate2_gmt.tensors.tasks.TensorKind` ``bounded`` and ``part_bounds``); the tables
here are derived from it.
"""

from __future__ import annotations

import numpy as np

from atomate2_gmt.tensors.tasks import KIND_SPECS, TASK_SPECS

__all__ = ["PHYSICAL_BOUNDS", "TASK_BOUNDS", "physical_bound_problem"]

PHYSICAL_BOUNDS: dict[str, tuple[str, float, str]] = {
    part: (kind.bounded, bound, kind.unit_suffix)
    for kind in KIND_SPECS.values()
    for part, bound in kind.part_bounds.items()
}
"""DFPT part → (what is bounded, largest accepted value, units suffix), from the registry."""

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
