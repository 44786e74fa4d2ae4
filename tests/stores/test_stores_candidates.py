"""Candidate sources (folders, lists, stores) and the substitution generator."""

from __future__ import annotations

import time

import numpy as np
import pytest
from maggma.stores import MemoryStore
from pymatgen.core import Lattice, Species, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from tests.structures import ZNO

from atomate2_gmt.candidates import (
    DEFAULT_EXCLUDED_ELEMENTS,
    Candidate,
    as_candidates,
    candidates_from_folder,
    candidates_from_store,
    candidates_from_structures,
    check_structure,
)
from atomate2_gmt.substitution import (
    generate_substitution_candidates,
    known_formula_space_groups,
    substitution_prototypes,
)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "cands"
    d.mkdir()
    ZNO.to(filename=str(d / "ZnO.cif"))
    ZNO.to(filename=str(d / "POSCAR"), fmt="poscar")
    ZNO.to(filename=str(d / "zno.json"))
    (d / "broken.cif").write_text("data_x\n_cell_length_a 3\nthis is not a cif\n")
    (d / "notes.txt").write_text("screening notes")
    disordered = Structure(Lattice.cubic(4), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5] * 3])
    disordered.to(filename=str(d / "disordered.cif"))
    (d / ".hidden.cif").write_text("ignored")
    (d / "sub").mkdir()
    ZNO.to(filename=str(d / "sub" / "deep.cif"))
    return d


def test_folder_reads_good_files_and_explains_bad_ones(folder):
    cands = {c.source: c for c in candidates_from_folder(folder)}
    assert sorted(cands) == ["POSCAR", "ZnO.cif", "broken.cif", "disordered.cif", "notes.txt",
                             "zno.json"]  # fmt: skip
    for name in ("POSCAR", "ZnO.cif", "zno.json"):
        c = cands[name]
        assert c.state == "successful"
        assert c.structure.composition.reduced_formula == "ZnO"
        assert np.isclose(c.structure.volume, ZNO.volume)
        assert c.provenance["file"].endswith(name)
    assert cands["broken.cif"].state == "failed"
    assert "unreadable structure file" in cands["broken.cif"].error
    assert "unreadable structure file" in cands["notes.txt"].error
    assert "disordered" in cands["disordered.cif"].error
    deep = candidates_from_folder(folder, pattern="*.cif", recursive=True)
    assert "sub/deep.cif" in [c.source for c in deep]
    with pytest.raises(ValueError, match="does not exist or is not a folder"):
        candidates_from_folder(folder / "missing")


def test_lists_and_dispatch(folder):
    bad = Structure(Lattice.cubic(3), ["Na", "Na"], [[0, 0, 0], [0.01, 0, 0]])
    cands = candidates_from_structures([ZNO, ZNO.as_dict(), {"not": "a structure"}, bad])
    assert [c.state for c in cands] == ["successful", "successful", "failed", "failed"]
    assert cands[0].source == "structure-0"
    assert "not a Structure dict" in cands[2].error
    assert "Å apart" in cands[3].error
    assert [c.source for c in candidates_from_structures([ZNO], names=["zinc oxide"])] == [
        "zinc oxide"
    ]
    with pytest.raises(ValueError, match="got 2 names for 1 structures"):
        candidates_from_structures([ZNO], names=["a", "b"])
    assert len(as_candidates(folder)) == 6
    assert as_candidates(folder / "ZnO.cif")[0].state == "successful"
    assert as_candidates([ZNO])[0].structure == ZNO
    with pytest.raises(ValueError, match="neither a folder nor a file"):
        as_candidates(folder / "nothing-here")
    with pytest.raises(ValueError, match="candidate source must be"):
        as_candidates(42)


def test_from_store_keeps_ids_and_hull_energies():
    store = MemoryStore("mp", key="material_id")
    store.connect()
    store.update(
        [
            {"material_id": "mp-2133", "structure": ZNO.as_dict(), "energy_above_hull": 0.0},
            {"material_id": "mp-1", "structure": {"garbage": 1}},
            {"material_id": "mp-2", "formula": "no structure"},
        ]
    )
    cands = {c.source: c for c in candidates_from_store(store)}
    assert cands["mp-2133"].state == "successful"
    assert cands["mp-2133"].source_properties == {
        "material_id": "mp-2133",
        "energy_above_hull": 0.0,
    }
    assert "is not a Structure" in cands["mp-1"].error
    assert "has no 'structure' field" in cands["mp-2"].error
    assert [c.source for c in as_candidates(store)] == [c.source for c in cands.values()]


def test_check_structure_reasons():
    assert check_structure(ZNO) is None
    assert "expected a periodic pymatgen Structure" in check_structure("ZnO")
    assert "no sites" in check_structure(Structure(Lattice.cubic(3), [], []))


@pytest.fixture(scope="module")
def generated() -> tuple[list[Candidate], float]:
    start = time.perf_counter()
    cands = generate_substitution_candidates(n=300, seed=0)
    return cands, time.perf_counter() - start


