"""The channel-wise (``uvu``) tensor product of the TFN layers, in a few large operations.

:class:`~atomate2_gmt.model.layers.TFNLayer` defines its product with e3nn's
``o3.TensorProduct`` (instructions, path weights, weight count, and the Wigner 3j symbols of
its state dict). e3nn's generated code runs several small operations per instruction (an outer
product, an einsum with the 3j symbol, the weight product): the hidden layers of the shipped
models have 27-38 instructions on inputs of 8 channels, so on a CPU that product is paid in
operations rather than arithmetic. :class:`ChannelwiseTensorProduct` computes the same
function per input irrep x (E, u, i) with the spherical harmonics Y (E, j):

    M[z, i, q] = Σ_j Y[z, j] C[i, j, q]           (one matrix product)
    out[z, u, q] = w[z, u, p(q)] · Σ_i x[z, u, i] M[z, i, q]   (one batched product, then
                                                               one product per path)

where the columns q run over the components k of every instruction p reading that input and
C[i, j, (p, k)] = path_weight_p · wigner_3j(l1, l2, l3)[i, j, k] (the coefficients e3nn uses, so
the function is the same up to float round-off: 4e-7 of the largest component of the shipped
models' float32 predictions, equal to 1e-12 in float64, tested).

:meth:`ChannelwiseTensorProduct.scatter_mean` also averages the edges into their nodes in its
own column order and reorders the columns on the nodes (about 19x fewer rows than edges), so no
edge-sized copy is made to match e3nn's layout. Measured with ``benchmarks/bench_product.py``:
the three shipped screening models' forward passes take 1.26x less CPU time (docs/benchmarks.md).

:meth:`ChannelwiseTensorProduct.mixed_scatter_mean` (inference) also applies the channel
mixing that follows the mean to the paths of scalar inputs on the edges, before the mean, which
leaves fewer columns to average (docs/model.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from e3nn import o3
from torch import nn

__all__ = ["ChannelwiseTensorProduct"]


class ChannelwiseTensorProduct(nn.Module):
    """The function of an e3nn ``TensorProduct`` whose instructions are all weighted ``uvu``
    with per-sample weights and whose second input has multiplicity 1 per irrep (spherical
    harmonics). ``forward(x1, x2, weight)`` is called as the e3nn module; the coefficients are
    built in the default dtype (non-persistent buffers: checkpoints are unchanged).
    """

    order: torch.Tensor  # column of the concatenated outputs for each output index (e3nn's)

    def __init__(self, tp: o3.TensorProduct) -> None:
        super().__init__()
        if tp.internal_weights or tp.shared_weights:
            raise ValueError("ChannelwiseTensorProduct needs per-sample external weights")
        irreps_in1, irreps_in2, irreps_out = tp.irreps_in1, tp.irreps_in2, tp.irreps_out
        if any(mul != 1 for mul, _ in irreps_in2):
            raise ValueError("the second input must have multiplicity 1 per irrep")
        self.dim_out = irreps_out.dim
        in2_slices = irreps_in2.slices()
        out_slices = irreps_out.slices()
        d2 = irreps_in2.dim
        weight_offsets: list[int] = []
        offset = 0
        for ins in tp.instructions:
            if ins.connection_mode != "uvu" or not ins.has_weight:
                raise ValueError(f"only weighted 'uvu' instructions are supported, got {ins}")
            weight_offsets.append(offset)
            offset += irreps_in1[ins.i_in1].mul
        #: per input irrep with instructions: (first column in irreps_in1, last, mul, dim)
        self.groups: list[tuple[int, int, int, int]] = []
        #: per group, its paths: (first column, end column, first weight of the path, first
        #: index of its output irrep in irreps_out)
        self.paths: list[list[tuple[int, int, int, int]]] = []
        self.n_cols: list[int] = []  # per group: columns per channel
        column_of = [-1] * self.dim_out  # output index (e3nn's order) → column of the cat
        position = 0
        default = torch.get_default_dtype()
        for i_in1, ((mul, ir), sl) in enumerate(zip(irreps_in1, irreps_in1.slices(), strict=True)):
            paths = [(n, ins) for n, ins in enumerate(tp.instructions) if ins.i_in1 == i_in1]
            if not paths or mul == 0:
                continue
            d1 = ir.dim
            n_cols = sum(irreps_out[ins.i_out].ir.dim for _, ins in paths)
            coupling = torch.zeros(d1, d2, n_cols, dtype=torch.float64)
            weight_index = torch.empty(mul, n_cols, dtype=torch.long)
            col = 0
            group_paths = []
            for n, ins in paths:
                l3 = irreps_out[ins.i_out].ir.l
                d3 = 2 * l3 + 1
                w3j = o3.wigner_3j(ir.l, irreps_in2[ins.i_in2].ir.l, l3, dtype=torch.float64)
                coupling[:, in2_slices[ins.i_in2], col : col + d3] = ins.path_weight * w3j
                out_start = out_slices[ins.i_out].start
                for u in range(mul):  # e3nn's layout of an output: channel-major, then component
                    weight_index[u, col : col + d3] = weight_offsets[n] + u
                    for c in range(d3):
                        column_of[out_start + u * d3 + c] = position + u * n_cols + col + c
                group_paths.append((col, col + d3, weight_offsets[n], out_start))
                col += d3
            g = len(self.groups)
            self.register_buffer(
                f"coupling_{g}",
                coupling.permute(1, 0, 2).reshape(d2, d1 * n_cols).to(default),
                persistent=False,
            )
            self.register_buffer(f"weight_index_{g}", weight_index.reshape(-1), persistent=False)
            self.groups.append((sl.start, sl.stop, mul, d1))
            self.paths.append(group_paths)
            self.n_cols.append(n_cols)
            position += mul * n_cols
        if sorted(column_of) != list(range(self.dim_out)):
            raise ValueError("the instructions do not fill the output irreps exactly once")
        self.register_buffer("order", torch.tensor(column_of, dtype=torch.long), persistent=False)
        self._mix_plan: _MixPlan | None = None
        self._mix_key: tuple[object, ...] | None = None

    def _group_output(
        self, g: int, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Group ``g``'s outputs (E, mul · columns), channel-major, in this module's order."""
        start, stop, mul, d1 = self.groups[g]
        n = x1.shape[0]
        m = (x2 @ getattr(self, f"coupling_{g}")).reshape(n, d1, -1)
        x = x1[:, start:stop].reshape(n, mul, d1)
        out = torch.bmm(x, m) if d1 > 1 else x * m
        if torch.is_grad_enabled() and (out.requires_grad or weight.requires_grad):
            # autograd needs both factors
            w = weight.index_select(1, getattr(self, f"weight_index_{g}"))
            return out.reshape(n, -1) * w
        # no autograd: each path's columns times its weights, in place and broadcast over
        # the path's components, so no edge-sized copy of the weights is made (the same
        # products as above, bitwise; 6-9 % less forward time on the shipped models)
        for first, end, w0, _ in self.paths[g]:
            out[:, :, first:end].mul_(weight[:, w0 : w0 + mul, None])
        return out.reshape(n, -1)

    def _parts(
        self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor
    ) -> list[torch.Tensor]:
        """Each input irrep's outputs (E, mul · columns), channel-major, in this module's order."""
        return [self._group_output(g, x1, x2, weight) for g in range(len(self.groups))]

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """(E, irreps_in1.dim), (E, irreps_in2.dim), (E, weight_numel) → (E, irreps_out.dim)."""
        return torch.cat(self._parts(x1, x2, weight), dim=1).index_select(1, self.order)

    def scatter_mean(
        self,
        x1: torch.Tensor,
        x2: torch.Tensor,
        weight: torch.Tensor,
        index: torch.Tensor,
        n: int,
    ) -> torch.Tensor:
        """The mean of ``forward``'s rows per bin of ``index`` (n, irreps_out.dim; an empty
        bin gives zeros), summed in this module's column order and reordered on the n rows."""
        total = x1.new_zeros((n, self.dim_out))
        start = 0
        for part in self._parts(x1, x2, weight):
            total[:, start : start + part.shape[1]].index_add_(0, index, part)
            start += part.shape[1]
        count = torch.bincount(index, minlength=n).clamp(min=1).to(total.dtype)
        return total.index_select(1, self.order) / count.view(-1, 1)

    def mixed_scatter_mean(
        self,
        x1: torch.Tensor,
        x2: torch.Tensor,
        weight: torch.Tensor,
        index: torch.Tensor,
        n: int,
        mix: nn.Module,
    ) -> torch.Tensor:
        """``mix(self.scatter_mean(x1, x2, weight, index, n))`` for inference (no autograd),
        with the paths of scalar inputs mixed on the edges, before the mean.

        ``mix`` is the linear map (e3nn ``o3.Linear``) applied to the mean. A path of a
        scalar input (dimension 1) writes mul × d3 columns per edge, x_u w_u M_k; ``mix``
        then reduces its mul channels to the few of each output irrep (W ⊗ 1 on the
        components). Because the mean and ``mix`` are linear, the product
        (Σ_u x_u w_u W_uv) M_k, one (E, mul) × (mul, mul_out) product per path, gives the
        mixed result on the edges with mul_out × d3 columns, and only those are averaged. On
        the shipped models the scalar paths are more than half of the columns (elastic: 2,184
        of 3,840, which become 648: 64 input channels, 8 or 16 output channels for l ≥ 1); the
        function is the same up to float round-off (docs/model.md, with the measured speed-up).
        """
        plan = self.mix_plan(mix)
        e = x1.shape[0]
        total = x1.new_zeros((n, self.dim_out))
        mixed = x1.new_zeros((e, plan.width))
        start = 0
        for g, (first_in, end_in, mul, _) in enumerate(self.groups):
            width = mul * self.n_cols[g]
            if g in plan.paths:
                m = x2 @ getattr(self, f"coupling_{g}")  # (E, columns): d1 = 1
                x = x1[:, first_in:end_in]
                for first, end, w0, matrix, pieces in plan.paths[g]:
                    h = (x * weight[:, w0 : w0 + mul]) @ matrix
                    d3 = end - first
                    for h0, h1, c0 in pieces:
                        view = mixed[:, c0 : c0 + (h1 - h0) * d3].view(e, h1 - h0, d3)
                        view.addcmul_(h[:, h0:h1, None], m[:, None, first:end])
            else:
                part = self._group_output(g, x1, x2, weight)
                total[:, start : start + width].index_add_(0, index, part)
            start += width
        count = torch.bincount(index, minlength=n).clamp(min=1).to(total.dtype).view(-1, 1)
        out = mix(total.index_select(1, self.order) / count)
        mixed_nodes = x1.new_zeros((n, plan.width)).index_add_(0, index, mixed) / count
        for c0, c1, t0 in plan.placements:
            out[:, t0 : t0 + c1 - c0] += mixed_nodes[:, c0:c1]
        return out

    def mix_plan(self, mix: nn.Module) -> _MixPlan:
        """The per-path matrices of :meth:`mixed_scatter_mean` for ``mix``, read from its
        linear map and rebuilt when its weights change (training steps, ``load_state_dict``)."""
        w = getattr(mix, "weight", None)
        if not isinstance(w, torch.Tensor):
            raise ValueError("mixed_scatter_mean needs a mix with a weight tensor (o3.Linear)")
        key = (w._version, w.data_ptr(), w.dtype, w.device, id(mix))
        if self._mix_plan is None or self._mix_key != key:
            self._mix_plan = _build_mix_plan(self, mix, w.dtype, w.device)
            self._mix_key = key
        return self._mix_plan


