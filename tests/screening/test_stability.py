"""The MLIP energy above the hull (atomate2_gmt.stability): the linear-programming hull agrees
with pymatgen's PhaseDiagram where pymatgen can build one, works without elemental phases, says
when the known phases cannot make a composition; and on the Ga-As system with real CHGNet
energies through atomate2's ForceFieldStaticMaker, the known ground state is on the hull and a
hypothetical rock-salt GaAs is well above it."""

from __future__ import annotations

import pytest
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Lattice, Structure

from atomate2_gmt.stability import (
    energy_above_hull,
    hull_energy,
    known_phases,
    mlip_stability_source,
)


def _phases() -> list[tuple[Composition, float]]:
    return [(Composition({"Ga": c["A"], "As": c["B"]}), e) for c, e in _raw()]


def _raw() -> list[tuple[dict[str, float], float]]:
    """A made-up A-B system: elements at 0, AB and AB3 on the hull, A3B above it."""
    return [
        ({"A": 1, "B": 0}, 0.0),
        ({"A": 0, "B": 1}, 0.0),
        ({"A": 1, "B": 1}, -1.0),
        ({"A": 1, "B": 3}, -0.6),
        ({"A": 3, "B": 1}, -0.4),
    ]


def _pd_e_above_hull(phases, composition, energy_per_atom):
    """pymatgen's answer: the energy minus the phase diagram's hull energy at the composition."""
    diagram = PhaseDiagram([PDEntry(c, e * c.num_atoms) for c, e in phases])
    return energy_per_atom - diagram.get_hull_energy_per_atom(Composition(composition))


@pytest.mark.parametrize(
    ("composition", "energy"),
    [("GaAs", -0.9), ("Ga3As", -0.3), ("GaAs2", -0.5), ("Ga2As", -0.9), ("GaAs3", -0.7)],
)
def test_linear_program_equals_pymatgen_phase_diagram(composition, energy):
    phases = [
        (c, e)
        for c, e in _phases()
        if c.reduced_formula != Composition(composition).reduced_formula
    ]
    ours = energy_above_hull(composition, energy, phases)
    assert ours == pytest.approx(_pd_e_above_hull(phases, composition, energy), abs=1e-9)


def test_hull_mixture_and_values():
    energy, mixture = hull_energy("Ga3As", _phases())
    # Ga3As (-0.4) lies above the AB + A tie line (-0.5 at x_B = 1/4)
    assert energy == pytest.approx(-0.5)
    assert set(mixture) == {0, 2}  # Ga and GaAs
    assert sum(mixture.values()) == pytest.approx(1.0)
    assert energy_above_hull("Ga3As", -0.4, _phases()) == pytest.approx(0.1)
    # below every known mixture: negative (a would-be new ground state)
    assert energy_above_hull("GaAs", -1.2, _phases()) == pytest.approx(-0.2)


def test_hull_without_elemental_phases_and_outside_the_known_span():
    compounds = [(c, e) for c, e in _phases() if len(c.elements) == 2]  # no Ga, no As
    # a polymorph of a known compound: defined without any elemental phase
    assert energy_above_hull("GaAs", -0.95, compounds) == pytest.approx(0.05)
    # between AB and AB3: their tie line
    assert hull_energy("Ga2As3", compounds)[0] == pytest.approx(0.6 * -1.0 + 0.4 * -0.6, abs=1e-9)
    # outside the span of the known compositions (more As than AB3 has): unknown, never 0
    assert energy_above_hull("GaAs4", -0.5, compounds) is None
    # a phase with an element the candidate lacks cannot take part
    assert hull_energy("GaAs", [(Composition("GaN"), -2.0)]) is None


def test_known_phases_are_the_shipped_subsystem():
    phases = known_phases(["Ga", "As"])
    formulas = {p.formula for p in phases}
    assert formulas == {"Ga", "As", "GaAs"}
    assert all(p.elements <= {"Ga", "As"} for p in phases)
    assert "mp-2534" in {p.material_id for p in phases}  # zinc-blende GaAs
    assert len({p.material_id for p in phases}) == len(phases)
    assert all(len(p.structure) <= 2 for p in known_phases(["Ga", "As"], max_sites=2))


def test_stability_source_label():
    assert (
        mlip_stability_source("CHGNet 0.3.0", 6) == "MLIP estimate: CHGNet 0.3.0 vs 6 known phases"
    )
    assert mlip_stability_source("CHGNet 0.3.0", 1).endswith("vs 1 known phase")


@pytest.mark.slow
def test_chgnet_hull_of_gallium_arsenide():
    """Real CHGNet energies of the shipped Ga-As phases (atomate2 ForceFieldStaticMaker)."""
    from jobflow import run_locally

    from atomate2_gmt.jobs.relax import default_phase_maker

    phases = known_phases(["Ga", "As"])
    rocksalt = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.3), ["Ga", "As"], [[0, 0, 0], [0.5] * 3]
    )
    maker = default_phase_maker()
    job = maker.make([*(p.structure for p in phases), rocksalt])
    docs = run_locally(job, ensure_success=True, log=False)[job.uuid][1].output
    energies = [d.output.energy / len(d.output.structure) for d in docs]
    table = [(p.composition, e) for p, e in zip(phases, energies[:-1], strict=True)]
    # the zinc-blende ground state against the other known phases: on the hull (within CHGNet's
    # error of a few meV/atom), and the same number as pymatgen's phase diagram
    zb = next(i for i, p in enumerate(phases) if p.material_id == "mp-2534")
    others = [t for i, t in enumerate(table) if i != zb]
    e_zb = energy_above_hull("GaAs", table[zb][1], others)
    assert e_zb is not None
    assert e_zb < 0.02
    assert e_zb == pytest.approx(_pd_e_above_hull(others, "GaAs", table[zb][1]), abs=1e-9)
    # a hypothetical rock-salt GaAs is far above the hull (DFT: ~0.3 eV/atom)
    e_rs = energy_above_hull("GaAs", energies[-1], table)
    assert e_rs is not None
    assert e_rs > 0.1
