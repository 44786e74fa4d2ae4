"""structure_key: the same crystal written differently → one key; different crystals → two; the
key from one symmetry dataset equals the key from spglib.standardize_cell."""

from __future__ import annotations

import gzip
import hashlib
import json
from functools import cache
from importlib import resources

import numpy as np
import pytest
import spglib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from atomate2_gmt.data.mp import load_mp
from atomate2_gmt.tensors.symmetry import keys
from atomate2_gmt.tensors.symmetry.analysis import structure_key


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


# ----------------------------------------------------------------------------------------------
# the key from one symmetry dataset equals the key from spglib.standardize_cell
# ----------------------------------------------------------------------------------------------


def _standardize_cell_key(structure: Structure, symprec: float = 0.01) -> str:
    """The key as it was computed before the dataset was shared: spglib.standardize_cell's
    primitive standardised cell, then the same canonicalisation."""
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    frac = np.asarray(structure.frac_coords, dtype=float)
    numbers = np.array([site.specie.Z for site in structure], dtype=np.int64)
    cell = (lattice, frac, numbers)
    std = spglib.standardize_cell(cell, to_primitive=True, no_idealize=False, symprec=symprec)
    if std is not None:
        lattice, frac, numbers = (np.asarray(x) for x in std)
        numbers = numbers.astype(np.int64)
    reduced, frac = keys._niggli_right_handed(np.asarray(lattice, dtype=float), frac)
    sites = keys._canonical_sites(frac, numbers, keys._metric_preserving(reduced))
    payload = repr((keys._lattice_parameters(reduced), sites))
    return f"{keys.KEY_VERSION}-" + hashlib.sha256(payload.encode()).hexdigest()[:32]


@cache
def _shipped_sample(task: str, n: int = 150) -> tuple[Structure, ...]:
    records = load_mp(task).records
    picked = np.random.default_rng(11).choice(
        len(records), size=min(n, len(records)), replace=False
    )
    return tuple(records[i].structure for i in sorted(picked))


def _centring(structure: Structure) -> str:
    dataset = keys.symmetry_dataset(keys.spglib_cell(structure, 0.01), 0.01)
    return str(dataset.international)[0]


@pytest.mark.parametrize("task", ["dielectric", "dielectric_total", "piezo", "elastic"])
def test_key_equals_the_standardize_cell_key_on_shipped_records(task):
    sample = _shipped_sample(task)
    assert [structure_key(s) for s in sample] == [_standardize_cell_key(s) for s in sample]


def test_key_equals_the_standardize_cell_key_on_rewritten_cells():
    sample = _shipped_sample("piezo")
    by_centring = {}
    for s in sample:
        by_centring.setdefault(_centring(s), s)
    assert {"P", "F", "I", "R", "C"} <= set(by_centring)
    rng = np.random.default_rng(3)
    for s in by_centring.values():
        variants = [
            s * (1, 2, 1),
            s * [[1, 1, 0], [0, 1, 0], [0, 0, 1]],
            _rigidly_rotated(s, seed=len(s)),
            _translated_permuted(s, rng.random(3), list(rng.permutation(len(s)))),
        ]
        key = structure_key(s)
        assert [structure_key(v) for v in variants] == [key] * len(variants)
        assert [_standardize_cell_key(v) for v in variants] == [key] * len(variants)


CENTRED = {
    "F": Structure.from_spacegroup(
        "Fd-3m", Lattice.cubic(8.1), ["Mg", "Al", "O"], [[1 / 8] * 3, [1 / 2] * 3, [0.263] * 3]
    ),
    "I": Structure.from_spacegroup(
        "I4/mmm", Lattice.tetragonal(3.9, 13.0), ["Ba", "Fe", "As"],
        [[0, 0, 0], [0, 0.5, 0.25], [0, 0, 0.354]],
    ),
    "A": Structure.from_spacegroup(
        "Amm2", Lattice.orthorhombic(3.99, 5.67, 5.69), ["Ba", "Ti", "O", "O"],
        [[0, 0, 0], [0.5, 0, 0.51], [0.5, 0, 0.21], [0, 0.25, 0.27]],
    ),
    "C": Structure.from_spacegroup(
        "C2/m", Lattice.monoclinic(5.2, 3.1, 6.3, 104.0), ["Li", "Co", "O"],
        [[0, 0, 0], [0, 0, 0.5], [0.27, 0, 0.22]],
    ),
    "R": Structure.from_spacegroup(
        "R-3m", Lattice.hexagonal(4.14, 28.6), ["Bi", "Se", "Se"],
        [[0, 0, 0.4], [0, 0, 0], [0, 0, 0.21]],
    ),
}  # fmt: skip


@pytest.mark.parametrize("letter", sorted(CENTRED))
def test_key_equals_the_standardize_cell_key_for_every_centring(letter):
    conventional = CENTRED[letter]
    primitive = conventional.get_primitive_structure()
    rotated = _rigidly_rotated(primitive, seed=5)
    shuffled = Structure.from_sites(
        [rotated[i] for i in np.random.default_rng(2).permutation(len(rotated))]
    )
    cells = [conventional, primitive, rotated * (2, 1, 1), shuffled]
    assert {_centring(s) for s in cells} == {letter}
    key = _standardize_cell_key(conventional)
    assert [structure_key(s) for s in cells] == [key] * len(cells)
    assert [_standardize_cell_key(s) for s in cells] == [key] * len(cells)


def test_without_a_symmetry_dataset_the_input_cell_is_keyed():
    # two Cl closer than symprec: spglib finds nothing, the key is that of the cell as given
    s = Structure(Lattice.cubic(4), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5] * 3, [0.5, 0.5, 0.5005]])
    assert keys.symmetry_dataset(keys.spglib_cell(s, 0.01), 0.01) is None
    assert structure_key(s) == _standardize_cell_key(s)
    moved = _translated_permuted(s, np.array([0.1, 0.2, 0.3]), [2, 0, 1])
    assert structure_key(moved) == structure_key(s)


def test_an_untabulated_centring_asks_spglib():
    """A dataset whose centring letter the module does not tabulate is keyed through spglib's
    own standardisation, with the same result."""
    import dataclasses

    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0] * 3, [0.5] * 3])
    cell = keys.spglib_cell(s, 0.01)
    ds = keys.symmetry_dataset(cell, 0.01)
    odd = dataclasses.replace(ds, international="B" + ds.international[1:])
    assert keys.key_from_dataset(cell, odd, 0.01) == structure_key(s) == _standardize_cell_key(s)
