"""Point groups, projectors, symmetrisation and the structure correction."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pytest
import spglib
from hypothesis import given, settings
from hypothesis import strategies as st
from pymatgen.core import IStructure, Lattice, Molecule, Structure

from atomate2_gmt.tensors import (
    CRYSTAL_SYSTEM_OF_POINT_GROUP,
    TENSOR_ORDER,
    as_full,
    check_group,
    full_to_voigt,
    intrinsic_projector,
    point_group_info,
    point_group_operations,
    projector,
    refined_structure,
    rotate,
    symmetrize,
    symmetry_residual,
    tie_pairs,
    zero_mask,
)
from atomate2_gmt.tensors.symmetry import angle_tolerance_matters

# Nye, Physical Properties of Crystals (1985), tables of independent components.
PIEZO_RANK = {
    "1": 18, "2": 8, "m": 10, "222": 3, "mm2": 5, "4": 4, "-4": 4, "422": 1, "4mm": 3,
    "-42m": 2, "3": 6, "32": 2, "3m": 4, "6": 4, "-6": 2, "622": 1, "6mm": 3, "-6m2": 1,
    "23": 1, "-43m": 1, "432": 0,
    "-1": 0, "2/m": 0, "mmm": 0, "4/m": 0, "4/mmm": 0, "-3": 0, "-3m": 0, "6/m": 0,
    "6/mmm": 0, "m-3": 0, "m-3m": 0,
}  # fmt: skip
DIELECTRIC_RANK = {
    "triclinic": 6, "monoclinic": 4, "orthorhombic": 3, "tetragonal": 2, "trigonal": 2,
    "hexagonal": 2, "cubic": 1,
}  # fmt: skip
ELASTIC_RANK = {
    **dict.fromkeys(["1", "-1"], 21),
    **dict.fromkeys(["2", "m", "2/m"], 13),
    **dict.fromkeys(["222", "mm2", "mmm"], 9),
    **dict.fromkeys(["4", "-4", "4/m"], 7),
    **dict.fromkeys(["422", "4mm", "-42m", "4/mmm"], 6),
    **dict.fromkeys(["3", "-3"], 7),
    **dict.fromkeys(["32", "3m", "-3m"], 6),
    **dict.fromkeys(["6", "-6", "6/m", "622", "6mm", "-6m2", "6/mmm"], 5),
    **dict.fromkeys(["23", "m-3", "432", "-43m", "m-3m"], 3),
}
# one symmorphic primitive space group per point group
SPACE_GROUP_OF = {
    "1": 1, "-1": 2, "2": 3, "m": 6, "2/m": 10, "222": 16, "mm2": 25, "mmm": 47, "4": 75,
    "-4": 81, "4/m": 83, "422": 89, "4mm": 99, "-42m": 111, "4/mmm": 123, "3": 143, "-3": 147,
    "32": 149, "3m": 156, "-3m": 162, "6": 168, "-6": 174, "6/m": 175, "622": 177, "6mm": 183,
    "-6m2": 187, "6/mmm": 191, "23": 195, "m-3": 200, "432": 207, "-43m": 215, "m-3m": 221,
}  # fmt: skip
LATTICE_OF = {
    "triclinic": Lattice.from_parameters(4.1, 5.3, 6.2, 81.0, 86.0, 97.0),
    "monoclinic": Lattice.from_parameters(4.1, 5.3, 6.2, 90.0, 103.0, 90.0),
    "orthorhombic": Lattice.orthorhombic(4.1, 5.3, 6.2),
    "tetragonal": Lattice.tetragonal(4.1, 6.2),
    "trigonal": Lattice.hexagonal(4.1, 6.2),
    "hexagonal": Lattice.hexagonal(4.1, 6.2),
    "cubic": Lattice.cubic(4.1),
}
POINT_GROUPS = sorted(PIEZO_RANK)


def _sg_type(hall: int) -> Any:
    return spglib.get_spacegroup_type(hall)


def _db_rotations(hall: int) -> np.ndarray:
    db: Any = spglib.get_symmetry_from_database(hall)
    return np.asarray(db["rotations"], dtype=np.float64)


@cache
def _hall_number(sg_number: int) -> int:
    return next(h for h in range(1, 531) if _sg_type(h).number == sg_number)


@cache
def database_ops(point_group: str) -> np.ndarray:
    """Cartesian point-group operations from spglib's database, on a lattice of the system."""
    hall = _hall_number(SPACE_GROUP_OF[point_group])
    assert _sg_type(hall).pointgroup_international == point_group
    rots = _db_rotations(hall)
    a = LATTICE_OF[CRYSTAL_SYSTEM_OF_POINT_GROUP[point_group]].matrix.T
    cart = a @ rots @ np.linalg.inv(a)
    keep = [
        k for k in range(len(cart)) if not np.any(np.all(np.isclose(cart[:k], cart[k]), (1, 2)))
    ]
    return cart[keep]


