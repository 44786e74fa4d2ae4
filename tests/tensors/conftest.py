"""Shared fixtures for the tensor-physics tests: small crystals and the shipped MP records."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

DATASETS = Path(__file__).resolve().parents[2] / "src" / "atomate2_gmt" / "data" / "datasets"

TENSOR_FIELD = {
    "dielectric": "eps_total",
    "piezo": "piezo_cartesian_C_m2",
    "elastic": "elastic_voigt_GPa",
}
RESIDUAL_CUT = {"dielectric": 5e-2, "piezo": 1e-2, "elastic": 5e-2}


@cache
def load_records(kind: str) -> list[dict]:
    """The shipped Materials Project records of one tensor kind (gzip JSON list)."""
    with gzip.open(DATASETS / f"mp_legacy_{kind}.json.gz", "rt") as fh:
        return json.load(fh)


def random_orthogonal(rng: np.random.Generator, improper: bool = False) -> np.ndarray:
    """Haar-random rotation (det +1), or minus it (det -1) when ``improper``."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return -q if improper else q


@pytest.fixture(scope="session")
def orthogonal() -> Callable[..., np.ndarray]:
    """``orthogonal(rng, improper=False)``: a random O(3) element."""
    return random_orthogonal


@pytest.fixture(scope="session")
def mp_records() -> Callable[[str], list[dict]]:
    """``mp_records(kind)``: the shipped MP records of one kind."""
    return load_records


@pytest.fixture(scope="session")
def nacl() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


@pytest.fixture(scope="session")
def zno() -> Structure:
    """Wurtzite ZnO, P6_3mc (point group 6mm, polar)."""
    return Structure.from_spacegroup(
        "P6_3mc",
        Lattice.hexagonal(3.25, 5.21),
        ["Zn", "O"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]],
    )


@pytest.fixture(scope="session")
def gaas() -> Structure:
    """Zinc-blende GaAs, F-43m (point group -43m), primitive cell."""
    conv = Structure.from_spacegroup(
        "F-43m", Lattice.cubic(5.65), ["Ga", "As"], [[0, 0, 0], [0.25, 0.25, 0.25]]
    )
    return conv.get_primitive_structure()
