"""Fixtures for the screening tests: small calibrated models put into the Makers, settings in a
temporary project folder, and real MP structures plus bad inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from pymatgen.core import Lattice, Molecule, Structure

from atomate2_gmt.jobs.predict import GMTPredictMaker
from tests.model.conftest import calibrated_model, mp_by_system

TEST_TASKS = ("dielectric", "piezo", "elastic")


def small_model(task: str) -> Any:
    """A calibrated (untrained, realistic-magnitude) float32 model with a light config."""
    return calibrated_model(task, "float32", scalar_mul=16, vector_mul=4, out_mul=4, node_dim=32)


@dataclass
class SmallModelPredictMaker(GMTPredictMaker):
    """GMTPredictMaker with small models (the overridable ``load_model``); counts loads."""

    def load_model(self, task: str) -> tuple[Any, dict[str, Any]]:
        LOADS.append(task)
        info = {"name": f"small-{task}", "version": "test-1", "checkpoint_hash": None}
        return small_model(task), {**info, "spec": "test"}


LOADS: list[str] = []


@pytest.fixture(autouse=True)
def project(tmp_path, monkeypatch):
    """Settings point at a fresh project folder; no user config file is read."""
    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(tmp_path / "project"))
    monkeypatch.delenv("ATOMATE2_GMT_CONFIG_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.atomate2_gmt.yaml
    monkeypatch.setenv("ATOMATE2_GMT_DEVICE", "cpu")
    LOADS.clear()
    return tmp_path / "project"


@pytest.fixture(scope="session")
def good_structures() -> list[Structure]:
    """Ten real MP structures, several crystal systems."""
    groups = mp_by_system(2)
    return [
        s
        for cs in ("cubic", "hexagonal", "tetragonal", "orthorhombic", "trigonal")
        for s in groups[cs]
    ]


def bad_inputs() -> dict[str, tuple[Any, str]]:
    """Inputs that must fail alone, with (input, expected reason fragment)."""
    nan = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    nan.replace(1, "Cl", [np.nan, 0.5, 0.5])
    return {
        "disordered": (
            Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5] * 3]),
            "disordered",
        ),
        "nan": (nan, "non-finite"),
        "molecule": (
            Molecule(["O", "H", "H"], [[0, 0, 0], [0.76, 0.59, 0], [-0.76, 0.59, 0]]),
            "cannot screen a Molecule",
        ),
        "isolated": (Structure(Lattice.cubic(30.0), ["Na"], [[0, 0, 0]]), "vacuum gap"),
        "unknown_element": (
            Structure(Lattice.cubic(4.0), ["Og", "Cl"], [[0, 0, 0], [0.5] * 3]),
            "unknown element Og",
        ),
    }