def _general_structure(point_group: str, seed: int = 0) -> Structure:
    """Three species on general positions of a symmorphic space group with that point group."""
    rng = np.random.default_rng(seed)
    lattice = LATTICE_OF[CRYSTAL_SYSTEM_OF_POINT_GROUP[point_group]]
    return Structure.from_spacegroup(
        SPACE_GROUP_OF[point_group],
        lattice,
        ["Li", "O", "S"],
        list(rng.uniform(0.05, 0.45, (3, 3))),
    )


def _rho(q: np.ndarray, order: int) -> np.ndarray:
    out = q
    for _ in range(order - 1):
        out = np.kron(out, q)
    return out


def _same_op_set(a: np.ndarray, b: np.ndarray, atol: float = 1e-8) -> bool:
    return len(a) == len(b) and all(np.abs(b - g).max(axis=(1, 2)).min() < atol for g in a)


# ----------------------------------------------------------------------------------------------
# the 32 point groups
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("point_group", POINT_GROUPS)
def test_projector_rank_is_textbook_count(point_group: str) -> None:
    ops = database_ops(point_group)
    system = CRYSTAL_SYSTEM_OF_POINT_GROUP[point_group]
    expected = {
        "dielectric": DIELECTRIC_RANK[system],
        "piezo": PIEZO_RANK[point_group],
        "elastic": ELASTIC_RANK[point_group],
    }
    for kind, rank in expected.items():
        p = projector(kind, ops)
        assert np.linalg.matrix_rank(p, tol=1e-8) == rank, kind
        assert np.trace(p) == pytest.approx(rank, abs=1e-9)
        np.testing.assert_allclose(p @ p, p, atol=1e-12)
        np.testing.assert_allclose(p, p.T, atol=1e-14)


@pytest.mark.parametrize("point_group", POINT_GROUPS)
def test_point_group_found_from_structures(point_group: str) -> None:
    s = _general_structure(point_group)
    info = point_group_info(s)
    assert info.point_group == point_group
    assert info.crystal_system == CRYSTAL_SYSTEM_OF_POINT_GROUP[point_group]
    assert info.space_group_number == SPACE_GROUP_OF[point_group]
    assert _same_op_set(info.ops, database_ops(point_group))
    assert _same_op_set(info.ops, point_group_info(s, backend="spglib").ops)
    assert _same_op_set(info.ops, point_group_info(s, backend="native").ops)


def test_intrinsic_projectors_count_index_symmetry() -> None:
    for kind, rank in {"dielectric": 6, "piezo": 18, "elastic": 21}.items():
        p = intrinsic_projector(kind)
        assert np.linalg.matrix_rank(p) == rank
        np.testing.assert_allclose(p @ p, p, atol=1e-14)
        assert not p.flags.writeable
    # the identity group leaves only the intrinsic symmetry
    np.testing.assert_allclose(
        projector("elastic", np.eye(3)[None]), intrinsic_projector("elastic")
    )


@settings(max_examples=25, deadline=None)
@given(
    point_group=st.sampled_from(POINT_GROUPS),
    seed=st.integers(0, 2**32 - 1),
    improper=st.booleans(),
)
def test_projector_of_transformed_crystal_is_transformed_projector(
    orthogonal, point_group: str, seed: int, improper: bool
) -> None:
    q = orthogonal(np.random.default_rng(seed), improper)
    ops = database_ops(point_group)
    moved = np.einsum("ij,njk,lk->nil", q, ops, q)
    for kind, order in TENSOR_ORDER.items():
        rho = _rho(q, order)
        np.testing.assert_allclose(
            projector(kind, moved), rho @ projector(kind, ops) @ rho.T, atol=1e-10
        )


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), improper=st.booleans())
def test_operations_follow_a_rotated_or_reflected_structure(
    orthogonal, gaas: Structure, seed: int, improper: bool
) -> None:
    q = orthogonal(np.random.default_rng(seed), improper)
    moved = Structure(Lattice(gaas.lattice.matrix @ q.T), gaas.species, gaas.frac_coords)
    ops, ops_moved = point_group_operations(gaas), point_group_operations(moved)
    assert _same_op_set(ops_moved, np.einsum("ij,njk,lk->nil", q, ops, q))


