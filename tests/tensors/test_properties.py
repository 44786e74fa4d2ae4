"""Derived quantities on hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.analysis.elasticity import ElasticTensor

from atomate2_gmt.tensors import (
    as_full,
    born_stable,
    compliance_from_elastic,
    dielectric_average,
    dielectric_eigenvalues,
    elastic_eigenvalues,
    elastic_moduli,
    full_to_voigt,
    isotropic_elastic_tensor,
    piezo_d_from_e,
    piezo_max_eij,
    piezo_principal,
    rotate,
)
from atomate2_gmt.tensors.properties import piezo_longitudinal_max


def _cubic(c11: float, c12: float, c44: float) -> np.ndarray:
    v = np.zeros((6, 6))
    v[:3, :3] = c12
    np.fill_diagonal(v[:3, :3], c11)
    v[3, 3] = v[4, 4] = v[5, 5] = c44
    return v


def test_isotropic_tensor_from_k_and_g() -> None:
    k, g = 160.0, 80.0
    c = isotropic_elastic_tensor(k, g)
    v = full_to_voigt(c, "elastic")
    # C11 = K + 4G/3, C12 = K - 2G/3, C44 = G
    np.testing.assert_allclose(v, _cubic(k + 4 * g / 3, k - 2 * g / 3, g), atol=1e-12)
    m = elastic_moduli(c)
    for key in ("K_V", "K_R", "K_VRH"):
        assert m[key] == pytest.approx(k)
    for key in ("G_V", "G_R", "G_VRH"):
        assert m[key] == pytest.approx(g)
    assert m["E"] == pytest.approx(9 * 160 * 80 / (3 * 160 + 80))  # 205.714... GPa
    assert m["nu"] == pytest.approx((3 * 160 - 2 * 80) / (2 * (3 * 160 + 80)))  # 2/7
    assert m["AU"] == pytest.approx(0.0, abs=1e-12)
    # isotropic: invariant under any rotation
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    np.testing.assert_allclose(rotate(c, q), c, atol=1e-10)


def test_cubic_moduli_closed_forms() -> None:
    c11, c12, c44 = 240.0, 130.0, 120.0  # strongly anisotropic (Zener ratio 2.18)
    m = elastic_moduli(_cubic(c11, c12, c44))
    assert m["K_V"] == pytest.approx((c11 + 2 * c12) / 3)
    assert m["K_R"] == pytest.approx((c11 + 2 * c12) / 3)
    g_v = (c11 - c12 + 3 * c44) / 5
    g_r = 5 * (c11 - c12) * c44 / (4 * c44 + 3 * (c11 - c12))
    assert m["G_V"] == pytest.approx(g_v)
    assert m["G_R"] == pytest.approx(g_r)
    assert m["AU"] == pytest.approx(5 * g_v / g_r - 5)
    assert m["AU"] > 0.3


def test_moduli_agree_with_pymatgen_on_shipped_tensors(mp_records) -> None:
    for rec in mp_records("elastic")[::50]:
        v = np.asarray(rec["elastic_voigt_GPa"])
        et = ElasticTensor.from_voigt(v)
        m = elastic_moduli(v)
        assert m["K_VRH"] == pytest.approx(et.k_vrh, rel=1e-9)
        assert m["G_VRH"] == pytest.approx(et.g_vrh, rel=1e-9)
        assert m["AU"] == pytest.approx(et.universal_anisotropy, rel=1e-6, abs=1e-9)
        assert m["nu"] == pytest.approx(et.homogeneous_poisson, rel=1e-9)
        assert m["K_VRH"] == pytest.approx(rec["K_VRH"], rel=1e-3)
        assert m["G_VRH"] == pytest.approx(rec["G_VRH"], rel=1e-3)


def test_every_modulus_is_pymatgens_definition() -> None:
    """All keys equal pymatgen's ElasticTensor properties (E: ``y_mod`` in Pa → GPa) on the
    symmetric part of the Voigt matrix, also for a matrix that is not symmetric."""
    rng = np.random.default_rng(11)
    for trial in range(20):
        a = rng.normal(size=(6, 6))
        v = a @ a.T * 40 + 60 * np.eye(6)
        if trial % 2:
            v = v + rng.normal(size=(6, 6)) * 3  # not symmetric: its symmetric part is used
        et = ElasticTensor.from_voigt(0.5 * (v + v.T))
        m = elastic_moduli(v)
        expected = {
            "K_V": et.k_voigt,
            "K_R": et.k_reuss,
            "K_VRH": et.k_vrh,
            "G_V": et.g_voigt,
            "G_R": et.g_reuss,
            "G_VRH": et.g_vrh,
            "E": et.y_mod / 1e9,
            "nu": et.homogeneous_poisson,
            "AU": et.universal_anisotropy,
        }
        assert set(m) == set(expected)
        for key, value in expected.items():
            assert m[key] == pytest.approx(value, rel=1e-10, abs=1e-12), key


def test_born_stability_cubic_criteria() -> None:
    # cubic stability: C11 - C12 > 0, C11 + 2 C12 > 0, C44 > 0
    assert born_stable(_cubic(240, 130, 120))
    assert not born_stable(_cubic(120, 130, 120))  # C11 < C12: tetragonal shear unstable
    assert not born_stable(_cubic(240, 130, -5))  # negative shear modulus
    assert not born_stable(_cubic(100, -60, 50))  # C11 + 2 C12 < 0: negative bulk modulus
    lam = elastic_eigenvalues(_cubic(240, 130, 120))
    # Kelvin moduli of a cubic crystal: C11 + 2C12 (once), C11 - C12 (twice), 2 C44 (three times)
    np.testing.assert_allclose(lam, sorted([500, 110, 110, 240, 240, 240]))


def test_compliance_inverts_elastic_on_symmetric_strains() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 6))
    c = as_full(a @ a.T * 20 + 100 * np.eye(6), "elastic")
    s = compliance_from_elastic(c)
    sym_id = 0.5 * (
        np.einsum("ik,jl->ijkl", np.eye(3), np.eye(3))
        + np.einsum("il,jk->ijkl", np.eye(3), np.eye(3))
    )
    np.testing.assert_allclose(np.einsum("ijkl,klmn->ijmn", c, s), sym_id, atol=1e-12)
    # engineering compliance = inverse of the Voigt matrix, with factors 2 (and 4) on shears
    eng = np.linalg.inv(full_to_voigt(c, "elastic"))
    factor = np.where(np.arange(6) < 3, 1.0, 2.0)
    np.testing.assert_allclose(
        full_to_voigt(s, "elastic") * np.outer(factor, factor), eng, rtol=1e-10
    )
    with pytest.raises(ValueError, match="singular"):
        compliance_from_elastic(np.zeros((6, 6)))


def test_piezo_d_matches_the_engineering_voigt_route() -> None:
    rng = np.random.default_rng(8)
    e = rng.normal(size=(3, 6))  # C/m^2
    a = rng.normal(size=(6, 6))
    c = a @ a.T * 10 + 150 * np.eye(6)  # GPa
    d = piezo_d_from_e(e, compliance_from_elastic(c))  # pC/N, tensor components
    d_eng = e @ np.linalg.inv(c) * 1e3  # d_iJ = e_iK S_KJ with engineering S: pC/N
    factor = np.where(np.arange(6) < 3, 1.0, 2.0)
    np.testing.assert_allclose(full_to_voigt(d, "piezo") * factor, d_eng, rtol=1e-10)
    # ZnO-like numbers: e33 = 1.32 C/m^2 with S33 ~ 6.9e-3 /GPa alone gives d33 ~ 9 pC/N
    e1 = np.zeros((3, 6))
    e1[2, 2] = 1.32
    s = np.zeros((6, 6))
    s[2, 2] = 6.9e-3
    assert piezo_d_from_e(e1, s)[2, 2, 2] == pytest.approx(1.32 * 6.9)


def test_piezo_maxima() -> None:
    e = np.zeros((3, 6))
    e[2, 2], e[0, 4], e[2, 0] = 1.2, -1.5, 0.3
    value, (i, j) = piezo_max_eij(e)
    assert value == pytest.approx(1.5)
    assert (i, j) == (0, 4)
    assert piezo_max_eij(as_full(e, "piezo"))[0] == pytest.approx(1.5)
    s, direction, strain = piezo_principal(e)
    assert s == pytest.approx(np.linalg.svd(e, compute_uv=False)[0])
    np.testing.assert_allclose(e @ strain, s * direction, atol=1e-12)
    assert np.linalg.norm(direction) == pytest.approx(1.0)


def test_dielectric_eigenvalues_and_average() -> None:
    q = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))[0]
    eps = rotate(np.diag([2.0, 5.0, 11.0]), q)
    np.testing.assert_allclose(dielectric_eigenvalues(eps), [2.0, 5.0, 11.0])
    assert dielectric_average(eps) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="single dielectric tensor"):
        dielectric_average(np.zeros((2, 3, 3)))


def test_longitudinal_maximum_of_a_6mm_tensor() -> None:
    """A 6mm tensor (SiC, mp-11714) whose Newton system is singular at a start direction: the
    maximum is still found (the brute-force maximum over 200 000 directions agrees)."""
    e = np.zeros((3, 3, 3))
    e[0, 0, 2] = e[0, 2, 0] = e[1, 1, 2] = e[1, 2, 1] = -0.06358  # e_15 = e_24
    e[2, 0, 0] = e[2, 1, 1] = 0.01097  # e_31 = e_32
    e[2, 2, 2] = -0.06233  # e_33
    value, n = piezo_longitudinal_max(e)
    rng = np.random.default_rng(0)
    m = rng.normal(size=(200_000, 3))
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    brute = np.einsum("ijk,ni,nj,nk->n", e, m, m, m).max()
    assert value == pytest.approx(brute, rel=1e-6)
    assert np.einsum("ijk,i,j,k->", e, n, n, n) == pytest.approx(value, rel=1e-12)
