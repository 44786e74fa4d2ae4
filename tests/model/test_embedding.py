"""The edge embedding's inference table: the same features as the direct form, rebuilt when the
weights change, and never used in training."""

from __future__ import annotations

import torch

from atomate2_gmt.model.embedding import EdgeEmbedding


def _pair(tabulate: bool, emb: EdgeEmbedding, r: torch.Tensor) -> torch.Tensor:
    emb.tabulate = tabulate
    with torch.no_grad():
        return emb(r)


def test_table_matches_the_direct_form() -> None:
    torch.manual_seed(0)
    emb = EdgeEmbedding(out_dim=32, bins=512).eval()
    r = torch.linspace(0.25, 12.0, 20000)
    direct, table = _pair(False, emb, r), _pair(True, emb, r)
    assert emb._table is not None  # the table path ran
    assert torch.allclose(table, direct, rtol=0, atol=2e-5)
    # against a float64 evaluation the table is as close as the direct float32 form
    x = -0.75 / r.double()
    rbf = torch.exp(-emb.gamma * (x[:, None] - emb.centers.double()) ** 2)
    exact = torch.nn.functional.softplus(
        rbf @ emb.linear.weight.double().T + emb.linear.bias.double()
    )
    err_table = (table.double() - exact).abs().max()
    err_direct = (direct.double() - exact).abs().max()
    assert err_table < 4 * err_direct + 1e-6


def test_table_follows_the_weights() -> None:
    torch.manual_seed(1)
    emb = EdgeEmbedding(out_dim=16, bins=128).eval()
    r = torch.linspace(0.8, 8.0, 500)
    first = _pair(True, emb, r)
    with torch.no_grad():
        emb.linear.weight.mul_(2.0)  # an in-place update, as an optimiser step makes
    assert torch.allclose(_pair(True, emb, r), _pair(False, emb, r), atol=2e-5)
    other = EdgeEmbedding(out_dim=16, bins=128).eval()
    other.load_state_dict(emb.state_dict())
    assert torch.allclose(_pair(True, other, r), _pair(False, emb, r), atol=2e-5)
    assert not torch.allclose(first, _pair(True, emb, r), atol=1e-3)


def test_training_and_short_edges_use_the_direct_form() -> None:
    torch.manual_seed(2)
    emb = EdgeEmbedding(out_dim=8, bins=64)
    r = torch.linspace(0.8, 8.0, 50)
    out = emb.train()(r)  # training: gradients reach the linear layer
    out.sum().backward()
    assert emb.linear.weight.grad is not None
    assert emb._table is None
    emb.eval()
    short = torch.tensor([0.1, 1.0])  # x = -7.5 is below the table's range
    assert torch.allclose(_pair(True, emb, short), _pair(False, emb, short))
    assert emb._table is None


def test_prepare_inference_builds_the_table_once() -> None:
    from atomate2_gmt.model.config import GMTNetConfig
    from atomate2_gmt.model.gmtnet import GMTNet

    net = GMTNet(GMTNetConfig(task="dielectric", node_dim=16, rbf_bins=32, scalar_mul=8))
    assert net.edge_embedding._table is None
    assert net.prepare_inference() is net
    assert not net.training
    table = net.edge_embedding._table
    assert table is not None
    assert table.shape == (EdgeEmbedding.TABLE_POINTS, 16)
    net.edge_embedding.build_table()
    assert net.edge_embedding._table is table  # weights unchanged: reused