# ----------------------------------------------------------------------------------------------
# point_group_info on real cells
# ----------------------------------------------------------------------------------------------
def test_known_crystals(nacl: Structure, gaas: Structure, zno: Structure) -> None:
    for s, pg, system, sg in [
        (nacl, "m-3m", "cubic", 225),
        (gaas, "-43m", "cubic", 216),
        (zno, "6mm", "hexagonal", 186),
    ]:
        info = point_group_info(s)
        assert (info.point_group, info.crystal_system, info.space_group_number) == (pg, system, sg)
        ops = info.ops
        np.testing.assert_array_equal(ops[0], np.eye(3))
        np.testing.assert_allclose(
            np.einsum("nij,nkj->nik", ops, ops), np.broadcast_to(np.eye(3), ops.shape), atol=1e-13
        )
        check_group(ops, atol=1e-10)
    assert point_group_info(nacl).space_group_symbol == "Fm-3m"
    assert point_group_info(IStructure.from_sites(nacl)).point_group == "m-3m"


def test_supercell_keeps_the_full_point_group() -> None:
    # 2x1x1 CsCl: the cell is tetragonal but the crystal is cubic. spglib's dataset lists only
    # the 16 rotations that keep the cell; the crystal's point group has 48.
    cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], np.array([[0, 0, 0], [0.5, 0.5, 0.5]]))
    sup = cscl * (2, 1, 1)
    cell: Any = (sup.lattice.matrix, sup.frac_coords, sup.atomic_numbers)
    ds: Any = spglib.get_symmetry_dataset(cell, symprec=0.01)
    assert len(np.unique(ds.rotations.reshape(-1, 9), axis=0)) == 16
    for backend in ("native", "spglib"):
        info = point_group_info(sup, backend=backend)
        assert info.point_group == "m-3m"
        assert len(info.ops) == 48
        assert _same_op_set(info.ops, point_group_operations(cscl))


def test_slightly_distorted_cell_gives_exact_operations(zno: Structure) -> None:
    rng = np.random.default_rng(5)
    s = Structure(
        Lattice(zno.lattice.matrix + rng.normal(0, 1e-3, (3, 3))),
        zno.species,
        zno.frac_coords + rng.normal(0, 2e-4, (len(zno), 3)),
    )
    info = point_group_info(s)
    assert info.point_group == "6mm"
    assert 1e-5 < info.lattice_defect < 1e-2
    check_group(info.ops, atol=1e-12)
    # at a tolerance below the distortion the symmetry is gone
    assert point_group_info(s, symprec=1e-5).point_group in {"1", "m"}


def test_native_search_agrees_with_spglib_on_shipped_structures(mp_records) -> None:
    # deterministic subsample: every 15th record of each file
    for kind in ("dielectric", "piezo", "elastic"):
        for rec in mp_records(kind)[::15]:
            s = Structure.from_dict(rec["structure"])
            a, b = point_group_info(s, backend="native"), point_group_info(s, backend="spglib")
            assert a.point_group == b.point_group, rec["material_id"]
            assert _same_op_set(a.ops, b.ops, atol=1e-6), rec["material_id"]


def test_angle_tolerance_matters_wherever_spglib_datasets_disagree(mp_records) -> None:
    # shipped structures with a lattice sheared by up to 4 degrees: where spglib's datasets at
    # angle_tolerance -1 and 5 differ, the primitive lattice must be flagged
    rng = np.random.default_rng(4)
    disagree = 0
    for rec in mp_records("elastic")[::25]:
        s = Structure.from_dict(rec["structure"])
        shear = np.eye(3)
        i, j = rng.choice(3, 2, replace=False)
        shear[i, j] = np.tan(np.radians(rng.uniform(0.0, 4.0)))
        cell = (s.lattice.matrix @ shear.T, s.frac_coords, [site.specie.Z for site in s])
        strict = spglib.get_symmetry_dataset(cell, symprec=0.01, angle_tolerance=-1.0)
        loose = spglib.get_symmetry_dataset(cell, symprec=0.01, angle_tolerance=5.0)
        if strict.number != loose.number or not np.array_equal(
            strict.transformation_matrix, loose.transformation_matrix
        ):
            disagree += 1
            assert angle_tolerance_matters(strict.primitive_lattice, 0.01), rec["material_id"]
    assert disagree >= 5
    assert not angle_tolerance_matters(Lattice.tetragonal(3.9, 5.1).matrix, 0.01)
    assert not angle_tolerance_matters(Lattice.hexagonal(3.25, 5.21).matrix, 0.01)
    sheared = np.array(Lattice.tetragonal(3.9, 5.1).matrix)
    sheared[2] += np.tan(np.radians(1.5)) * sheared[2, 2] * np.array([1.0, 0.0, 0.0])
    assert angle_tolerance_matters(sheared, 0.01)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
