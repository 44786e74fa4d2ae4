"""Target centering: the model learns the residual from the isotropic part of the training mean,
a constant that is the same in every frame, so a centred model stays exactly O(3)-equivariant;
checkpoints with a lab-frame (anisotropic) offset load with that part dropped."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atomate2_gmt.data.mp import load_mp, structures_by_crystal_system
from atomate2_gmt.data.records import split_records
from atomate2_gmt.model.batch import collate_crystals
from atomate2_gmt.model.checkpoint import load_checkpoint, save_checkpoint
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.equivariance import equivariance_error
from atomate2_gmt.model.gmtnet import GMTNet
from atomate2_gmt.pretrained import available, pretrained_path
from atomate2_gmt.tensors.isotropic import isotropic_part
from atomate2_gmt.training.trainer import TrainConfig, Trainer, prepare_records

SMALL = {"node_dim": 16, "rbf_bins": 32, "scalar_mul": 8, "vector_mul": 2, "out_mul": 2,
         "radial_hidden": 8}  # fmt: skip


def _centred_model(tmp_path, task: str = "elastic"):
    records = load_mp(task).records[:40]
    train, val, _ = split_records(records, seed=32)
    cfg = GMTNetConfig(task=task, **SMALL)
    tr, va = prepare_records(train, cfg), prepare_records(val, cfg)
    torch.manual_seed(0)
    model = GMTNet(cfg)
    tcfg = TrainConfig(epochs=1, batch_size=8, device="cpu", center_targets=True)
    Trainer(model, tr, va, tmp_path, tcfg)
    return model, train, va


def test_offset_is_the_isotropic_part_of_the_training_mean(tmp_path):
    model, train, va = _centred_model(tmp_path)
    mean = np.mean([r.tensor for r in train], axis=0)
    iso = isotropic_part(mean)
    np.testing.assert_allclose(model.target_offset.numpy(), iso, rtol=1e-12)
    # λ δ_ij δ_kl + μ (δ_ik δ_jl + δ_il δ_jk): C_xxxx = λ + 2μ, C_xxyy = λ, C_xyxy = μ
    lam, mu = iso[0, 0, 1, 1], iso[0, 1, 0, 1]
    assert iso[0, 0, 0, 0] == pytest.approx(lam + 2 * mu)
    assert mu > 0
    assert np.abs(mean - iso).max() > 1.0  # the mean itself is anisotropic (GPa)
    residual_rms = np.sqrt(np.mean((np.stack([r.tensor for r in train]) - iso) ** 2))
    assert model.target_scale.item() == pytest.approx(residual_rms)

    # with the head silenced, every crystal gets exactly the isotropic offset, in every frame
    with torch.no_grad():
        for p in model.head.parameters():
            p.zero_()
    model.eval()
    with torch.no_grad():
        out = model(collate_crystals(va.crystals[:3], model.dtype)).numpy()
    for pred in out:
        np.testing.assert_allclose(pred, iso, atol=1e-8)

    path = save_checkpoint(tmp_path / "c.pt", model)
    loaded, _ = load_checkpoint(path, task="elastic")
    np.testing.assert_allclose(loaded.target_offset.numpy(), iso)


def test_piezo_centering_adds_nothing(tmp_path):
    """A polar order-3 tensor has no isotropic part: centring a piezo model is a no-op."""
    model, _, _ = _centred_model(tmp_path, "piezo")
    assert float(model.target_offset.abs().max()) == 0.0


def test_a_lab_frame_offset_in_a_checkpoint_keeps_the_model_equivariant(tmp_path):
    """An older checkpoint whose offset is the anisotropic training mean loads, predicts with
    only its isotropic part, and rotates with the crystal; adding the whole offset would not."""
    model, train, _ = _centred_model(tmp_path)
    mean = np.mean([r.tensor for r in train], axis=0)
    with torch.no_grad():
        model.target_offset.copy_(torch.from_numpy(mean))
    path = save_checkpoint(tmp_path / "old.pt", model)
    loaded, _ = load_checkpoint(path, task="elastic")
    np.testing.assert_allclose(loaded.isotropic_offset().numpy(), isotropic_part(mean))
    structures = [s for g in structures_by_crystal_system(1).values() for s in g]
    loaded.double()
    error, _ = equivariance_error(loaded, structures)
    assert error < 1e-6
    # negative control: the whole lab-frame mean added (the defect this guards against)
    with torch.no_grad():
        loaded.offset_projector.copy_(torch.eye(81, dtype=torch.float64))
    broken, where = equivariance_error(loaded, structures)
    assert broken > 1e-3, where


def test_shipped_offsets_are_isotropic():
    for task in available():
        model, _ = load_checkpoint(pretrained_path(task), task=task)
        offset = model.target_offset.numpy()
        np.testing.assert_allclose(offset, isotropic_part(offset), atol=1e-9)
        np.testing.assert_allclose(model.isotropic_offset().numpy(), offset, atol=1e-9)
