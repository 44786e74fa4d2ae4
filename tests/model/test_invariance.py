"""Invariance to atom order, translation and cell choice; batching; float32 vs float64; heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Structure

from atomate2_gmt.model.batch import collate_crystals, prepare_crystal
from tests.model.conftest import calibrated_model, mp_by_system, predict_one, prototypes

TASKS = ("dielectric", "piezo", "elastic")


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def _samples() -> list[Structure]:
    protos = prototypes()
    return [
        protos["wurtzite_ZnO"],
        mp_by_system(2)["monoclinic"][1],
        mp_by_system(2)["triclinic"][0],
        mp_by_system(2)["orthorhombic"][0],
    ]


@pytest.mark.parametrize("task", TASKS)
def test_atom_order_translation_and_supercell_invariance(task):
    model = calibrated_model(task, "float64")
    rng = np.random.default_rng(0)
    for structure in _samples():
        T = predict_one(model, structure)
        perm = rng.permutation(len(structure))
        shuffled = Structure.from_sites([structure[i] for i in perm])
        shifted = structure.copy()
        shifted.translate_sites(range(len(shifted)), rng.random(3), frac_coords=True)
        supercell = structure * (2, 1, 1)
        for other in (shuffled, shifted, supercell):
            assert _rel(predict_one(model, other), T) < 1e-5


def test_primitive_and_conventional_cells_agree():
    model = calibrated_model("elastic", "float64")
    conventional = prototypes()["rocksalt_NaCl"].to_conventional()
    primitive = conventional.get_primitive_structure()
    assert len(conventional) == 4 * len(primitive)
    assert _rel(predict_one(model, conventional), predict_one(model, primitive)) < 1e-5


@pytest.mark.parametrize("task", TASKS)
def test_batch_equals_one_by_one(task):
    model = calibrated_model(task, "float32")
    structures = [s for group in mp_by_system(2).values() for s in group]
    crystals = [prepare_crystal(s, model.config) for s in structures]
    with torch.no_grad():
        batched = model(collate_crystals(crystals, model.dtype)).numpy()
    for crystal, T in zip(crystals, batched, strict=True):
        with torch.no_grad():
            single = model(collate_crystals([crystal], model.dtype)).numpy()[0]
        assert _rel(T, single) < 1e-4  # float32 round-off; the float64 bound is below


@pytest.mark.parametrize("task", TASKS)
def test_float32_equals_float64(task):
    m64 = calibrated_model(task, "float64")
    m32 = calibrated_model(task, "float32")
    m32.load_state_dict(
        {
            k: v.to(torch.float32) if v.is_floating_point() else v
            for k, v in m64.state_dict().items()
        }
    )
    m32.target_scale.copy_(m64.target_scale)
    for structure in _samples():
        a, b = predict_one(m32, structure), predict_one(m64, structure)
        assert _rel(a, b) < 1e-4


@pytest.mark.parametrize("task", TASKS)
def test_basis_evaluation_equals_autograd(task):
    model = calibrated_model(task, "float64")
    batch = collate_crystals([prepare_crystal(s, model.config) for s in _samples()], model.dtype)
    with torch.no_grad():
        G = model.crystal_features(batch)
    G = G.clone().requires_grad_(True)
    basis = model.head(G)
    autograd = model.head.autograd_tensor(G)
    assert torch.allclose(basis, autograd, rtol=1e-12, atol=1e-14 * basis.abs().max().item())
    assert basis.abs().max() > 1e-3


def test_batch_equals_one_by_one_float64():
    model = calibrated_model("elastic", "float64")
    structures = [s for group in mp_by_system(2).values() for s in group]
    crystals = [prepare_crystal(s, model.config) for s in structures]
    with torch.no_grad():
        batched = model(collate_crystals(crystals, model.dtype)).numpy()
        singles = [model(collate_crystals([c], model.dtype)).numpy()[0] for c in crystals]
    for T, single in zip(batched, singles, strict=True):
        assert _rel(T, single) < 1e-10