def test_bad_structures_raise_clear_errors() -> None:
    lat = Lattice.cubic(4.0)
    disordered = Structure(lat, [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]])
    with pytest.raises(ValueError, match="disordered"):
        point_group_info(disordered)
    with pytest.raises(ValueError, match="Molecule"):
        point_group_info(Molecule(["H", "H"], np.array([[0, 0, 0], [0, 0, 0.74]])))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="coordinates contain NaN"):
        point_group_info(Structure(lat, ["Na"], np.array([[np.nan, 0, 0]])))
    with pytest.raises(ValueError, match="closer than symprec"):
        point_group_info(Structure(lat, ["Na", "Na"], np.array([[0, 0, 0], [0, 0, 1e-4]])))
    with pytest.raises(ValueError, match="expected a pymatgen Structure, got dict"):
        point_group_info({"lattice": np.eye(3)})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="symprec must be a positive"):
        point_group_info(Structure(lat, ["Na"], [[0, 0, 0]]), symprec=0.0)
    with pytest.raises(ValueError, match="unknown backend"):
        point_group_info(Structure(lat, ["Na"], [[0, 0, 0]]), backend="ase")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Molecule"):
        refined_structure(Molecule(["H"], [[0, 0, 0]]))  # type: ignore[arg-type]


def test_check_group_rejects_non_groups() -> None:
    four = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="not closed"):
        check_group(np.stack([np.eye(3), four]))
    with pytest.raises(ValueError, match="not orthogonal"):
        check_group(np.stack([np.eye(3), np.diag([1.0, 1.0, 1.1])]))
    with pytest.raises(ValueError, match=r"shape \(n, 3, 3\)"):
        projector("piezo", np.zeros((2, 3)))
    with pytest.raises(ValueError, match="unknown tensor kind"):
        projector("magnetic", np.eye(3)[None])
    with pytest.raises(ValueError, match="not 9, 27 or 81"):
        zero_mask(np.eye(10))


# ----------------------------------------------------------------------------------------------
# symmetrize, zero patterns, ties
# ----------------------------------------------------------------------------------------------
def test_symmetrize_is_invariant_idempotent_and_keeps_form(zno: Structure) -> None:
    rng = np.random.default_rng(2)
    info = point_group_info(zno)
    for kind, shape in [("dielectric", (3, 3)), ("piezo", (3, 6)), ("elastic", (6, 6))]:
        t = rng.normal(size=shape)
        sym = symmetrize(t, zno, kind)
        assert sym.shape == shape
        np.testing.assert_allclose(symmetrize(sym, info, kind), sym, atol=1e-13)
        full = as_full(sym, kind)
        for g in info.ops:
            np.testing.assert_allclose(rotate(full, g), full, atol=1e-12)
        assert symmetry_residual(full, info, kind) < 1e-12
        np.testing.assert_allclose(symmetrize(full, info.ops, kind), full, atol=1e-13)
    batch = rng.normal(size=(4, 3, 6))
    np.testing.assert_allclose(
        symmetrize(batch, info, "piezo"),
        np.stack([symmetrize(b, info, "piezo") for b in batch]),
        atol=1e-13,  # batched and single sums round differently (1e-34 where 0 is exact)
    )
    with pytest.raises(ValueError, match=r"\(3, 3, 3\) \(full\) or \(3, 6\) \(Voigt\)"):
        symmetrize(np.zeros((6, 3)), info, "piezo")