_PlanPath = tuple[int, int, int, torch.Tensor, list[tuple[int, int, int]]]


@dataclass
class _MixPlan:
    """Per scalar group g: paths [(first, end, w0, matrix (mul, Σ mul_out), pieces)] with
    pieces [(first column of h, end column of h, first column in the mixed edge block)];
    ``placements`` [(first, end column of the mixed block, first output column of mix)]."""

    paths: dict[int, list[_PlanPath]] = field(default_factory=dict)
    placements: list[tuple[int, int, int]] = field(default_factory=list)
    width: int = 0


def _build_mix_plan(
    product: ChannelwiseTensorProduct, mix: nn.Module, dtype: torch.dtype, device: torch.device
) -> _MixPlan:
    irreps_out = o3.Irreps(mix.irreps_out)  # type: ignore[arg-type]
    with torch.no_grad():
        eye = torch.eye(product.dim_out, dtype=dtype, device=device)
        linear = mix(eye) - mix(torch.zeros_like(eye[:1]))  # (dim_in, dim_out): the linear map
    scale = float(linear.abs().max()) or 1.0
    blocks = list(zip(irreps_out, irreps_out.slices(), strict=True))
    plan = _MixPlan()
    column_of_block: dict[int, int] = {}  # output block → first column in the mixed edge block
    for g, (_, _, mul, d1) in enumerate(product.groups):
        if d1 != 1:
            continue
        entries = []
        for first, end, w0, out_start in product.paths[g]:
            d3 = end - first
            rows = linear[out_start : out_start + mul * d3]  # this path's mid rows
            matrices, pieces, h0 = [], [], 0
            covered = torch.zeros(linear.shape[1], dtype=torch.bool, device=device)
            for j, ((mul_out, ir), sl) in enumerate(blocks):
                if ir.dim != d3:
                    continue
                block = rows[:, sl]
                if float(block.abs().max()) == 0.0:
                    continue
                matrix = block[::d3, ::d3].contiguous()  # (mul, mul_out): W of W ⊗ 1
                eye_d3 = torch.eye(d3, dtype=dtype, device=device)
                if not torch.allclose(torch.kron(matrix, eye_d3), block, atol=1e-6 * scale):
                    raise ValueError("the mix does not act as W ⊗ 1 on a scalar path's components")
                if j not in column_of_block:
                    column_of_block[j] = plan.width
                    plan.placements.append((plan.width, plan.width + mul_out * d3, sl.start))
                    plan.width += mul_out * d3
                matrices.append(matrix)
                pieces.append((h0, h0 + mul_out, column_of_block[j]))
                h0 += mul_out
                covered[sl] = True
            outside = rows[:, ~covered]
            if outside.numel() and float(outside.abs().max()) > 1e-6 * scale:
                raise ValueError("the mix maps a scalar path outside its output irrep's blocks")
            if matrices:
                entries.append((first, end, w0, torch.cat(matrices, dim=1), pieces))
        plan.paths[g] = entries
    return plan
