"""Baselines: the invariant Voigt model (negative control), its group-averaged variant,
checkpoints of both, and the four-model comparison harness (tiny models, few records)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.model.conftest import mp_by_system, random_orthogonal, rotate_tensor, transform

import atomate2_gmt
from atomate2_gmt.model.baselines import (
    INVARIANT_ARCH,
    InvariantTensorNet,
    independent_voigt_basis,
)
from atomate2_gmt.model.batch import collate_crystals, prepare_crystal
from atomate2_gmt.model.checkpoint import load_checkpoint, save_checkpoint
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.factory import build_model
from atomate2_gmt.model.gmtnet import GMTNet
from atomate2_gmt.tensors.conventions import FULL_SHAPE, full_to_voigt, voigt_to_full
from atomate2_gmt.tensors.metrics import equality_success, symmetry_violation, zero_success
from atomate2_gmt.training import baselines as harness
from atomate2_gmt.training.trainer import Trainer

SMALL = {
    "node_dim": 32,
    "rbf_bins": 64,
    "scalar_mul": 8,
    "vector_mul": 2,
    "out_mul": 4,
    "radial_hidden": 16,
}
KINDS = ("dielectric", "piezo", "elastic")
N_INDEPENDENT = {"dielectric": 6, "piezo": 18, "elastic": 21}
PRETRAINED = sorted((Path(atomate2_gmt.__file__).parent / "pretrained").glob("*.pt"))


def _structures() -> list:
    return [s for group in mp_by_system(2).values() for s in group]


def _invariant(task: str, averaged: bool, scale: float = 10.0) -> InvariantTensorNet:
    """An untrained float64 invariant model with outputs of realistic size (|T| ~ ``scale``)."""
    torch.manual_seed(5)
    cfg = GMTNetConfig(task=task, dtype="float64", output_projection=averaged, **SMALL)
    model = InvariantTensorNet(cfg).eval()
    model.target_scale.fill_(scale)
    return model


def _predict(model: GMTNet, structures: list) -> tuple[np.ndarray, list[np.ndarray]]:
    crystals = [prepare_crystal(s, model.config) for s in structures]
    with torch.no_grad():
        out = model(collate_crystals(crystals, model.dtype)).numpy()
    return out, [c.output_projector for c in crystals]


@pytest.mark.parametrize("kind", KINDS)
def test_voigt_basis_is_the_project_convention(kind):
    A = independent_voigt_basis(kind)
    assert A.shape == (3 ** len(FULL_SHAPE[kind]), N_INDEPENDENT[kind])
    assert np.linalg.matrix_rank(A) == N_INDEPENDENT[kind]  # independent components
    y = np.random.default_rng(0).normal(size=N_INDEPENDENT[kind])
    full = (A @ y).reshape(FULL_SHAPE[kind])
    # the assembled tensor has the intrinsic symmetry: Voigt → full round-trips exactly
    np.testing.assert_allclose(voigt_to_full(full_to_voigt(full, kind), kind), full, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_invariant_output_shape_units_and_it_is_not_equivariant(kind):
    """Negative control: the invariant model gives a rotated crystal the same Voigt numbers, so
    its prediction does not rotate with the crystal (GMTNet's does, tests/model)."""
    model = _invariant(kind, averaged=False)
    structure = mp_by_system(2)["orthorhombic"][0]
    R = random_orthogonal(np.random.default_rng(1), improper=False)
    (T, T_rot), _ = _predict(model, [structure, transform(structure, R)])
    assert T.shape == FULL_SHAPE[kind]
    assert T.dtype == np.float64
    # units: the output is linear in target_scale (the RMS of the training targets, task units)
    model.target_scale.fill_(20.0)
    np.testing.assert_allclose(_predict(model, [structure])[0][0], 2 * T, rtol=1e-12)
    # invariant: same numbers in the rotated frame ...
    np.testing.assert_allclose(full_to_voigt(T_rot, kind), full_to_voigt(T, kind), atol=1e-8)
    # ... hence not the rotated tensor that an equivariant model must return
    err = np.linalg.norm(T_rot - rotate_tensor(T, R)) / np.linalg.norm(T)
    assert err > 0.05


@pytest.mark.parametrize("kind", KINDS)
def test_group_averaged_invariant_is_symmetry_exact(kind):
    """(b): every forbidden component is zero and every tie holds, for MP crystals of all seven
    crystal systems (the projector is applied in float64)."""
    model = _invariant(kind, averaged=True)
    preds, projectors = _predict(model, _structures())
    assert len(preds) >= 7
    for T, P in zip(preds, projectors, strict=True):
        assert zero_success(T, P)
        assert equality_success(T, P)
        np.testing.assert_allclose((P @ T.reshape(-1)).reshape(T.shape), T, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_plain_invariant_breaks_symmetry_wherever_the_group_constrains(kind):
    """(a): nothing makes its output respect the point group. Every crystal whose group
    constrains the tensor beyond its index symmetry gets a prediction with a part outside the
    symmetric subspace; the zero/equality metrics catch it wherever the constraint is a zero or
    a tie in the structure's frame (a crystal not in a standard orientation can have constraints
    that are neither, so success there is vacuous, not earned)."""
    model = _invariant(kind, averaged=False)
    preds, projectors = _predict(model, _structures())
    A = independent_voigt_basis(kind)  # the model's output space (intrinsic symmetry built in)
    n_constrained = n_failed = 0
    for T, P in zip(preds, projectors, strict=True):
        constrained = not np.allclose(P @ A, A, atol=1e-12)
        violation = symmetry_violation(T, P)
        if constrained:
            n_constrained += 1
            assert violation > 1e-3
        else:
            assert violation < 1e-12
            assert zero_success(T, P)
            assert equality_success(T, P)
        n_failed += not (zero_success(T, P) and equality_success(T, P))
    assert n_constrained >= 6  # at least one crystal of each non-trivial system
    assert n_failed >= 4


def test_invariant_checkpoint_round_trip_and_predict(tmp_path):
    model = _invariant("dielectric", averaged=True)
    path = save_checkpoint(tmp_path / "inv.pt", model, {"note": "test"})
    loaded, meta = load_checkpoint(path, task="dielectric")
    assert type(loaded) is InvariantTensorNet
    assert meta["arch"] == INVARIANT_ARCH
    structures = _structures()[:4]
    expected, _ = _predict(model, structures)
    out = atomate2_gmt.predict(structures, "dielectric", model=str(path))
    assert [r["state"] for r in out] == ["successful"] * 4
    np.testing.assert_allclose(np.array([r["tensor"] for r in out]), expected, atol=1e-10)


def test_unknown_arch_is_refused_with_a_message(tmp_path):
    path = save_checkpoint(tmp_path / "inv.pt", _invariant("dielectric", averaged=False))
    payload = torch.load(path, weights_only=True)
    payload["arch"] = "transformer-xl"
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"unknown model arch 'transformer-xl'"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="unknown model arch"):
        build_model(GMTNetConfig(), "nope")


@pytest.mark.parametrize("path", PRETRAINED, ids=lambda p: p.stem)
def test_shipped_gmtnet_checkpoints_still_load(path):
    model, meta = load_checkpoint(path)
    assert type(model) is GMTNet
    assert meta["arch"] == "gmtnet"


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    kwargs = {"limit": 40, "batch_size": 16, "model_overrides": SMALL, "command": "pytest"}
    return out, kwargs, harness.compare_models("dielectric", out, 2, **kwargs)


def test_comparison_runs_end_to_end_and_writes_the_table(comparison):
    out, _, cmp = comparison
    assert list(cmp["models"]) == ["invariant", "invariant_avg", "gmtnet_nosym", "gmtnet"]
    assert sum(cmp["split_sizes"].values()) == 40
    stored = json.loads((out / "comparison.json").read_text())
    assert stored["models"].keys() == cmp["models"].keys()
    table = (out / "comparison.md").read_text()
    for spec in harness.MODEL_SPECS.values():
        assert table.count(f"| {spec.label} |") >= 3  # main, rotated, per-system rows
    for name, r in cmp["models"].items():
        assert (out / name / "best.pt").is_file()
        assert r["epochs_trained"] == 2
        assert r["n_parameters"] > 0
        assert r["mean_epoch_s"] > 0
        assert r["time_per_batch_s"] > 0
        assert set(r["overall"]) >= {"fnorm", "ewt25", "ewt10", "ewt5", "zero_success"}
    models = cmp["models"]
    # the symmetry-projected models are exact by construction, the plain invariant one is not
    for name in ("invariant_avg", "gmtnet"):
        assert models[name]["overall"]["zero_success"] == 1.0
        assert models[name]["overall"]["equality_success"] == 1.0
    assert models["invariant"]["overall"]["zero_success"] < 1.0
    # same trunk: (a) and (b) have the same parameters, so do (c) and (d)
    assert models["invariant"]["n_parameters"] == models["invariant_avg"]["n_parameters"]
    assert models["gmtnet_nosym"]["n_parameters"] == models["gmtnet"]["n_parameters"]
    # the rotated test set: GMTNet scores the same in any frame, the invariant model does not
    for name in ("gmtnet_nosym", "gmtnet"):
        fn = models[name]["overall"]["fnorm"]
        assert models[name]["rotated_test"]["fnorm"] == pytest.approx(fn, rel=1e-3)
    assert models["gmtnet"]["rotated_test"]["zero_success"] == 1.0
    inv = models["invariant"]
    assert inv["rotated_test"]["fnorm"] != pytest.approx(inv["overall"]["fnorm"], rel=1e-3)
    assert "rotated" in table
    # the best checkpoints are usable by the public predict()
    best = out / "invariant_avg" / "best.pt"
    res = atomate2_gmt.predict(_structures()[:2], "dielectric", model=str(best))
    assert all(r["state"] == "successful" for r in res)


def test_finished_models_are_not_retrained(comparison):
    out, kwargs, cmp = comparison
    mtimes = {n: (out / n / "best.pt").stat().st_mtime_ns for n in cmp["models"]}
    again = harness.compare_models("dielectric", out, 2, **kwargs)
    assert {n: (out / n / "best.pt").stat().st_mtime_ns for n in cmp["models"]} == mtimes
    for name, r in again["models"].items():
        assert r["overall"] == cmp["models"][name]["overall"]


def test_interrupted_model_resumes_to_the_same_result(comparison, tmp_path, monkeypatch):
    out, kwargs, cmp = comparison
    original = Trainer.train_epoch
    calls = {"n": 0}

    def crash_on_second_epoch(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_epoch", crash_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        harness.compare_models("dielectric", tmp_path, 2, models=["invariant"], **kwargs)
    assert len(json.loads((tmp_path / "invariant" / "log.json").read_text())["history"]) == 1
    monkeypatch.setattr(Trainer, "train_epoch", original)
    resumed = harness.compare_models("dielectric", tmp_path, 2, models=["invariant"], **kwargs)
    hist = json.loads((tmp_path / "invariant" / "log.json").read_text())["history"]
    ref = json.loads((out / "invariant" / "log.json").read_text())["history"]
    assert [r["epoch"] for r in hist] == [1, 2]
    np.testing.assert_allclose(
        [r["train_loss"] for r in hist], [r["train_loss"] for r in ref], rtol=1e-6
    )
    a, b = resumed["models"]["invariant"]["overall"], cmp["models"]["invariant"]["overall"]
    assert a["fnorm"] == pytest.approx(b["fnorm"], rel=1e-6)


def test_resume_refuses_a_state_of_another_architecture(comparison):
    out, _, _ = comparison
    from atomate2_gmt.data.mp import load_mp
    from atomate2_gmt.training.trainer import prepare_records

    cfg = GMTNetConfig(task="dielectric", **SMALL)
    data = prepare_records(load_mp("dielectric").records[:4], cfg)
    trainer = Trainer(InvariantTensorNet(cfg), data, data, out / "gmtnet_nosym")
    with pytest.raises(ValueError, match="cannot resume, it holds a 'gmtnet' model"):
        trainer.load_state()


def test_rotated_records_move_structure_and_tensor_together():
    from atomate2_gmt.data.mp import load_mp

    recs = load_mp("dielectric").records[:12]
    moved = harness.rotated_records(recs, seed=3)
    n_anisotropic = 0
    for a, b in zip(recs, moved, strict=True):
        np.testing.assert_allclose(
            b.structure.distance_matrix, a.structure.distance_matrix, atol=1e-8
        )
        # the tensor keeps its invariants (eigenvalues) but not its components
        np.testing.assert_allclose(
            np.linalg.eigvalsh(b.tensor), np.linalg.eigvalsh(a.tensor), atol=1e-8
        )
        iso = np.trace(a.tensor) / 3 * np.eye(3)
        if np.linalg.norm(a.tensor - iso) > 1e-2:  # an isotropic (cubic) tensor cannot change
            n_anisotropic += 1
            assert not np.allclose(b.tensor, a.tensor, atol=1e-3)
        R = np.linalg.solve(a.structure.lattice.matrix, b.structure.lattice.matrix).T
        np.testing.assert_allclose(b.tensor, R @ a.tensor @ R.T, atol=1e-8)
    assert n_anisotropic >= 1


def test_centered_comparison_gives_every_model_the_training_mean(tmp_path):
    """``center_targets``: all four models learn the residual from the same training mean."""
    kwargs = {"limit": 24, "batch_size": 16, "model_overrides": SMALL, "command": "pytest"}
    cmp = harness.compare_models(
        "dielectric",
        tmp_path,
        1,
        models=["invariant", "gmtnet"],
        center_targets=True,
        relative_loss_weight=2.0,
        **kwargs,
    )
    assert cmp["center_targets"] is True
    assert cmp["relative_loss_weight"] == 2.0
    state = torch.load(tmp_path / "gmtnet" / "state.pt", weights_only=True)
    assert json.loads(state["train_json"])["relative_loss_weight"] == 2.0
    offsets = []
    for name in ("invariant", "gmtnet"):
        model, _ = load_checkpoint(tmp_path / name / "best.pt", task="dielectric")
        offsets.append(model.target_offset.numpy())
    np.testing.assert_allclose(offsets[0], offsets[1])
    # ε∞ of real crystals: a positive-definite mean, about isotropic
    assert np.linalg.eigvalsh(offsets[0]).min() > 1.0


def test_invariant_model_adds_the_isotropic_part_of_its_offset_to_every_prediction():
    from atomate2_gmt.tensors.isotropic import isotropic_part

    structures = _structures()[:3]
    model = _invariant("elastic", averaged=False)
    before, _ = _predict(model, structures)
    offset = torch.from_numpy(voigt_to_full(np.diag([200.0, 200, 200, 50, 50, 50]), "elastic"))
    model.target_offset.copy_(offset)
    after, _ = _predict(model, structures)
    iso = isotropic_part(offset.numpy())
    assert np.abs(iso - offset.numpy()).max() > 10  # this offset is anisotropic (GPa)
    np.testing.assert_allclose(after - before, np.broadcast_to(iso, after.shape), atol=1e-9)


def test_comparison_with_the_piezo_recipe_options(tmp_path):
    """``select_on``, ``curate`` and ``init_from`` reach every model, and the table shows the
    ranking metrics (Spearman of |e|_F, top-10 % recall) the piezo screening lives on."""
    torch.manual_seed(0)
    source = GMTNet(GMTNetConfig(task="dielectric_total", **SMALL))
    ckpt = tmp_path / "eps0.pt"
    save_checkpoint(ckpt, source, {"name": "eps0"})
    out = tmp_path / "cmp"
    cmp = harness.compare_models(
        "piezo",
        out,
        1,
        limit=30,
        batch_size=16,
        model_overrides=SMALL,
        models=["invariant", "gmtnet"],
        select_on="val_spearman",
        curate=True,
        init_from=ckpt,
        command="pytest",
    )
    assert cmp["select_on"] == "val_spearman"
    assert cmp["init_from"] == str(ckpt)
    assert cmp["curation"]["rule"].startswith("|e|_F > 30")
    for name, model in cmp["models"].items():
        assert model["selected_on"] == "val_spearman"
        # the whole trunk is shared with the ε0 model; only the rank-3 head is new
        assert 0.5 < model["transfer"]["fraction"] < 1.0
        assert model["curated_test"]["n"] == model["overall"]["n"]  # no test record removed
        state = torch.load(out / name / "state.pt", weights_only=True)
        assert json.loads(state["train_json"])["select_on"] == "val_spearman"
        assert set(model["overall"]) >= {"spearman_norm", "top10_recall"}
    table = (out / "comparison.md").read_text()
    assert "checkpoint chosen on val_spearman; curation on; initial weights" in table
    assert "| Spearman | top-10 % recall |" in table
    assert "The test crystals the curation rule keeps:" in table
    # the same folder with another recipe is refused, not silently reused
    with pytest.raises(ValueError, match="cannot resume, it was trained with"):
        harness.compare_models(
            "piezo", out, 1, limit=30, batch_size=16, model_overrides=SMALL,
            models=["invariant"], select_on="val_spearman", curate=False, init_from=ckpt,
        )  # fmt: skip
    _, stored = load_checkpoint(out / "gmtnet" / "best.pt", task="piezo")
    assert stored["transfer"]["from"] == str(ckpt)
    assert stored["curation"]["rule"].startswith("|e|_F > 30")
    with pytest.raises(ValueError, match="select_on must be one of"):
        harness.compare_models(
            "piezo",
            tmp_path / "bad",
            1,
            limit=30,
            model_overrides=SMALL,
            models=["invariant"],
            select_on="val_typo",
        )


def test_old_comparisons_without_ranking_metrics_still_render():
    """A committed comparison.json written before the ranking metrics renders with '–'."""
    root = Path(__file__).parents[2] / "docs" / "figures" / "baselines" / "dielectric"
    cmp = json.loads((root / "comparison.json").read_text())
    for model in cmp["models"].values():
        model["overall"].pop("spearman_norm", None)
    table = harness.comparison_markdown(cmp)
    assert "| – | – |" in table
    assert "checkpoint chosen on val_fnorm" in table
