"""Our tensor helpers that stay hand-written (for speed on the screening path) give pymatgen's
values: rotation, crystal systems of space groups and point groups."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from pymatgen.core.tensors import Tensor
from pymatgen.symmetry.groups import PointGroup, SpaceGroup
from scipy.spatial.transform import Rotation

from atomate2_gmt.tensors.conventions import crystal_system, rotate
from atomate2_gmt.tensors.symmetry import CRYSTAL_SYSTEM_OF_POINT_GROUP, CRYSTAL_SYSTEMS


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("improper", [False, True])
def test_rotate_is_pymatgens_tensor_rotate(order: int, improper: bool) -> None:
    rng = np.random.default_rng(order + 10 * improper)
    r = Rotation.random(random_state=order).as_matrix() * (-1.0 if improper else 1.0)
    t = rng.normal(size=(3,) * order)
    np.testing.assert_allclose(rotate(t, r), np.asarray(Tensor(t).rotate(r)), atol=1e-12)


def test_crystal_system_is_pymatgens_for_every_space_group() -> None:
    # pymatgen's SpaceGroup.crystal_system reads only int_number; building all 230 SpaceGroup
    # objects would take ~8 s, so the property runs on each number directly ...
    for n in range(1, 231):
        expected = SpaceGroup.crystal_system.fget(SimpleNamespace(int_number=n))  # type: ignore[attr-defined]
        assert crystal_system(n) == expected, n
    # ... and on real SpaceGroup objects, one per crystal system
    for n in (1, 14, 62, 99, 160, 186, 225):
        assert crystal_system(n) == SpaceGroup.from_int_number(n).crystal_system


def test_point_group_table_is_pymatgens() -> None:
    assert len(CRYSTAL_SYSTEM_OF_POINT_GROUP) == 32
    assert set(CRYSTAL_SYSTEM_OF_POINT_GROUP.values()) == set(CRYSTAL_SYSTEMS)
    for symbol, system in CRYSTAL_SYSTEM_OF_POINT_GROUP.items():
        assert PointGroup(symbol).crystal_system == system, symbol
