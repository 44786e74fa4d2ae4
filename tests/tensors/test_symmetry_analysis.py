"""SymmetryAnalysis: one symmetry analysis per (structure, symprec), each fact computed once."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import spglib
from pymatgen.core import Lattice, Structure
from pymatgen.core.tensors import Tensor
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from tests.structures import NACL, ZNO

from atomate2_gmt.substitution import _space_group_number
from atomate2_gmt.tensors.symmetry import (
    ANGLE_TOLERANCE,
    KEY_ANGLE_TOLERANCE,
    SYMPREC,
    SymmetryAnalysis,
    point_group_info,
)
from atomate2_gmt.tensors.symmetry import analysis as analysis_module
from atomate2_gmt.tensors.symmetry import groups as groups_module
from atomate2_gmt.tensors.symmetry import keys as keys_module
from atomate2_gmt.tensors.symmetry.analysis import structure_key


def _sheared_tetragonal() -> Structure:
    """Tetragonal within 5 degrees, monoclinic at spglib's default angle tolerance."""
    s = Structure.from_spacegroup(
        "P4/mmm", Lattice.tetragonal(3.9, 5.1), ["Sr", "Ti"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    shear = np.eye(3)
    shear[0, 2] = np.tan(np.radians(1.5))
    return Structure(Lattice(s.lattice.matrix @ shear.T), s.species, s.frac_coords)


def _cell(s: Structure) -> tuple:
    return (s.lattice.matrix, s.frac_coords, [site.specie.Z for site in s])


def test_policy_is_pymatgens_spacegroup_analyzer_default_and_spglibs_key_default():
    params = inspect.signature(SpacegroupAnalyzer.__init__).parameters
    assert params["symprec"].default == SYMPREC
    assert params["angle_tolerance"].default == ANGLE_TOLERANCE
    assert KEY_ANGLE_TOLERANCE == -1.0
    assert inspect.signature(point_group_info).parameters["symprec"].default == SYMPREC


@pytest.mark.parametrize(
    "structure", [ZNO, NACL, _sheared_tetragonal()], ids=["ZnO", "NaCl", "sheared"]
)
def test_every_fact_equals_its_separate_computation(structure):
    a = SymmetryAnalysis(structure)
    info = point_group_info(structure)
    np.testing.assert_array_equal(a.ops, info.ops)
    assert a.point_group.point_group == info.point_group
    assert a.structure_key == structure_key(structure)
    strict = spglib.get_symmetry_dataset(_cell(structure), symprec=0.01, angle_tolerance=-1)
    assert a.space_group_number == strict.number
    assert a.dataset.number == strict.number
    np.testing.assert_allclose(
        a.ieee_rotation, Tensor.get_ieee_rotation(structure), atol=1e-8, rtol=0
    )
    sga = SpacegroupAnalyzer(structure)
    assert a.symmetry_data.number == sga.get_space_group_number()
    assert a.symmetry_data.point_group == sga.get_point_group_symbol()
    assert a.symmetry_data.crystal_system.value.lower() == sga.get_crystal_system()
    assert a.centrosymmetric == sga.is_laue()


def test_sheared_lattice_keeps_the_two_angle_tolerances_apart():
    a = SymmetryAnalysis(_sheared_tetragonal())
    assert a.point_group.crystal_system == "tetragonal"  # 5 degrees
    assert a.space_group_number is not None
    assert a.space_group_number < 75  # -1: monoclinic or lower
    assert not a.shares_pymatgen_dataset()


def test_each_search_runs_once(monkeypatch):
    calls = {"dataset": 0, "point_group": 0}
    real_dataset, real_pg = keys_module.spglib.get_symmetry_dataset, groups_module._native_search

    def counting_dataset(*args, **kwargs):
        calls["dataset"] += 1
        return real_dataset(*args, **kwargs)

    def counting_pg(*args, **kwargs):
        calls["point_group"] += 1
        return real_pg(*args, **kwargs)

    monkeypatch.setattr(keys_module.spglib, "get_symmetry_dataset", counting_dataset)
    monkeypatch.setattr(groups_module, "_native_search", counting_pg)
    a = SymmetryAnalysis(ZNO)
    for _ in range(2):
        assert a.structure_key.startswith("sk1-")
        assert a.space_group_number == 186
        assert a.ieee_rotation.shape == (3, 3)
        assert a.symmetry_data.symbol == "P6_3mc"
        assert not a.centrosymmetric
    assert calls == {"dataset": 1, "point_group": 1}
    assert a.shares_pymatgen_dataset()  # the IEEE frame came from that one dataset


def test_a_given_point_group_is_used_and_checked(monkeypatch):
    info = point_group_info(NACL)
    monkeypatch.setattr(groups_module, "_native_search", lambda *a: pytest.fail("searched"))
    a = SymmetryAnalysis(NACL, point_group=info)
    assert a.point_group is info
    assert a.symmetry_data.symbol == "Fm-3m"
    with pytest.raises(TypeError, match="point_group must be a PointGroupInfo, got ndarray"):
        SymmetryAnalysis(NACL, point_group=info.ops)  # type: ignore[arg-type]


def test_failures_raise_on_every_access_and_are_not_recomputed(monkeypatch):
    disordered = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]])
    with pytest.raises(ValueError, match="symprec must be positive"):
        _ = SymmetryAnalysis(NACL, symprec=0).structure_key
    a = SymmetryAnalysis(disordered)
    for _ in range(2):
        with pytest.raises(ValueError, match="disordered"):
            _ = a.structure_key
        with pytest.raises(ValueError, match="disordered"):
            _ = a.ops
    monkeypatch.setattr(analysis_module, "spglib_cell", lambda *a: pytest.fail("recomputed"))
    with pytest.raises(ValueError, match="disordered"):
        _ = a.dataset


def test_candidates_space_group_comes_from_the_analysis():
    assert _space_group_number(ZNO, 0.01) == 186
    assert _space_group_number(_sheared_tetragonal(), 0.01) == (
        SymmetryAnalysis(_sheared_tetragonal()).dataset.number
    )
