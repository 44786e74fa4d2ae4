"""Thermodynamic stability estimates of crystals no source has computed: the energy above the
convex hull of the phases the project knows, every energy from one interatomic potential.

The known phases are the Materials Project structures shipped with the package
(:func:`known_phases`: the dielectric, piezoelectric and elastic sets, 2.7k materials) whose
elements are a subset of the candidate's, so that a hypothetical wurtzite CuO is compared with the
shipped CuO, Cu2O and Cu phases. The relaxation funnel (:mod:`atomate2_gmt.flows.funnel`)
computes their energies and the candidate's with the same potential (CHGNet by default), and
:func:`energy_above_hull` gives the candidate's distance from the lower hull of those energies.

The hull energy is a small linear program (scipy's HiGHS) rather than pymatgen's
``PhaseDiagram``: a phase diagram needs a reference phase of every element, and the shipped sets
hold elemental phases for 41 elements only (no O, F or Mg), while the hull at the candidate's
composition is defined whenever the known phases span it (e.g. any candidate whose formula the
shipped data has in another structure). Where pymatgen can build the diagram the two agree
(tested). The result is an MLIP estimate against an incomplete set of phases: a phase the
project does not ship cannot lower the hull, so the estimate is a lower bound of the true
distance, on top of the potential's own error (docs/screening.md, Relaxation funnel).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from pymatgen.core import Composition, Structure

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "KnownPhase",
    "energy_above_hull",
    "hull_energy",
    "known_phases",
    "mlip_stability_source",
]


@dataclass(frozen=True)
class KnownPhase:
    """A shipped Materials Project structure (the phases of :func:`known_phases`)."""

    material_id: str
    formula: str
    elements: frozenset[str]
    structure: Structure

    @property
    def composition(self) -> Composition:
        """The structure's composition."""
        return self.structure.composition


@lru_cache(maxsize=1)
def _phases_by_elements() -> dict[frozenset[str], tuple[KnownPhase, ...]]:
    from atomate2_gmt.substitution import shipped_records

    seen: set[str] = set()
    out: dict[frozenset[str], list[KnownPhase]] = {}
    for rec in shipped_records():
        mid = str(rec["material_id"])
        if mid in seen:
            continue
        seen.add(mid)
        structure = Structure.from_dict(rec["structure"])
        elements = frozenset(el.symbol for el in structure.composition.elements)
        phase = KnownPhase(mid, structure.composition.reduced_formula, elements, structure)
        out.setdefault(elements, []).append(phase)
    return {k: tuple(sorted(v, key=lambda p: p.material_id)) for k, v in out.items()}


def known_phases(elements: Iterable[str], max_sites: int | None = None) -> list[KnownPhase]:
    """The shipped Materials Project phases made of a subset of ``elements`` (each material
    once, sorted by id); ``max_sites`` leaves out larger cells (None: all)."""
    wanted = frozenset(str(e) for e in elements)
    return [
        phase
        for key, phases in _phases_by_elements().items()
        if key <= wanted
        for phase in phases
        if max_sites is None or len(phase.structure) <= max_sites
    ]


def hull_energy(
    composition: Composition | str, phases: Sequence[tuple[Composition | str, float]]
) -> tuple[float, dict[int, float]] | None:
    """The lowest energy per atom (eV/atom) at ``composition`` of any mixture of ``phases``
    (``(composition, energy per atom)``), and the mixture (index into ``phases`` → atom
    fraction); None when the phases cannot make the composition.

    This is the lower convex hull of the phases evaluated at the composition: minimise
    Σ x_i E_i over atom fractions x_i ≥ 0 with Σ x_i c_i(el) = c(el) for every element (which
    makes Σ x_i = 1). A phase with an element the composition lacks cannot take part."""
    from scipy.optimize import linprog

    target = Composition(composition).fractional_composition
    elements = sorted(el.symbol for el in target.elements)
    usable: list[int] = []
    columns: list[list[float]] = []
    energies: list[float] = []
    for i, (comp, energy) in enumerate(phases):
        frac = Composition(comp).fractional_composition
        if not {el.symbol for el in frac.elements} <= set(elements) or not np.isfinite(energy):
            continue
        usable.append(i)
        columns.append([float(frac[el]) for el in elements])
        energies.append(float(energy))
    if not usable:
        return None
    a_eq = np.array(columns).T
    b_eq = np.array([float(target[el]) for el in elements])
    result = linprog(np.array(energies), A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if result.status != 0:  # infeasible: the phases do not span the composition
        return None
    mixture = {usable[j]: float(x) for j, x in enumerate(result.x) if x > 1e-9}
    return float(result.fun), mixture


def energy_above_hull(
    composition: Composition | str,
    energy_per_atom: float,
    phases: Sequence[tuple[Composition | str, float]],
) -> float | None:
    """``energy_per_atom`` minus :func:`hull_energy` of ``phases`` at ``composition`` (eV/atom);
    negative when the crystal lies below every mixture of the phases; None when the phases
    cannot make the composition. The crystal itself must not be among ``phases``."""
    hull = hull_energy(composition, phases)
    return None if hull is None else float(energy_per_atom) - hull[0]


def mlip_stability_source(potential: str, n_phases: int) -> str:
    """The ``stability_source`` label of an MLIP estimate, e.g. ``"MLIP estimate: CHGNet
    0.3.0 vs 5 known phases"``."""
    return f"MLIP estimate: {potential} vs {n_phases} known phase{'s' if n_phases != 1 else ''}"
