"""Fixtures for the DFPT backend tests.

ABINIT fixtures run real ABINIT 9.6 (Debian ``abinit``/``abinit-data``) once per session with
the smoke preset and are shared by the tests that read them. Without ``abinit`` on PATH the
tests that need it are skipped with the reason (CI installs it in ``.ci/run``).
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

ABINIT_DATA = Path(__file__).parent / "data" / "abinit"
MP_PIEZO = Path(__file__).parents[2] / "src/atomate2_gmt/data/datasets/mp_legacy_piezo.json.gz"


def _require_abinit() -> None:
    if shutil.which("abinit") is None or not Path("/usr/share/abinit/psp").is_dir():
        pytest.skip("ABINIT not installed (apt-get install abinit abinit-data; .ci/run does it)")


def _si_structure() -> Structure:
    """Diamond Si, a = 5.431 Å (experiment), fcc primitive cell in the standard frame."""
    a = 5.431
    lattice = Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    return Structure(lattice, ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])


def _mp_piezo_record(material_id: str) -> dict:
    """One record of the shipped MP piezo data (structure + e_ijk in its frame, C/m²)."""
    with gzip.open(MP_PIEZO, "rt") as fh:
        return next(r for r in json.load(fh) if r["material_id"] == material_id)


def _rotation_matrix(axis: list[float], angle_deg: float) -> np.ndarray:
    """Proper rotation about ``axis`` by ``angle_deg`` (Rodrigues)."""
    k = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    t = np.radians(angle_deg)
    return np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * kx @ kx


@pytest.fixture(scope="session")
def abinit_si_dielectric(tmp_path_factory: pytest.TempPathFactory):
    """Si ε∞ only (GS + DDK + E-field), smoke preset, through the jobflow Maker."""
    _require_abinit()
    from jobflow import run_locally

    from atomate2_gmt.dfpt.abinit import AbinitDFPTMaker, smoke_settings

    maker = AbinitDFPTMaker(properties=("dielectric",), settings=smoke_settings())
    job = maker.make(_si_structure(), candidate_id="si-test")
    root = tmp_path_factory.mktemp("abinit_si")
    responses = run_locally(job, root_dir=root, create_folders=True, log=False)
    return responses[job.uuid][1].output


@pytest.fixture(scope="session")
def abinit_alp(tmp_path_factory: pytest.TempPathFactory):
    """AlP (mp-1550 as shipped): ε∞/ε0, piezo and elastic, LDA smoke preset."""
    _require_abinit()
    from atomate2_gmt.dfpt.abinit import run_abinit_dfpt, smoke_settings

    structure = Structure.from_dict(_mp_piezo_record("mp-1550")["structure"])
    return run_abinit_dfpt(
        structure,
        ("dielectric_total", "piezo", "elastic"),
        smoke_settings(functional="LDA"),
        tmp_path_factory.mktemp("abinit_alp"),
    )


@pytest.fixture
def require_abinit() -> None:
    """Skip the test when ABINIT is not installed."""
    _require_abinit()


@pytest.fixture
def si_structure() -> Structure:
    """Diamond Si (a = 5.431 Å), fcc primitive cell, standard frame."""
    return _si_structure()


@pytest.fixture
def mp_piezo_record():
    """Function: material_id → record of the shipped MP piezo data."""
    return _mp_piezo_record


@pytest.fixture
def rotation_matrix():
    """Function: (axis, angle in degrees) → proper rotation matrix."""
    return _rotation_matrix
