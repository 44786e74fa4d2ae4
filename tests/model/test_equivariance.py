"""O(3) equivariance of the whole pipeline (graph, symmetry, model, head), untrained weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from atomate2_gmt.model.config import GMTNetConfig
from tests.model.conftest import (
    calibrated_model,
    mp_by_system,
    predict_one,
    prototypes,
    random_orthogonal,
    rotate_tensor,
    transform,
)
from tests.model.test_expressiveness import point_group_crystal

TASKS = ("dielectric", "piezo", "elastic")


def _exact_structures():
    """Crystals built exactly from their space groups, all seven crystal systems."""
    protos = prototypes()
    built = [point_group_crystal(pg) for pg in ("1", "2", "mm2", "-42m", "3m", "6mm", "23")]
    centro = Structure.from_spacegroup(
        "P2_1/c",
        Lattice.from_parameters(4.1, 4.6, 5.2, 90, 101, 90),
        ["Zn", "O"],
        [[0.13, 0.27, 0.41], [0.31, 0.07, 0.22]],
    )
    return [
        protos["zincblende_GaAs"],
        protos["wurtzite_ZnO"],
        protos["rocksalt_NaCl"],
        centro,
        *built,
    ]


def _structures():
    protos = prototypes()
    picks = [protos["zincblende_GaAs"], protos["wurtzite_ZnO"], protos["rocksalt_NaCl"]]
    return picks + [group[0] for group in mp_by_system(2).values()]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(("dtype", "tol"), [("float64", 1e-10), ("float32", 1e-4)])
def test_predict_of_transformed_structure_is_transformed_prediction(task, dtype, tol):
    model = calibrated_model(task, dtype)
    rng = np.random.default_rng(123)
    worst = 0.0
    structures = _structures()
    if dtype == "float64":
        # exact to float64 needs exactly built inputs: MP lattices are stored to 1e-6 Å, and
        # operations within 1e-6 of exact values are snapped in the frame they are aligned with
        # (tensors.symmetry.snap_operations), which is frame-dependent at that ~1e-7 level
        structures = _exact_structures()
    for n, structure in enumerate(structures):
        R = random_orthogonal(rng, improper=bool(n % 2))  # rotations AND reflections
        T = predict_one(model, structure)
        T_rot = predict_one(model, transform(structure, R))
        expected = rotate_tensor(T, R)
        scale = np.linalg.norm(expected)
        if scale < 1e-12:  # symmetry-forbidden (e.g. centrosymmetric piezo): both must vanish
            assert np.linalg.norm(T_rot) < 1e-12
            continue
        worst = max(worst, np.linalg.norm(T_rot - expected) / scale)
    assert worst < tol, f"{task} {dtype}: relative equivariance error {worst:.2e}"


def test_equivariance_test_detects_a_frame_error():
    """Negative control: comparing without rotating the tensor back must fail."""
    model = calibrated_model("dielectric", "float64")
    structure = mp_by_system(2)["triclinic"][0]
    R = random_orthogonal(np.random.default_rng(5), improper=True)
    T = predict_one(model, structure)
    T_rot = predict_one(model, transform(structure, R))
    assert np.linalg.norm(T_rot - T) / np.linalg.norm(T) > 1e-3


@pytest.mark.parametrize("task", ["dielectric", "elastic"])
def test_invariant_shortcut_keeps_exact_equivariance_and_reaches_the_output(task):
    """The pooled invariant features added to G's scalar channels: still exactly O(3)-equivariant
    (rotations and reflections, float64), and they do change the prediction."""
    model = calibrated_model(task, "float64", invariant_shortcut=True)
    assert model.shortcut is not None
    rng = np.random.default_rng(7)
    for n, structure in enumerate(_exact_structures()):
        R = random_orthogonal(rng, improper=bool(n % 2))
        expected = rotate_tensor(predict_one(model, structure), R)
        T_rot = predict_one(model, transform(structure, R))
        assert np.linalg.norm(T_rot - expected) <= 1e-10 * np.linalg.norm(expected)
    structure = prototypes()["rocksalt_NaCl"]
    before = predict_one(model, structure)
    with torch.no_grad():
        model.shortcut[-1].bias.add_(1.0)
    assert np.linalg.norm(predict_one(model, structure) - before) > 1e-3 * np.linalg.norm(before)


def test_invariant_shortcut_is_refused_for_piezo():
    with pytest.raises(ValueError, match="no scalar"):
        GMTNetConfig(task="piezo", invariant_shortcut=True)
