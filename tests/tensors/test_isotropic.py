"""The isotropic part of a tensor: a projector onto the O(3)-invariant tensors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from atomate2_gmt.tensors.conventions import rotate
from atomate2_gmt.tensors.isotropic import isotropic_part, isotropic_projector
from atomate2_gmt.tensors.properties import isotropic_elastic_tensor


@pytest.mark.parametrize("order", [2, 3, 4])
def test_projector_is_an_orthogonal_projector(order):
    P = isotropic_projector(order)
    np.testing.assert_allclose(P @ P, P, atol=1e-12)
    np.testing.assert_allclose(P, P.T, atol=1e-12)
    assert round(np.trace(P)) == {2: 1, 3: 0, 4: 3}[order]


@pytest.mark.parametrize("order", [2, 3, 4])
def test_isotropic_part_is_the_same_in_every_frame(order):
    rng = np.random.default_rng(order)
    t = rng.normal(size=(3,) * order)
    iso = isotropic_part(t)
    for seed in range(4):
        R = Rotation.random(random_state=seed).as_matrix() * (-1) ** seed  # proper and improper
        np.testing.assert_allclose(rotate(iso, R), iso, atol=1e-12)  # invariant itself
        np.testing.assert_allclose(isotropic_part(rotate(t, R)), iso, atol=1e-12)
    # it is the average over rotations (Monte Carlo, proper and improper)
    Rs = Rotation.random(4000, random_state=9).as_matrix()
    avg = np.mean([rotate(t, s * R) for R in Rs for s in (1, -1)], axis=0)
    np.testing.assert_allclose(avg, iso, atol=0.06 * np.abs(t).max())


def test_known_isotropic_parts():
    eps = np.diag([2.0, 3.0, 7.0])
    np.testing.assert_allclose(isotropic_part(eps), 4.0 * np.eye(3))
    C = isotropic_elastic_tensor(120.0, 50.0)
    np.testing.assert_allclose(isotropic_part(C), C, atol=1e-10)
    e = np.random.default_rng(0).normal(size=(3, 3, 3))
    assert np.abs(isotropic_part(e)).max() == 0.0
    with pytest.raises(ValueError, match=r"shape \(3, 4\)"):
        isotropic_part(np.zeros((3, 4)))