def test_hexagonal_patterns(zno: Structure) -> None:
    p_piezo = projector("piezo", point_group_info(zno))
    # 6mm piezo (c along z): only e31 = e32, e33, e15 = e24 survive
    allowed = {(2, 0), (2, 1), (2, 2), (0, 4), (1, 3)}
    zero_v = full_to_voigt(zero_mask(p_piezo).astype(float), "piezo") > 0.5
    assert {tuple(x) for x in np.argwhere(~zero_v)} == allowed
    pairs = {(i, j, s) for i, j, s in tie_pairs(p_piezo)}
    flat = lambda *idx: int(np.ravel_multi_index(idx, (3, 3, 3)))  # noqa: E731
    assert (flat(2, 0, 0), flat(2, 1, 1), 1) in pairs  # e31 = e32
    assert (flat(0, 0, 2), flat(1, 1, 2), 1) in pairs  # e15 = e24
    # elastic: C11 = C22 and the three-term relation C66 = (C11 - C12) / 2
    c = symmetrize(np.random.default_rng(0).normal(size=(6, 6)), zno, "elastic")
    assert c[0, 0] == pytest.approx(c[1, 1])
    assert c[5, 5] == pytest.approx(0.5 * (c[0, 0] - c[0, 1]))
    assert np.count_nonzero(np.abs(c) > 1e-12) == 12


def test_negated_pairs_in_trigonal_32() -> None:
    # P321 (alpha-quartz class) with a twofold axis along x: e11 = -e12, e14 = -e25
    hall = _hall_number(150)
    rots = _db_rotations(hall)
    a = Lattice.hexagonal(4.9, 5.4).matrix.T
    ops = np.unique(np.round(a @ rots @ np.linalg.inv(a), 12), axis=0)
    p = projector("piezo", ops)
    flat = lambda *idx: int(np.ravel_multi_index(idx, (3, 3, 3)))  # noqa: E731
    pairs = set(tie_pairs(p))
    assert (flat(0, 0, 0), flat(0, 1, 1), -1) in pairs  # e11 = -e12
    assert (flat(0, 1, 2), flat(1, 0, 2), -1) in pairs  # e14 = -e25
    e = symmetrize(np.random.default_rng(4).normal(size=(3, 6)), ops, "piezo")
    assert e[1, 5] == pytest.approx(-e[0, 0])  # e26 = -e11 (tensor components, no factor 2)
    assert np.linalg.matrix_rank(p, tol=1e-8) == 2


def test_cubic_piezo_pattern(gaas: Structure) -> None:
    p = projector("piezo", point_group_info(gaas))
    # primitive fcc cell with cubic axes along x, y, z: only e14 = e25 = e36
    e = symmetrize(np.random.default_rng(1).normal(size=(3, 6)), gaas, "piezo")
    nz = np.argwhere(np.abs(e) > 1e-12)
    assert {tuple(x) for x in nz} == {(0, 3), (1, 4), (2, 5)}
    assert e[0, 3] == pytest.approx(e[1, 4])
    assert e[1, 4] == pytest.approx(e[2, 5])
    assert zero_mask(p).sum() == 27 - 6


# ----------------------------------------------------------------------------------------------
# shipped Materials Project data
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["dielectric", "piezo", "elastic"])
def test_mp_records_are_left_unchanged_within_their_residual(mp_records, kind: str) -> None:
    """|symmetrize(T) - T| / |T| <= bound for every record passing the data set's filter.

    The record's residual r = max_g |g T - T| / |T| was computed with pymatgen's operations
    R_g = A W A^-1. Our operations R'_g differ by at most the lattice defect δ (spectral norm),
    so |ρ(R'_g) - ρ(R_g)| <= k δ (1 + δ)^(k-1) for an order-k tensor. The projector is P_I P_G
    (P_I the index-symmetry projector, P_G the group average, |P_I| <= 1), and
    |P_G T - T| <= mean_g |g' T - T| <= (r + k δ (1 + δ)^(k-1)) |T|. A record that is not
    exactly index-symmetric (the dielectric eps_total, asymmetry a = |T - P_I T| / |T|) adds an
    orthogonal component: |P T - T|^2 = |P_I (P_G T - T)|^2 + |P_I T - T|^2. Hence
    rel <= sqrt(r^2 + a^2) + k δ (1 + δ)^(k-1); 1e-9 absorbs float rounding.
    """
    from tests.tensors.conftest import RESIDUAL_CUT, TENSOR_FIELD

    order = TENSOR_ORDER[kind]
    checked = 0
    for rec in mp_records(kind):
        r = rec["sym_residual"]
        if not r < RESIDUAL_CUT[kind]:
            continue
        s = Structure.from_dict(rec["structure"])
        info = point_group_info(s)
        t = as_full(np.asarray(rec[TENSOR_FIELD[kind]]), kind)
        norm = np.linalg.norm(t)
        rel = np.linalg.norm(symmetrize(t, info, kind) - t) / norm
        asym = np.linalg.norm(t - (intrinsic_projector(kind) @ t.ravel()).reshape(t.shape)) / norm
        d = info.lattice_defect
        bound = np.hypot(r, asym) + order * d * (1 + d) ** (order - 1) + 1e-9
        assert rel <= bound, (rec["material_id"], rel, bound)
        checked += 1
    assert checked > 600


