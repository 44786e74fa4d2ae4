"""Target centering: the model learns the residual from the training mean, symmetrised per
crystal; checkpoints without an offset (the shipped ones) still load with a zero offset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atomate2_gmt.data.mp import load_mp
from atomate2_gmt.data.records import split_records
from atomate2_gmt.model.checkpoint import load_checkpoint, save_checkpoint
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.gmtnet import GMTNet, collate_crystals
from atomate2_gmt.pretrained import available, pretrained_path
from atomate2_gmt.tensors.symmetry import symmetrize
from atomate2_gmt.training.trainer import TrainConfig, Trainer, prepare_records

SMALL = {"node_dim": 16, "rbf_bins": 32, "scalar_mul": 8, "vector_mul": 2, "out_mul": 2,
         "radial_hidden": 8}  # fmt: skip


def test_offset_is_the_training_mean_and_enters_symmetrised(tmp_path):
    records = load_mp("elastic").records[:40]
    train, val, _ = split_records(records, seed=32)
    cfg = GMTNetConfig(task="elastic", **SMALL)
    tr, va = prepare_records(train, cfg), prepare_records(val, cfg)
    torch.manual_seed(0)
    model = GMTNet(cfg)
    tcfg = TrainConfig(epochs=1, batch_size=8, device="cpu", center_targets=True)
    Trainer(model, tr, va, tmp_path, tcfg)
    mean = np.mean([r.tensor for r in train], axis=0)
    np.testing.assert_allclose(model.target_offset.numpy(), mean, rtol=1e-12)
    residual_rms = np.sqrt(np.mean((np.stack([r.tensor for r in train]) - mean) ** 2))
    assert model.target_scale.item() == pytest.approx(residual_rms)

    # with the head silenced, the prediction is exactly the mean projected onto each crystal's
    # symmetric subspace (the residual is what the network learns)
    with torch.no_grad():
        for p in model.head.parameters():
            p.zero_()
    model.eval()
    with torch.no_grad():
        out = model(collate_crystals(va.crystals[:3], model.dtype)).numpy()
    for pred, rec in zip(out, val[:3], strict=True):
        np.testing.assert_allclose(pred, symmetrize(mean, rec.structure, "elastic"), atol=1e-8)

    path = save_checkpoint(tmp_path / "c.pt", model)
    loaded, _ = load_checkpoint(path, task="elastic")
    np.testing.assert_allclose(loaded.target_offset.numpy(), mean)


def test_checkpoints_without_offset_load_with_zero_offset():
    for task in available():
        model, meta = load_checkpoint(pretrained_path(task), task=task)
        centered = (meta.get("train_config") or {}).get("center_targets", False)
        if centered:  # the shipped elastic model: its offset is a mean elastic tensor
            C = model.target_offset.numpy()
            assert np.allclose(C, C.transpose(2, 3, 0, 1))  # major symmetry of a mean C_ijkl
            assert C[0, 0, 0, 0] > 0
        else:  # trained before the offset existed: loads with zero
            assert float(model.target_offset.abs().max()) == 0.0
    assert "dielectric" in available()
