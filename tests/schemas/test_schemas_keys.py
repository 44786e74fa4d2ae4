"""structure_key: the same crystal written differently → one key; different crystals → two."""

from __future__ import annotations

import gzip
import json
from importlib import resources

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from atomate2_gmt.schemas.keys import structure_key


def _mp_structures(n: int) -> list[Structure]:
    path = resources.files("atomate2_gmt.data") / "datasets" / "mp_legacy_piezo.json.gz"
    with path.open("rb") as fh, gzip.open(fh, "rt") as gz:
        records = json.load(gz)
    picked = [r for r in records if len(r["structure"]["sites"]) <= 12][:n]
    return [Structure.from_dict(r["structure"]) for r in picked]


MP = _mp_structures(12)
WURTZITE = Structure.from_spacegroup(
    "P6_3mc", Lattice.hexagonal(3.25, 5.21), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]]
)
TRICLINIC = Structure(
    Lattice.from_parameters(4.1, 5.3, 6.2, 81.0, 95.0, 103.0),
    ["Li", "Mn", "O", "O", "O"],
    [
        [0.02, 0.03, 0.05],
        [0.41, 0.22, 0.57],
        [0.13, 0.61, 0.33],
        [0.72, 0.38, 0.81],
        [0.3, 0.9, 0.1],
    ],
)


def _rigidly_rotated(s: Structure, seed: int) -> Structure:
    r = Rotation.random(random_state=seed).as_matrix()
    return Structure(s.lattice.matrix @ r.T, s.species, s.frac_coords)


def _translated_permuted(s: Structure, shift: np.ndarray, perm: list[int]) -> Structure:
    t = s.copy()
    t.translate_sites(list(range(len(t))), shift, frac_coords=True, to_unit_cell=True)
    return Structure.from_sites([t[i] for i in perm])


@pytest.mark.parametrize("s", [WURTZITE, TRICLINIC, *MP], ids=lambda s: s.formula)
def test_invariant_to_how_the_cell_is_written(s):
    key = structure_key(s)
    rng = np.random.default_rng(len(s))
    perm = list(rng.permutation(len(s)))
    variants = [
        _translated_permuted(s, rng.random(3), perm),
        s * (2, 1, 1),
        s * [[1, 1, 0], [0, 1, 0], [0, 0, 2]],  # a sheared supercell
        _rigidly_rotated(s, seed=len(s)),
        # the round-off of a structure file written with 8 decimals
        Structure(
            s.lattice, s.species, s.frac_coords + 1e-9 * rng.standard_normal(s.frac_coords.shape)
        ),
    ]
    assert [structure_key(v) for v in variants] == [key] * len(variants)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shift=st.lists(st.floats(-3, 3, allow_nan=False), min_size=3, max_size=3),
    seed=st.integers(0, 10_000),
)
def test_invariant_to_random_origin_order_and_orientation(shift, seed):
    rng = np.random.default_rng(seed)
    s = TRICLINIC
    moved = _translated_permuted(s, np.array(shift), list(rng.permutation(len(s))))
    assert structure_key(_rigidly_rotated(moved, seed)) == structure_key(s)


def test_different_crystals_get_different_keys():
    base = structure_key(WURTZITE)
    strained = WURTZITE.copy()
    strained.scale_lattice(WURTZITE.volume * 1.02)
    swapped = WURTZITE.copy()
    swapped.replace_species({"Zn": "Cd"})
    moved = WURTZITE.copy()
    moved.translate_sites([1], [0, 0, 0.02])  # u parameter 0.382 → 0.402
    mirror = Structure(
        TRICLINIC.lattice.matrix @ np.diag([1.0, 1.0, -1.0]),
        TRICLINIC.species,
        TRICLINIC.frac_coords,
    )
    keys = [base, structure_key(strained), structure_key(swapped), structure_key(moved)]
    assert len(set(keys)) == 4
    assert structure_key(mirror) != structure_key(TRICLINIC)  # enantiomorphs differ
    assert len({structure_key(s) for s in MP}) == len(MP)


def test_key_format_and_oxidation_states_ignored():
    key = structure_key(WURTZITE)
    assert key.startswith("sk1-")
    assert len(key) == 4 + 32
    decorated = WURTZITE.copy()
    decorated.add_oxidation_state_by_element({"Zn": 2, "O": -2})
    assert structure_key(decorated) == key


def test_bad_structures_raise_value_errors():
    disordered = Structure(Lattice.cubic(4), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5] * 3])
    with pytest.raises(ValueError, match="disordered"):
        structure_key(disordered)
    with pytest.raises(ValueError, match="symprec must be positive"):
        structure_key(WURTZITE, symprec=0)
