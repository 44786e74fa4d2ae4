"""The channel-wise product of the TFN layers is e3nn's tensor product, computed differently."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from e3nn import o3

from atomate2_gmt.model.channelwise import ChannelwiseTensorProduct
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.equivariant_symmetry import default_dtype
from atomate2_gmt.model.gmtnet import GMTNet
from atomate2_gmt.model.layers import scatter_mean
from atomate2_gmt.pretrained import available, pretrained_path


def _layers_of(config: GMTNetConfig) -> list[o3.TensorProduct]:
    """The e3nn products of a float64 model of ``config``'s architecture."""
    model = GMTNet(dataclasses.replace(config, dtype="float64"))
    return [layer.tp for layer in model.equivariant_layers]


SHIPPED = sorted(available())


@pytest.mark.parametrize("task", SHIPPED)
def test_equals_e3nn_on_every_layer_of_the_shipped_architectures(task: str) -> None:
    from atomate2_gmt.model.checkpoint import load_checkpoint

    config = load_checkpoint(pretrained_path(task))[0].config
    torch.manual_seed(0)
    for tp in _layers_of(config):
        with default_dtype(torch.float64):
            product = ChannelwiseTensorProduct(tp)
        n = 200
        x1 = torch.randn(n, tp.irreps_in1.dim, dtype=torch.float64)
        x2 = torch.randn(n, tp.irreps_in2.dim, dtype=torch.float64)
        w = torch.randn(n, tp.weight_numel, dtype=torch.float64)
        want = tp(x1, x2, w)
        got = product(x1, x2, w)
        assert got.shape == want.shape
        assert torch.allclose(got, want, rtol=0, atol=1e-12 * want.abs().max().item())
        index = torch.randint(0, 17, (n,))
        index[index == 5] = 4  # an empty bin
        mean = product.scatter_mean(x1, x2, w, index, 17)
        assert torch.allclose(mean, scatter_mean(want, index, 17), atol=1e-12, rtol=0)
        assert torch.count_nonzero(mean[5]) == 0


def test_detects_a_wrong_coefficient() -> None:
    """The comparison above can fail: one altered path weight shows."""
    config = GMTNetConfig(task="piezo", hidden_lmax=2)
    tp = _layers_of(config)[1]
    with default_dtype(torch.float64):
        product = ChannelwiseTensorProduct(tp)
    product.coupling_2[0, 0] += 0.1
    x1 = torch.randn(50, tp.irreps_in1.dim, dtype=torch.float64)
    x2 = torch.randn(50, tp.irreps_in2.dim, dtype=torch.float64)
    w = torch.randn(50, tp.weight_numel, dtype=torch.float64)
    assert not torch.allclose(product(x1, x2, w), tp(x1, x2, w), atol=1e-6)


def test_refuses_other_products() -> None:
    irreps = o3.Irreps("4x0e+4x1o")
    shared = o3.TensorProduct(
        irreps, o3.Irreps("1x0e+1x1o"), irreps, [(0, 0, 0, "uvu", True)], shared_weights=True
    )
    with pytest.raises(ValueError, match="per-sample external weights"):
        ChannelwiseTensorProduct(shared)
    full = o3.FullyConnectedTensorProduct(
        irreps, o3.Irreps("1x0e+1x1o"), irreps, shared_weights=False, internal_weights=False
    )
    with pytest.raises(ValueError, match="uvu"):
        ChannelwiseTensorProduct(full)
    two_channels = o3.TensorProduct(
        irreps,
        o3.Irreps("2x0e"),
        o3.Irreps("4x0e"),
        [(0, 0, 0, "uvu", True)],
        shared_weights=False,
        internal_weights=False,
    )
    with pytest.raises(ValueError, match="multiplicity 1"):
        ChannelwiseTensorProduct(two_channels)


def test_checkpoints_carry_no_new_state() -> None:
    """The product's coefficients are rebuilt, never saved: state dicts are unchanged."""
    model = GMTNet(GMTNetConfig(task="dielectric"))
    assert not any("product" in key for key in model.state_dict())