def test_generator_makes_300_new_charge_balanced_crystals(generated):
    cands, _ = generated  # its speed: benchmarks/bench_demo.py
    assert len(cands) == 300
    known = known_formula_space_groups()
    keys = set()
    for c in cands:
        assert c.state == "successful"
        assert check_structure(c.structure) is None
        formula = c.structure.composition.reduced_formula
        sg = SpacegroupAnalyzer(c.structure, symprec=0.01).get_space_group_number()
        assert sg == c.provenance["space_group"]
        assert (formula, sg) not in known  # not already in the shipped MP data
        keys.add((formula, sg))
        assert not set(DEFAULT_EXCLUDED_ELEMENTS) & {el.symbol for el in c.structure.composition}
    assert len(keys) == 300  # no repeats


def test_generated_substitutions_keep_charges_and_scale_volumes(generated):
    cands, _ = generated
    protos = {p.material_id: p for p in substitution_prototypes()}
    for c in cands[:80]:
        prov = c.provenance
        proto = protos[prov["prototype"]]
        assert prov["substitution"]
        mapping = {}
        for old, new in prov["substitution"].items():
            o, n = Species.from_str(old), Species.from_str(new)
            assert o.oxi_state == n.oxi_state  # same-charge substitution
            mapping[o.symbol] = n.symbol
        charges = {mapping.get(el, el): q for el, q in proto.oxidation_states.items()}
        comp = c.structure.composition
        assert sum(amount * charges[el.symbol] for el, amount in comp.items()) == pytest.approx(0)
        guesses = comp.oxi_state_guesses(max_sites=-50)
        assert any(all(g.get(el) == q for el, q in charges.items()) for g in guesses)
        ratio = prov["volume_scale"]
        assert c.structure.volume == pytest.approx(proto.structure.volume * ratio, rel=1e-3)
        assert len(c.structure) == len(proto.structure)


def test_generator_is_seeded_and_varied(generated):
    cands, _ = generated
    again = generate_substitution_candidates(n=40, seed=0)
    assert [c.source for c in again] == [c.source for c in cands[:40]]
    other = generate_substitution_candidates(n=40, seed=1)
    assert [c.source for c in other] != [c.source for c in again]
    prototypes = {c.provenance["prototype_type"] for c in cands}
    assert len(prototypes) >= 10
    assert generate_substitution_candidates(n=0) == []
    with pytest.raises(ValueError, match="unknown element symbols"):
        generate_substitution_candidates(n=5, exclude_elements=["Zz"])
    no_pb = generate_substitution_candidates(n=50, seed=0, exclude_elements=["Pb", "Cd"])
    assert all({"Pb", "Cd"}.isdisjoint(c.structure.symbol_set) for c in no_pb)


def test_substitution_weights_are_pymatgens_for_ions_of_charge_two_or_more():
    from pymatgen.analysis.structure_prediction.substitution_probability import (
        SubstitutionProbability,
    )

    from atomate2_gmt.substitution import _lambda_table

    table = _lambda_table()
    sp = SubstitutionProbability()
    assert len(table) > 100
    assert all(abs(ion.oxi_state) >= 2 for ion in table)  # ±1 ions are not substituted
    assert Species("Na", 1) not in table
    fe, al = Species("Fe", 3), Species("Al", 3)
    assert table[fe][al] == table[al][fe] == pytest.approx(sp.get_lambda(fe, al), abs=0)
    pairs = [(a, b) for a in table for b in table[a]]
    assert all(table[a][b] == sp.get_lambda(a, b) for a, b in pairs[::97])


@pytest.mark.parametrize(
    "statement",
    [
        "import atomate2_gmt.substitution",
        "from atomate2_gmt.substitution import generate_substitution_candidates",
        "import atomate2_gmt.cli.demo",
    ],
)
def test_substitution_and_candidates_import_in_any_order(statement):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", statement], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_store_candidates_carry_source_fields_under_emmet_names():
    """What an MP-style summary gives is carried (emmet's names); what it lacks stays absent;
    a value out of range fails that record alone, naming the field."""
    store = MemoryStore("mp_summary", key="material_id")
    store.connect()
    store.update(
        [
            {
                "material_id": "mp-2133",
                "structure": ZNO.as_dict(),
                "band_gap": 0.73,
                "is_metal": False,
                "formation_energy_per_atom": -1.8,
            },
            {"material_id": "mp-3", "structure": ZNO.as_dict(), "band_gap": -1.0},
        ]
    )
    cands = {c.source: c for c in candidates_from_store(store)}
    props = cands["mp-2133"].source_properties
    assert props == {
        "material_id": "mp-2133",
        "band_gap": 0.73,
        "is_metal": False,
        "formation_energy_per_atom": -1.8,
    }
    assert "energy_above_hull" not in props
    assert cands["mp-3"].state == "failed"
    assert "source field 'band_gap'" in cands["mp-3"].error
