"""The model interface (TensorModel), the architecture factory, and old checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atomate2_gmt.model import factory
from atomate2_gmt.model.baselines import InvariantTensorNet
from atomate2_gmt.model.checkpoint import load_checkpoint, save_checkpoint
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.gmtnet import GMTNet
from atomate2_gmt.model.tensor_model import TensorModel
from tests.model.conftest import calibrated_model, predict_one, prototypes
from tests.tiny_model import TINY


def test_both_architectures_share_the_interface_not_each_other() -> None:
    gmt = factory.build_model(GMTNetConfig(task="dielectric", **TINY))
    inv = factory.build_model(GMTNetConfig(task="dielectric", **TINY), "invariant_voigt")
    assert isinstance(gmt, GMTNet)
    assert isinstance(inv, InvariantTensorNet)
    assert isinstance(gmt, TensorModel)
    assert isinstance(inv, TensorModel)
    assert not isinstance(inv, GMTNet)
    assert not hasattr(inv, "equivariant_layers")
    assert (factory.model_arch(gmt), factory.model_arch(inv)) == ("gmtnet", "invariant_voigt")
    s = prototypes()["wurtzite_ZnO"]
    for model in (gmt, inv):
        model.eval()
        assert predict_one(model, s).shape == (3, 3)


def test_the_interface_cannot_be_built_alone() -> None:
    with pytest.raises(TypeError, match="abstract"):
        TensorModel(GMTNetConfig(task="dielectric"))  # type: ignore[abstract]


def test_unknown_arch_is_refused_with_the_known_ones() -> None:
    known = "unknown model arch 'mlp'; known: gmtnet, invariant_voigt"
    with pytest.raises(ValueError, match=known):
        factory.build_model(GMTNetConfig(task="dielectric"), "mlp")


@pytest.mark.parametrize("arch", ["gmtnet", "invariant_voigt"])
def test_a_checkpoint_without_target_offset_loads_with_a_zero_offset(tmp_path, arch) -> None:
    if arch == "gmtnet":
        model: TensorModel = calibrated_model("piezo", "float32")
    else:
        torch.manual_seed(3)
        model = factory.build_model(GMTNetConfig(task="piezo", **TINY), arch).eval()
        model.target_scale.fill_(0.1)
    model.target_offset.fill_(0.0)
    path = save_checkpoint(tmp_path / "m.pt", model)
    payload = torch.load(path, weights_only=True)
    del payload["state_dict"]["target_offset"]
    torch.save(payload, path)
    loaded, meta = load_checkpoint(path, task="piezo")
    assert meta["arch"] == arch
    assert type(loaded) is type(model)
    assert float(loaded.target_offset.abs().max()) == 0.0
    s = prototypes()["wurtzite_ZnO"]
    np.testing.assert_allclose(predict_one(loaded, s), predict_one(model, s), rtol=1e-6, atol=1e-9)