def test_inference_and_autograd_paths_give_the_same_values() -> None:
    """Without autograd each path's weights multiply its columns in place; with autograd the
    weights are expanded to every column first. The products are the same numbers (bitwise),
    and gradients reach both inputs of the training path."""
    config = GMTNetConfig(task="elastic", hidden_lmax=2)
    torch.manual_seed(1)
    for tp in _layers_of(config):
        with default_dtype(torch.float64):
            product = ChannelwiseTensorProduct(tp)
        x1 = torch.randn(64, tp.irreps_in1.dim, dtype=torch.float64)
        x2 = torch.randn(64, tp.irreps_in2.dim, dtype=torch.float64)
        w = torch.randn(64, tp.weight_numel, dtype=torch.float64)
        with torch.no_grad():
            inference = product(x1, x2, w)
        w_grad = w.clone().requires_grad_(True)
        x1_grad = x1.clone().requires_grad_(True)
        training = product(x1_grad, x2, w_grad)
        assert torch.equal(training.detach(), inference)
        training.square().sum().backward()
        assert w_grad.grad is not None
        assert torch.count_nonzero(w_grad.grad) > 0
        assert x1_grad.grad is not None
        assert torch.count_nonzero(x1_grad.grad) > 0


@pytest.mark.parametrize("task", SHIPPED)
def test_mixing_on_the_edges_is_the_mix_of_the_mean(task: str) -> None:
    """The inference path mixes the scalar inputs' paths on the edges, before the mean: the same
    function as mixing the mean (float64, 1e-12), on every layer of the shipped architectures,
    with an empty bin; and the plan follows the mix's weights when they change."""
    from atomate2_gmt.model.checkpoint import load_checkpoint

    config = load_checkpoint(pretrained_path(task))[0].config
    model = GMTNet(dataclasses.replace(config, dtype="float64"))
    torch.manual_seed(3)
    for layer in model.equivariant_layers:
        tp, product, mix = layer.tp, layer.product, layer.mix
        with torch.no_grad():
            for param in mix.parameters():
                param.normal_()  # not the initial weights: every entry matters
        n = 300
        x1 = torch.randn(n, tp.irreps_in1.dim, dtype=torch.float64)
        x2 = torch.randn(n, tp.irreps_in2.dim, dtype=torch.float64)
        w = torch.randn(n, tp.weight_numel, dtype=torch.float64)
        index = torch.randint(0, 23, (n,))
        index[index == 7] = 6  # an empty bin
        with torch.no_grad():
            want = mix(product.scatter_mean(x1, x2, w, index, 23))
            got = product.mixed_scatter_mean(x1, x2, w, index, 23, mix)
            assert got.shape == want.shape
            assert torch.allclose(got, want, rtol=0, atol=1e-12 * want.abs().max().item())
            plan = product.mix_plan(mix)
            assert plan.paths, "the scalar inputs' paths are mixed on the edges"
            mix.weight.mul_(-2.0)  # new weights: a new plan, the mix of the new map
            again = product.mixed_scatter_mean(x1, x2, w, index, 23, mix)
            assert product.mix_plan(mix) is not plan
            want_again = mix(product.scatter_mean(x1, x2, w, index, 23))
            assert torch.allclose(again, want_again, rtol=0, atol=1e-12 * want.abs().max().item())
            assert not torch.allclose(again, got)


def test_shipped_model_inference_path_equals_its_training_path() -> None:
    """A shipped model gives the same tensors (float32 round-off) with and without autograd,
    i.e. through the mixing on the edges and through the mix of the mean."""
    from pymatgen.core import Lattice, Structure

    from atomate2_gmt.model.batch import collate_crystals, prepare_crystal
    from atomate2_gmt.model.checkpoint import load_checkpoint

    model = load_checkpoint(pretrained_path("piezo"))[0].prepare_inference()
    structure = Structure(  # wurtzite ZnO: polar, piezoelectric
        Lattice.hexagonal(3.25, 5.21),
        ["Zn", "Zn", "O", "O"],
        [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.382], [2 / 3, 1 / 3, 0.882]],
    )
    batch = collate_crystals([prepare_crystal(structure, model.config)])
    with torch.no_grad():
        inference = model(batch)
    with torch.enable_grad():
        training = model(batch).detach()
    scale = training.abs().max().item()
    assert scale > 0.1  # C/m², a real response
    assert torch.allclose(inference, training, rtol=0, atol=1e-5 * scale)
