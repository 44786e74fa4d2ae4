"""Parsing real ABINIT 9.6.2 / anaddb output (tests/dfpt/data/abinit, see its README)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from atomate2_gmt.dfpt.abinit.parse import (
    parse_abinit_dielectric,
    parse_abinit_output,
    parse_anaddb_output,
)
from atomate2_gmt.tensors.conventions import full_to_voigt

DATA = Path(__file__).parent / "data" / "abinit"


@pytest.fixture(scope="module")
def alp():
    return parse_anaddb_output(DATA / "anaddb_alp" / "anaddb.abo")


def test_dielectric_parts(alp):
    eps_inf = alp.tensors["dielectric_electronic"]
    eps_0 = alp.tensors["dielectric_total"]
    np.testing.assert_allclose(np.diag(eps_inf), 8.62618156, atol=1e-8)  # printed values
    np.testing.assert_allclose(np.diag(eps_0), 10.98542721, atol=1e-8)
    np.testing.assert_allclose(alp.tensors["dielectric_ionic"], eps_0 - eps_inf)


def test_elastic_units_and_voigt_order(alp):
    """anaddb prints 10^2 GPa in the order xx, yy, zz, yz, xz, xy (the project's order)."""
    c = full_to_voigt(alp.tensors["elastic_relaxed"], "elastic")
    assert c[0, 0] == pytest.approx(122.04388, abs=1e-4)  # printed 1.2204388 (10^2 GPa)
    assert c[0, 1] == pytest.approx(55.85941, abs=1e-4)
    assert c[3, 3] == pytest.approx(60.4530, abs=1e-3)
    full = alp.tensors["elastic_relaxed"]
    assert full[1, 2, 1, 2] == pytest.approx(c[3, 3])  # C_yzyz = C44, no factor 2
    clamped = full_to_voigt(alp.tensors["elastic_clamped"], "elastic")
    assert clamped[3, 3] > c[3, 3]  # internal relaxation softens the shear modulus


def test_piezo_transposed_and_parts(alp):
    """anaddb prints 6 strain rows × 3 field columns; e_iJ is its transpose."""
    e_total = full_to_voigt(alp.tensors["piezo_total"], "piezo")
    e_clamped = full_to_voigt(alp.tensors["piezo_electronic"], "piezo")
    assert e_total.shape == (3, 6)
    for i, j in ((0, 3), (1, 4), (2, 5)):
        assert e_clamped[i, j] == pytest.approx(0.7, abs=0.01)
        assert e_total[i, j] == pytest.approx(0.061, abs=0.001)
    full = alp.tensors["piezo_total"]
    assert full[0, 1, 2] == full[0, 2, 1] == pytest.approx(e_total[0, 3])
    np.testing.assert_allclose(
        alp.tensors["piezo_ionic"],
        alp.tensors["piezo_total"] - alp.tensors["piezo_electronic"],
    )


def test_born_charges_physical_sign(alp):
    """Al (site 0) is the cation: Z* > 0; charge neutrality imposed."""
    z = alp.born_charges
    assert z.shape == (2, 3, 3)
    assert z[0, 0, 0] == pytest.approx(2.247, abs=1e-3)
    np.testing.assert_allclose(z.sum(axis=0), 0, atol=1e-6)


def test_abinit_output_summaries():
    ok = parse_abinit_output(DATA / "scf_not_converged" / "run.abo")
    assert ok.version == "9.6.2"
    assert ok.unconverged
    assert all("nstep=    3" in m for m in ok.unconverged)
    bad = parse_abinit_output(
        DATA / "kgrid_not_symmetric" / "run.abo", DATA / "kgrid_not_symmetric" / "log"
    )
    assert not bad.completed
    assert any("k point grid is not symmetric" in e for e in bad.errors)


def test_abinit_dielectric_block_matches_anaddb(alp, tmp_path):
    """ε∞ from ABINIT's own output (used for E-field-only runs) equals anaddb's."""
    abo = tmp_path / "run.abo"
    abo.write_bytes(gzip.decompress((DATA / "anaddb_alp" / "run.abo.gz").read_bytes()))
    np.testing.assert_allclose(
        parse_abinit_dielectric(abo), alp.tensors["dielectric_electronic"], atol=1e-8
    )