# ----------------------------------------------------------------------------------------------
# refined structure
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make_supercell", [False, True])
def test_refined_structure_is_exactly_symmetric_in_the_same_frame(
    zno: Structure, make_supercell: bool
) -> None:
    rng = np.random.default_rng(11)
    base = zno * (1, 2, 1) if make_supercell else zno.copy()
    base.add_site_property("magmom", list(range(len(base))))
    noisy = Structure(
        Lattice(base.lattice.matrix + rng.normal(0, 5e-4, (3, 3))),
        base.species,
        base.frac_coords + rng.normal(0, 1e-4, (len(base), 3)),
        site_properties=base.site_properties,
    )
    assert point_group_info(noisy).point_group == "6mm"
    assert point_group_info(noisy, symprec=1e-5).point_group != "6mm"
    refined = refined_structure(noisy)
    assert [site.specie for site in refined] == [site.specie for site in noisy]
    assert refined.site_properties["magmom"] == list(range(len(base)))
    # same orientation and sites within the tolerance
    assert np.abs(refined.lattice.matrix - noisy.lattice.matrix).max() < 0.01
    moved = refined.cart_coords - noisy.cart_coords
    assert np.linalg.norm(moved, axis=1).max() < 0.01
    # exactly symmetric: found again at a tiny tolerance, with an ideal lattice
    info = point_group_info(refined, symprec=1e-6, angle_tolerance=-1)
    assert info.point_group == "6mm"
    assert info.lattice_defect < 1e-10
    assert info.space_group_number == 186


def test_point_group_read_from_the_key_dataset_is_the_searched_one(mp_records) -> None:
    """SymmetryAnalysis.point_group_of_dataset (what the screening reader hands the models, so
    that they do not search again) is point_group_info's group at the same tolerances: the
    spglib backend's exactly, the native search's up to round-off, on shipped structures and
    on the same lattices sheared by up to 4 degrees; where the angle tolerance could change the
    lattice operations it is None (the model then searches itself)."""
    from atomate2_gmt.tensors.symmetry.analysis import SymmetryAnalysis

    rng = np.random.default_rng(11)
    used = {False: 0, True: 0}  # sheared → crystals whose dataset gave the point group
    refused = {False: 0, True: 0}
    for kind in ("dielectric", "piezo", "elastic"):
        for rec in mp_records(kind)[::20]:
            s = Structure.from_dict(rec["structure"])
            shear = np.eye(3)
            i, j = rng.choice(3, 2, replace=False)
            shear[i, j] = np.tan(np.radians(rng.uniform(0.0, 4.0)))
            sheared = Structure(Lattice(s.lattice.matrix @ shear.T), s.species, s.frac_coords)
            for is_sheared, structure in ((False, s), (True, sheared)):
                found = SymmetryAnalysis(structure, 0.01).point_group_of_dataset
                if found is None:
                    refused[is_sheared] += 1
                    continue
                used[is_sheared] += 1
                native = point_group_info(structure, backend="native")
                spg = point_group_info(structure, backend="spglib")
                assert found.point_group == native.point_group, rec["material_id"]
                assert _same_op_set(found.ops, native.ops, atol=1e-9), rec["material_id"]
                np.testing.assert_array_equal(found.ops, spg.ops)
                assert (found.symprec, found.angle_tolerance) == (0.01, 5.0)
                assert found.space_group_number == spg.space_group_number
    total = used[False] + refused[False]
    assert used[False] >= 0.9 * total  # nearly every shipped crystal needs no second search
    assert refused[True] > 0  # some sheared lattices do

    # two oxidation states of one element: spglib's cell (by element) and the search (by
    # species) type the sites differently, so the dataset is not used
    mixed = Structure(
        Lattice.cubic(4.2),
        ["Fe2+", "Fe3+", "O2-", "O2-"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0.5]],
    )
    assert SymmetryAnalysis(mixed, 0.01).point_group_of_dataset is None
