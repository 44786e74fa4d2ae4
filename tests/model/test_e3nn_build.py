"""model/e3nn_build.py: e3nn modules built by ``fast_e3nn_build`` are those of e3nn's own build
(same generated code, same constants), and model loading runs no forward pass for the shipped
checkpoints while a checkpoint path is still checked."""

from __future__ import annotations

import shutil

import pytest
import torch
from e3nn import o3
from e3nn.math import _normalize_activation
from e3nn.nn import Gate
from pymatgen.core import Lattice, Structure
from torch import fx
from torch.nn import functional as F

from atomate2_gmt.model import e3nn_build
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.gmtnet import GMTNet
from atomate2_gmt.model.predict import predict
from atomate2_gmt.pretrained import pretrained_path
from atomate2_gmt.registry import loading


def _generated(module: torch.nn.Module) -> dict[str, str]:
    return {n: m.code for n, m in module.named_modules() if isinstance(m, fx.GraphModule)}


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for n, m in module.named_modules():
        for k, v in [*m._buffers.items(), *m._parameters.items()]:
            if v is not None:
                out[f"{n}.{k}"] = v.detach()
    return out


def _plain_build(monkeypatch, config: GMTNetConfig) -> GMTNet:
    """The model built with e3nn's own code generation (fast_e3nn_build a no-op)."""
    from contextlib import nullcontext

    from atomate2_gmt.model import tensor_model

    with monkeypatch.context() as m:
        m.setattr(tensor_model, "fast_e3nn_build", nullcontext)
        torch.manual_seed(0)
        return GMTNet(config)


@pytest.mark.parametrize("task", ["piezo", "elastic"])
def test_fast_build_generates_the_same_modules(monkeypatch, task):
    plain = _plain_build(monkeypatch, GMTNetConfig(task=task))
    torch.manual_seed(0)
    fast = GMTNet(GMTNetConfig(task=task))
    code_plain, code_fast = _generated(plain), _generated(fast)
    assert len(code_plain) >= 10  # every TensorProduct and Linear of the layers and the head
    assert code_fast == code_plain
    t_plain, t_fast = _tensors(plain), _tensors(fast)
    assert t_fast.keys() == t_plain.keys()
    for k, v in t_plain.items():
        assert t_fast[k].dtype == v.dtype, k
        assert torch.equal(t_fast[k], v), k
    zno = Structure.from_spacegroup(
        "P6_3mc",
        Lattice.hexagonal(3.25, 5.21),
        ["Zn", "O"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]],
    )
    same = [predict([zno], task, model=m.eval(), device="cpu")[0]["tensor"] for m in (plain, fast)]
    assert same[0] == same[1]


def test_fast_build_restores_e3nn_afterwards():
    from e3nn.o3 import _linear

    before = (_linear.optimize_einsums_full, _normalize_activation.moment)
    with e3nn_build.fast_e3nn_build():
        with e3nn_build.fast_e3nn_build():  # re-entrant
            assert _linear.optimize_einsums_full is e3nn_build.optimize_einsums_once
        assert _linear.optimize_einsums_full is e3nn_build.optimize_einsums_once
    assert (_linear.optimize_einsums_full, _normalize_activation.moment) == before


def test_memoised_moment_is_e3nn_moment():
    plain = [_normalize_activation.moment(f, 2, dtype=torch.float64) for f in (F.silu, torch.tanh)]
    with e3nn_build.fast_e3nn_build():
        for _ in range(2):  # computed, then memoised
            fast = [
                _normalize_activation.moment(f, 2, dtype=torch.float64)
                for f in (F.silu, torch.tanh)
            ]
            assert all(torch.equal(a, b) for a, b in zip(plain, fast, strict=True))
        # an arbitrary callable is never memoised: its value follows the function
        calls = []

        def f(z):
            calls.append(1)
            return z

        _normalize_activation.moment(f, 2)
        _normalize_activation.moment(f, 2)
        assert len(calls) == 2
        gate = Gate("4x0e", [F.silu], "2x0e", [torch.sigmoid], "2x1o")
    assert gate.irreps_out == o3.Irreps("4x0e + 2x1o")


def _no_forward(monkeypatch):
    calls = []
    real = GMTNet.forward

    def counted(self, batch):
        calls.append(1)
        return real(self, batch)

    monkeypatch.setattr(GMTNet, "forward", counted)
    monkeypatch.setattr(loading, "_MODEL_CACHE", {})
    monkeypatch.setattr(loading, "_VALIDATED", set())
    return calls


def test_loading_a_shipped_model_runs_no_forward_pass(monkeypatch):
    calls = _no_forward(monkeypatch)
    net, info = loading.load_model_spec("dielectric", "pretrained")
    assert calls == []
    assert info["spec"] == "pretrained"
    assert not net.training


def test_a_checkpoint_path_is_checked_once(monkeypatch, tmp_path):
    calls = _no_forward(monkeypatch)
    path = tmp_path / "dielectric.pt"
    shutil.copyfile(pretrained_path("dielectric"), path)
    loading.load_model_spec("dielectric", str(path))
    assert len(calls) == 1  # check_output_scale: one prediction of wurtzite ZnO
    loading.load_model_spec("dielectric", str(path))
    assert len(calls) == 1  # cached with its check
