"""Voigt orders, full <-> Voigt, rotation and the IEEE frame."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pymatgen.analysis.elasticity import ElasticTensor
from pymatgen.analysis.piezo import PiezoTensor
from pymatgen.core import Lattice, Structure
from pymatgen.core.tensors import Tensor
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from atomate2_gmt.tensors import (
    as_full,
    full_to_voigt,
    ieee_rotation,
    intrinsic_projector,
    kind_of,
    rotate,
    standard_voigt_to_vasp,
    symmetrize,
    to_ieee,
    vasp_voigt_to_standard,
    voigt_to_full,
)
from atomate2_gmt.tensors.conventions import crystal_system, ieee_rotation_from_setting
from atomate2_gmt.tensors.symmetry import CRYSTAL_SYSTEMS

finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False)


def _intrinsic(t: np.ndarray, kind: str) -> np.ndarray:
    return (intrinsic_projector(kind) @ t.ravel()).reshape(t.shape)


def test_kind_of_maps_tasks_and_rejects_unknown() -> None:
    assert kind_of("dielectric_total") == "dielectric"
    assert kind_of("dielectric_ionic") == "dielectric"
    assert kind_of("piezo") == "piezo"
    assert kind_of("elastic") == "elastic"
    with pytest.raises(ValueError, match=r"unknown task 'bulk'.*dielectric.*elastic.*piezo"):
        kind_of("bulk")


def test_voigt_index_layout() -> None:
    e = np.zeros((3, 3, 3))
    e[2, 1, 2] = e[2, 2, 1] = 7.0  # e_zyz -> column yz = 3
    e[0, 0, 1] = e[0, 1, 0] = 5.0  # e_xxy -> column xy = 5
    v = full_to_voigt(e, "piezo")
    assert v.shape == (3, 6)
    assert v[2, 3] == 7.0
    assert v[0, 5] == 5.0
    assert np.count_nonzero(v) == 2
    c = np.zeros((6, 6))
    c[3, 4] = c[4, 3] = 3.0  # C_yz,xz
    full = voigt_to_full(c, "elastic")
    for idx in [(1, 2, 0, 2), (2, 1, 2, 0), (0, 2, 2, 1), (2, 0, 1, 2)]:
        assert full[idx] == 3.0
    assert np.count_nonzero(full) == 8


def test_vasp_order_is_xy_yz_zx() -> None:
    # A piezo tensor with a single shear component e_x,xy: VASP column 3, standard column 5.
    vasp = np.zeros((3, 6))
    vasp[0, 3] = 1.0
    std = vasp_voigt_to_standard(vasp, "piezo")
    assert std[0, 5] == 1.0
    assert np.count_nonzero(std) == 1
    c_vasp = np.zeros((6, 6))
    c_vasp[4, 5] = 2.0  # C_yz,zx in VASP order -> standard (3, 4)
    assert vasp_voigt_to_standard(c_vasp, "elastic")[3, 4] == 2.0
    eps = np.arange(9.0).reshape(3, 3)
    np.testing.assert_array_equal(vasp_voigt_to_standard(eps, "dielectric"), eps)


@settings(max_examples=40, deadline=None)
@given(arrays(float, (3, 3, 3), elements=finite), arrays(float, (3, 3, 3, 3), elements=finite))
def test_round_trips_full_voigt_vasp(e: np.ndarray, c: np.ndarray) -> None:
    e, c = _intrinsic(e, "piezo"), _intrinsic(c, "elastic")
    for t, kind in [(e, "piezo"), (c, "elastic")]:
        v = full_to_voigt(t, kind)
        np.testing.assert_allclose(voigt_to_full(v, kind), t, atol=1e-12)
        vasp = standard_voigt_to_vasp(v, kind)
        np.testing.assert_array_equal(vasp_voigt_to_standard(vasp, kind), v)
        # VASP columns xy, yz, zx are standard columns 5, 3, 4
        np.testing.assert_array_equal(
            vasp[..., 3:], v[..., [5, 3, 4]] if kind == "piezo" else vasp[..., 3:]
        )
    c_vasp = standard_voigt_to_vasp(full_to_voigt(c, "elastic"), "elastic")
    c_std = full_to_voigt(c, "elastic")
    np.testing.assert_array_equal(c_vasp[3:, 3:], c_std[np.ix_([5, 3, 4], [5, 3, 4])])
    # batched
    batch = np.stack([e, 2 * e])
    np.testing.assert_allclose(voigt_to_full(full_to_voigt(batch, "piezo"), "piezo"), batch)


def test_full_to_voigt_averages_index_partners() -> None:
    e = np.zeros((3, 3, 3))
    e[0, 1, 2] = 1.0  # e_xyz without its partner e_xzy
    assert full_to_voigt(e, "piezo")[0, 3] == 0.5
    eps = np.array([[1.0, 2.0, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(
        voigt_to_full(eps, "dielectric"), full_to_voigt(eps, "dielectric")
    )
    assert voigt_to_full(eps, "dielectric")[0, 1] == 1.0


def test_elastic_voigt_matches_pymatgen() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 6))
    voigt = a + a.T
    np.testing.assert_allclose(voigt_to_full(voigt, "elastic"), ElasticTensor.from_voigt(voigt))
    e = rng.normal(size=(3, 6))
    np.testing.assert_allclose(voigt_to_full(e, "piezo"), PiezoTensor.from_voigt(e))


def test_bad_shapes_and_values_raise() -> None:
    with pytest.raises(ValueError, match=r"Voigt piezo matrix must have shape \(3, 6\)"):
        voigt_to_full(np.zeros((6, 3)), "piezo")
    with pytest.raises(ValueError, match="NaN"):
        full_to_voigt(np.full((3, 3), np.nan), "dielectric")
    with pytest.raises(ValueError, match="unknown tensor kind 'bulk'"):
        full_to_voigt(np.zeros((3, 3)), "bulk")
    with pytest.raises(ValueError, match=r"\(3, 3, 3, 3\) \(full\) or \(6, 6\) \(Voigt\)"):
        as_full(np.zeros((3, 6)), "elastic")


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), improper=st.booleans())
def test_rotation_is_a_representation(orthogonal, seed: int, improper: bool) -> None:
    rng = np.random.default_rng(seed)
    r1, r2 = orthogonal(rng, improper), orthogonal(rng)
    t = rng.normal(size=(3, 3, 3, 3))
    np.testing.assert_allclose(rotate(rotate(t, r1), r2), rotate(t, r2 @ r1), atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(rotate(t, r1)), np.linalg.norm(t))
    eps = rng.normal(size=(3, 3))
    np.testing.assert_allclose(rotate(eps, r1), r1 @ eps @ r1.T, atol=1e-12)


def test_inversion_flips_odd_order_tensors_only() -> None:
    # Polar tensors: under inversion an odd-order tensor changes sign (no det(R) factor),
    # which is why centrosymmetric crystals have no piezoelectricity.
    rng = np.random.default_rng(0)
    e, c = rng.normal(size=(3, 3, 3)), rng.normal(size=(3, 3, 3, 3))
    np.testing.assert_allclose(rotate(e, -np.eye(3)), -e)
    np.testing.assert_allclose(rotate(c, -np.eye(3)), c)


def test_rotate_rejects_non_orthogonal() -> None:
    with pytest.raises(ValueError, match="not orthogonal"):
        rotate(np.eye(3), np.diag([1.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"shape \(3, 3, \.\.\., 3\)"):
        rotate(np.zeros((3, 6)), np.eye(3))


def test_to_ieee_agrees_with_pymatgen_and_is_frame_independent(zno: Structure, orthogonal) -> None:
    rng = np.random.default_rng(7)
    c = symmetrize(rng.normal(size=(6, 6)) * 30 + 200 * np.eye(6), zno, "elastic")
    q = orthogonal(rng)
    rotated = Structure(Lattice(zno.lattice.matrix @ q.T), zno.species, zno.frac_coords)
    c_rot = rotate(as_full(c, "elastic"), q)
    ieee = to_ieee(c_rot, rotated, "elastic")
    expected = ElasticTensor.from_voigt(full_to_voigt(c_rot, "elastic")).convert_to_ieee(rotated)
    np.testing.assert_allclose(ieee, expected, atol=1e-8)
    # same tensor expressed in another frame -> same IEEE tensor
    np.testing.assert_allclose(ieee, to_ieee(c, zno, "elastic"), atol=1e-6)
    # IEEE frame of a hexagonal crystal: c along z -> transversely isotropic pattern
    v = full_to_voigt(ieee, "elastic")
    assert v[0, 0] == pytest.approx(v[1, 1])
    assert v[5, 5] == pytest.approx(0.5 * (v[0, 0] - v[0, 1]))
    assert abs(v[0, 3]) < 1e-8
    assert abs(v[2, 5]) < 1e-8
    r = ieee_rotation(rotated)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(rotate(c_rot, r), ieee, atol=1e-8)


def test_to_ieee_piezo_matches_pymatgen(zno: Structure) -> None:
    e = symmetrize(np.random.default_rng(1).normal(size=(3, 6)), zno, "piezo")
    expected = PiezoTensor.from_voigt(e).convert_to_ieee(zno)
    np.testing.assert_allclose(to_ieee(e, zno, "piezo"), expected, atol=1e-10)


@cache
def _structures_by_crystal_system(
    load_records: Callable[[str], list[dict]], per_system: int = 5
) -> dict[str, list[Structure]]:
    """The first shipped MP structures of each crystal system (pymatgen's classification)."""
    found: dict[str, list[Structure]] = {}
    for kind in ("piezo", "elastic", "dielectric"):
        for rec in load_records(kind):
            s = Structure.from_dict(rec["structure"])
            system = SpacegroupAnalyzer(s).get_crystal_system()
            if len(found.setdefault(system, [])) < per_system:
                found[system].append(s)
            if len(found) == 7 and all(len(v) == per_system for v in found.values()):
                return found
    return found


@pytest.mark.parametrize("system", CRYSTAL_SYSTEMS)
def test_ieee_rotation_from_setting_reproduces_pymatgen(
    system: str, orthogonal, mp_records
) -> None:
    rng = np.random.default_rng(CRYSTAL_SYSTEMS.index(system))
    structures = _structures_by_crystal_system(mp_records)[system]
    assert len(structures) == 5
    for s in structures:
        q = orthogonal(rng)
        for t in (s, Structure(Lattice(s.lattice.matrix @ q.T), s.species, s.frac_coords)):
            sga = SpacegroupAnalyzer(t)
            assert crystal_system(sga.get_space_group_number()) == system
            r = ieee_rotation_from_setting(
                t.lattice.matrix, sga.get_symmetry_dataset().transformation_matrix, system
            )
            expected = Tensor.get_ieee_rotation(t, refine_rotation=True)
            np.testing.assert_allclose(r, expected, atol=1e-8, rtol=0)
            np.testing.assert_allclose(r, ieee_rotation(t), atol=1e-8, rtol=0)


def test_crystal_system_of_space_group_numbers() -> None:
    bounds = {1: "triclinic", 2: "triclinic", 3: "monoclinic", 15: "monoclinic"}
    bounds |= {16: "orthorhombic", 74: "orthorhombic", 75: "tetragonal", 142: "tetragonal"}
    bounds |= {143: "trigonal", 167: "trigonal", 168: "hexagonal", 194: "hexagonal"}
    bounds |= {195: "cubic", 230: "cubic"}
    assert {n: crystal_system(n) for n in bounds} == bounds
    for bad in (0, 231, 12.5):
        with pytest.raises(ValueError, match="invalid space group"):
            crystal_system(bad)  # type: ignore[arg-type]
