"""Message-passing layers: Comformer (invariant) node layers and tensor-field-network layers."""

from __future__ import annotations

import math

import torch
from e3nn import o3
from e3nn.nn import Gate
from torch import nn
from torch.nn import functional as F

from atomate2_gmt.model.channelwise import ChannelwiseTensorProduct


def scatter_sum(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Sum rows of ``src`` into ``n`` bins given by ``index``."""
    out = src.new_zeros((n, *src.shape[1:]))
    return out.index_add_(0, index, src)


def scatter_mean(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Mean of the rows of ``src`` per bin (empty bins give zeros)."""
    total = scatter_sum(src, index, n)
    count = torch.bincount(index, minlength=n).clamp(min=1).to(src.dtype)
    return total / count.view(-1, *([1] * (src.dim() - 1)))


class _SplitMLP(nn.Module):
    """ξ(a_i, a_j, e_ij) = W2 · SiLU(W1 · [a_i, a_j, e_ij] + b1) + b2, with W1 split by block.

    The first layer acts on the concatenation [node i, node j, edge]; splitting W1 into three
    blocks lets the node blocks be applied once per node and gathered, which is the same function
    as the concatenated form at a fraction of the per-edge cost.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w_i = nn.Linear(dim, dim, bias=True)
        self.w_j = nn.Linear(dim, dim, bias=False)
        self.w_e = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(
        self, a: torch.Tensor, e: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
    ) -> torch.Tensor:
        h = self.w_i(a)[dst] + self.w_j(a)[src] + self.w_e(e)
        return self.out(F.silu(h))


class ComformerNodeLayer(nn.Module):
    """Invariant node update (GMTNet paper eq. 1–2, after Comformer).

    q_ij = W_Q f_i;  k_ij = ξ_K(W_K f_i, W_K f_j, W_E e_ij);  v_ij = ξ_V(W_V f_i, W_V f_j, W_E e_ij)
    α_ij = q_ij ⊙ k_ij / √d  (per channel, no softmax)
    m_ij = sigmoid(BN(α_ij)) ⊙ v_ij;  f_i ← softplus(f_i + BN(Σ_j m_ij))
    ``output_bn=False`` drops the last BN (what the reference code does in effect).
    """

    def __init__(self, dim: int = 128, output_bn: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.edge = nn.Linear(dim, dim)
        self.xi_k = _SplitMLP(dim)
        self.xi_v = _SplitMLP(dim)
        self.attention_bn = nn.BatchNorm1d(dim)
        self.output_bn: nn.Module = nn.BatchNorm1d(dim) if output_bn else nn.Identity()

    def forward(
        self, f: torch.Tensor, e: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
    ) -> torch.Tensor:
        """f: (N, d) node features; e: (E, d) edge features; edges src → dst."""
        ee = self.edge(e)
        q = self.query(f)[dst]
        k = self.xi_k(self.key(f), ee, src, dst)
        v = self.xi_v(self.value(f), ee, src, dst)
        alpha = q * k / math.sqrt(self.dim)
        msg = torch.sigmoid(self.attention_bn(alpha)) * v
        agg = scatter_sum(msg, dst, f.shape[0])
        return F.softplus(f + self.output_bn(agg))


def hidden_irreps(scalar_mul: int, mul: int, lmax: int) -> tuple[o3.Irreps, o3.Irreps, o3.Irreps]:
    """(scalars, gates, gated) irreps of a hidden layer: even scalars, then both parities l=0..lmax.

    The gated part holds the odd scalars and every l >= 1 irrep of both parities, so features of
    either parity can be formed (improper point-group operations act on them through parity).
    """
    scalars = o3.Irreps(f"{scalar_mul}x0e")
    gated = [(mul, (0, -1))]
    for ll in range(1, lmax + 1):
        gated += [(mul, (ll, -1)), (mul, (ll, 1))]
    gated_irreps = o3.Irreps(gated)
    gates = o3.Irreps(f"{gated_irreps.num_irreps}x0e")
    return scalars, gates, gated_irreps


def _uvu_instructions(
    irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps
) -> tuple[o3.Irreps, list[tuple[int, int, int, str, bool]]]:
    """Every path (input irrep ⊗ harmonic → an irrep present in the target), channel-wise (uvu)."""
    mid: list[tuple[int, o3.Irrep]] = []
    instructions = []
    targets = {ir for _, ir in irreps_target}
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in targets:
                    instructions.append((i, j, len(mid), "uvu", True))
                    mid.append((mul, ir_out))
    return o3.Irreps(mid), instructions


class TFNLayer(nn.Module):
    """Tensor-field-network convolution with a fully connected (channel-mixing) output.

    x_i ← Linear( mean_j TP_uvu(x_j, Y(r̂_ij); w(e_ij)) ) [→ gate] [+ residual Linear(x_i)]

    The channel-wise tensor product carries one weight per path and channel per edge, from an MLP
    of the invariant edge embedding; the e3nn ``Linear`` then mixes channels of equal irreps. The
    two together are a fully connected tensor product whose per-edge weights factorise as
    w_uvw(e) = R_uv(e)·W_vw (the TFN filter R(r)Y(r̂) followed by self-interaction); the
    unfactorised form needs ~15x more per-edge weights for the same speed (docs/model.md).
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_out: o3.Irreps | None,
        edge_dim: int,
        radial_hidden: int = 64,
        gate: tuple[o3.Irreps, o3.Irreps, o3.Irreps] | None = None,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.gate: nn.Module | None = None
        if gate is not None:
            scalars, gates, gated = gate
            self.gate = Gate(scalars, [F.silu], gates, [torch.sigmoid], gated)
            target = self.gate.irreps_in
            self.irreps_out = self.gate.irreps_out
        else:
            if irreps_out is None:
                raise ValueError("TFNLayer needs irreps_out or a gate")
            target = o3.Irreps(irreps_out)
            self.irreps_out = target
        irreps_mid, instructions = _uvu_instructions(self.irreps_in, irreps_sh, target)
        self.tp = o3.TensorProduct(
            self.irreps_in,
            irreps_sh,
            irreps_mid,
            instructions,
            shared_weights=False,
            internal_weights=False,
        )
        # the same product in fewer, larger operations (model/channelwise.py)
        self.product = ChannelwiseTensorProduct(self.tp)
        self.radial = nn.Sequential(
            nn.Linear(edge_dim, radial_hidden),
            nn.SiLU(),
            nn.Linear(radial_hidden, self.tp.weight_numel),
        )
        self.mix = o3.Linear(irreps_mid, target)
        self.residual = o3.Linear(self.irreps_in, self.irreps_out) if residual else None

    def prepare_inference(self) -> None:
        """Build the inference path's mixing matrices now (before worker processes fork)."""
        self.product.mix_plan(self.mix)

    def aggregate(
        self,
        x: torch.Tensor,
        sh: torch.Tensor,
        e: torch.Tensor,
        src: torch.Tensor,
        dst: torch.Tensor,
    ) -> torch.Tensor:
        """Linear( mean_j TP_uvu(x_j, Y(r̂_ij); w(e_ij)) ): the layer before its gate and
        residual. In inference (eval mode, no autograd) the channel mixing of the scalar
        inputs' paths is done on the edges, before the mean
        (``ChannelwiseTensorProduct.mixed_scatter_mean``): the same function up to float
        round-off, with fewer edge columns."""
        weights = self.radial(e)
        if self.training or torch.is_grad_enabled():
            return self.mix(self.product.scatter_mean(x[src], sh, weights, dst, x.shape[0]))
        return self.product.mixed_scatter_mean(x[src], sh, weights, dst, x.shape[0], self.mix)

    def forward(
        self,
        x: torch.Tensor,
        sh: torch.Tensor,
        e: torch.Tensor,
        src: torch.Tensor,
        dst: torch.Tensor,
    ) -> torch.Tensor:
        """x: (N, irreps_in.dim); sh: (E, irreps_sh.dim); e: (E, edge_dim)."""
        out = self.aggregate(x, sh, e, src, dst)
        if self.gate is not None:
            out = self.gate(out)
        if self.residual is not None:
            out = out + self.residual(x)
        return out
