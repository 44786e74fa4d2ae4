"""Which crystals are likely metals: a documented chemistry rule, no model.

GMTNet predicts ε∞, e_ij and C_ij as if every crystal were an insulator (its training data are
DFPT results, which exist only for crystals with a band gap). For a metal these numbers mean
nothing, so every prediction document carries ``likely_metal`` and the reason. A crystal is
flagged when any of these holds (checked in this order; the first one found is the reason):

1. **no charge-balanced oxidation states**: pymatgen's ``Composition.oxi_state_guesses`` (common
   oxidation states weighted by their ICSD frequency) finds no assignment with total charge 0,
   as for intermetallics such as Nb4CoSi;
2. **no anion**: the assignment is all zeros and at least one element is a metal (an elemental
   metal or an intermetallic that balances trivially, e.g. Cu, SnSb);
3. **open-shell transition metal in a nitride, carbide or boride**: every anion is N, C or B
   and a transition metal has a partly filled d shell (d1–d9) in the assignment, e.g. Fe²⁺ (d6)
   in FePtN2. Transition-metal nitrides, carbides and borides with an open d shell are metals
   (TiN, VC, Mo2C, …); the semiconducting nitrides have d0/d10 cations (GaN, ZnSnN2, TiCdN2);
4. **odd electron count**: the primitive cell holds an odd number of electrons and no ion with
   an open d or f shell (which could order magnetically and open a gap): band theory then leaves
   a band partly filled.

The measured rates on the shipped MP data are in docs/screening.md (all MP dielectric and piezo
records are insulators with a DFT band gap, so any flag there is a false positive).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from atomate2_gmt.tensors.symmetry.analysis import SymmetryAnalysis

if TYPE_CHECKING:
    from pymatgen.core import Composition, Structure

__all__ = ["MetalCheck", "likely_metal"]

#: Anions whose compounds with open-shell transition metals are metallic (rule 3).
METALLIC_BOND_ANIONS = frozenset({"N", "C", "B"})
#: More distinct elements than this: the oxidation-state search is not attempted (too costly).
MAX_ELEMENTS = 8
#: Reduced formulas with more atoms than this are searched with pymatgen's ``max_sites``.
MAX_SITES = 20


@dataclass(frozen=True)
class MetalCheck:
    """Result of :func:`likely_metal`: the flag, and the reason (None when not flagged or not
    decided; ``likely_metal`` is None when the rule could not be applied)."""

    likely_metal: bool | None
    reason: str | None


def _oxidation_states(composition: Composition) -> dict[str, float] | None:
    """The most probable charge-balanced assignment (element → state), {} if there is none."""
    reduced = composition.reduced_composition
    key = tuple(sorted((str(sp), round(float(n), 8)) for sp, n in reduced.items()))
    return dict(_guess(key))


@lru_cache(maxsize=4096)
def _guess(key: tuple[tuple[str, float], ...]) -> tuple[tuple[str, float], ...]:
    """:func:`_oxidation_states` of the reduced composition ``key`` ((species, amount) pairs,
    sorted), kept per composition: pymatgen's search costs about 0.8 ms, and candidates of a
    screen often share a composition (polymorphs, strained or substituted copies)."""
    from pymatgen.core import Composition

    reduced = Composition(dict(key))
    try:
        if reduced.num_atoms > MAX_SITES:
            guesses = reduced.oxi_state_guesses(max_sites=-MAX_SITES)
        else:
            guesses = reduced.oxi_state_guesses()
    except ValueError:  # pymatgen: the composition cannot be reduced to max_sites
        guesses = reduced.oxi_state_guesses()
    return tuple(guesses[0].items()) if guesses else ()


def _open_d(symbol: str, state: float) -> float | None:
    """d-electron count of a transition metal (groups 3–12) in ``state`` if the shell is open
    (more than 0 and fewer than 10 electrons; a mixed valence such as V4.5+ gives a fractional,
    partly filled shell), else None."""
    from pymatgen.core import Element

    el = Element(symbol)
    if not el.is_transition_metal or el.group > 12:
        return None
    n = el.group - state
    return n if 0 < n < 10 else None


def _open_f(symbol: str, state: float) -> bool:
    """Whether a lanthanide/actinide in ``state`` has a partly filled 4f/5f shell."""
    from pymatgen.core import Element

    el = Element(symbol)
    if not (el.is_lanthanoid or el.is_actinoid):
        return False
    base = 57 if el.is_lanthanoid else 89  # La, Ac: f0 in the +3 state
    n = el.Z - base + 3 - state
    return 0 < n < 14


def _primitive_sites(analysis: SymmetryAnalysis) -> int:
    """Number of sites in the primitive cell: the primitive atoms of the analysis' spglib
    dataset (``mapping_to_primitive``), the cell itself if spglib finds no symmetry."""
    try:
        dataset = analysis.dataset
    except Exception:
        dataset = None
    if dataset is None:
        return len(analysis.structure)
    return len(set(np.asarray(dataset.mapping_to_primitive).tolist()))


def likely_metal(
    structure: Structure, symprec: float = 0.01, analysis: SymmetryAnalysis | None = None
) -> MetalCheck:
    """Apply the rule of this module to an ordered ``structure``; ``symprec`` (Å) is the
    tolerance of the primitive-cell search (rule 4), read from ``analysis`` (the structure's
    :class:`~atomate2_gmt.tensors.symmetry.analysis.SymmetryAnalysis` at ``symprec``, made here
    if None), so the rule adds no symmetry search of its own."""
    comp = structure.composition
    if not structure.is_ordered:
        return MetalCheck(None, None)
    if len(comp.elements) > MAX_ELEMENTS:
        return MetalCheck(None, None)
    states = _oxidation_states(comp)
    if not states:
        return MetalCheck(True, "no charge-balanced oxidation states")
    anions = sorted(el for el, s in states.items() if s < 0)
    if not anions and any(el.is_metal for el in comp.elements):
        return MetalCheck(True, "no anion: metallic elements only")

    def ion(el: str, s: float) -> str:
        return f"{el}{abs(s):.3g}{'+' if s >= 0 else '-'}"

    open_d = {el: n for el, s in states.items() if (n := _open_d(el, s)) is not None}
    if anions and set(anions) <= METALLIC_BOND_ANIONS and open_d:
        kind = {"N": "nitride", "C": "carbide", "B": "boride"}
        what = " and ".join(sorted({kind[a] for a in anions}))
        ions = ", ".join(f"{ion(el, states[el])} (d{n:.3g})" for el, n in sorted(open_d.items()))
        return MetalCheck(True, f"open-shell transition metal in a {what}: {ions}")
    magnetic = bool(open_d) or any(_open_f(el, s) for el, s in states.items())
    if analysis is None:
        analysis = SymmetryAnalysis(structure, symprec)
    elif analysis.structure is not structure or analysis.symprec != symprec:
        raise ValueError("analysis must be of the same structure at the same symprec")
    n_prim = _primitive_sites(analysis)
    electrons = sum(site.specie.Z for site in structure) * n_prim // len(structure)
    if electrons % 2 == 1 and not magnetic:
        return MetalCheck(
            True, f"odd number of electrons ({electrons}) per primitive cell, no magnetic ion"
        )
    return MetalCheck(False, None)
