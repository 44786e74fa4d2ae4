"""Point-group exactness: zero and equality success on ideal and distorted MP structures."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Structure

from atomate2_gmt.model.batch import prepare_crystal
from atomate2_gmt.tensors.symmetry import point_group_info, projector
from atomate2_gmt.training.evaluate import symmetry_success
from tests.model.conftest import (
    CRYSTAL_SYSTEMS,
    calibrated_model,
    mp_by_system,
    predict_one,
    prototypes,
)

TASKS = ("dielectric", "piezo", "elastic")


def displaced(structure: Structure, max_shift: float, seed: int) -> Structure:
    """Every atom moved by a random vector of length <= max_shift Å."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(len(structure), 3))
    d *= (rng.random(len(structure)) * max_shift / np.linalg.norm(d, axis=1))[:, None]
    return Structure(
        structure.lattice, structure.species, structure.cart_coords + d, coords_are_cartesian=True
    )


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("distortion", [0.0, 0.005])
def test_zero_and_equality_success_all_crystal_systems(task, distortion):
    model = calibrated_model(task, "float32")
    seen = set()
    for cs in CRYSTAL_SYSTEMS:
        for n, structure in enumerate(mp_by_system(2)[cs]):
            s = displaced(structure, distortion, seed=n) if distortion else structure
            info = point_group_info(s, model.config.symprec)
            seen.add(info.crystal_system)
            T = predict_one(model, s)
            P = projector(model.config.kind, info.ops)
            if np.abs(P).max() > 1e-8:  # else (centrosymmetric piezo) T must vanish
                assert np.abs(T).max() > 1e-3, "tensor too small for the check to mean anything"
            zero_ok, eq_ok = symmetry_success(T, P)
            assert zero_ok, f"{task} {cs} {s.composition.reduced_formula}: zeros"
            assert eq_ok, f"{task} {cs} {s.composition.reduced_formula}: ties"
    assert seen == set(CRYSTAL_SYSTEMS)


def test_without_symmetry_module_distorted_inputs_break_symmetry():
    """Negative control: both projections off, a distorted cubic crystal loses exact zeros/ties."""
    model = calibrated_model(
        "elastic", "float32", feature_projection=False, output_projection=False
    )
    structure = displaced(mp_by_system(2)["cubic"][0] * (2, 1, 1), 0.005, seed=3)
    T = predict_one(model, structure)
    P = prepare_crystal(structure, model.config).output_projector
    assert symmetry_success(T, P) != (True, True)


def test_feature_projection_alone_gives_symmetric_output():
    """The Wigner-D projection of G makes the head's output invariant under the group."""
    model = calibrated_model("piezo", "float64", output_projection=False)
    structure = displaced(prototypes()["wurtzite_ZnO"], 0.005, seed=1)
    T = predict_one(model, structure)
    P = projector("piezo", point_group_info(structure, 0.01).ops)
    sym = (P @ T.reshape(-1)).reshape(T.shape)
    assert np.linalg.norm(T) > 1e-2
    assert np.linalg.norm(T - sym) < 1e-10 * np.linalg.norm(T)


def test_cached_feature_projectors_are_the_exact_projectors(monkeypatch):
    """The Wigner-D projector cache: same values as a fresh computation, computed once per
    operation set, idempotent (P² = P) and commuting with every D(g) of the group."""
    import torch
    from e3nn import o3

    from atomate2_gmt.model import equivariant_symmetry as es
    from tests.model.conftest import mp_by_system, random_orthogonal

    monkeypatch.setattr(es, "_PROJECTOR_CACHE", es.OrderedDict())
    rng = np.random.default_rng(3)
    structures = [s for group in mp_by_system(1).values() for s in group]
    ops = []
    for s in structures:
        R = random_orthogonal(rng, improper=False)
        info = point_group_info(s, 0.01)
        ops += [torch.from_numpy(info.ops), torch.from_numpy(R @ info.ops @ R.T)]
    irreps = o3.Irreps("2x0e + 1x1o + 3x2e + 1x3o + 1x4e")
    calls = []
    original = es._compute_projectors
    monkeypatch.setattr(
        es, "_compute_projectors", lambda o, ll, p: calls.append(len(o)) or original(o, ll, p)
    )
    first = es.irrep_projectors(ops, irreps)
    n_first = sum(calls)
    again = es.irrep_projectors(ops[::-1], irreps)
    assert sum(calls) == n_first  # nothing recomputed
    for lp, P in first.items():
        fresh = original(ops, *lp)
        np.testing.assert_allclose(P.numpy(), fresh.numpy(), atol=1e-12)
        np.testing.assert_allclose(again[lp].numpy(), fresh.numpy()[::-1], atol=1e-12)
        np.testing.assert_allclose((P @ P).numpy(), P.numpy(), atol=1e-10)
    # one group, all (l, p): P commutes with D(g) for each operation g
    g_ops = ops[1].to(torch.float64)
    for ll, p in first:
        for g in g_ops:
            D = o3.Irrep(ll, p).D_from_matrix(g)
            P = first[(ll, p)][1]
            np.testing.assert_allclose((D @ P).numpy(), (P @ D).numpy(), atol=1e-10)
