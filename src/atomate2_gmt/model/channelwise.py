"""The channel-wise (``uvu``) tensor product of the TFN layers, in a few large operations.

:class:`~atomate2_gmt.model.layers.TFNLayer` defines its product with e3nn's
``o3.TensorProduct`` (instructions, path weights, weight count, and the Wigner 3j symbols of
its state dict). e3nn's generated code runs several small operations per instruction (an outer
product, an einsum with the 3j symbol, the weight product): the hidden layers of the shipped
models have 27-38 instructions on inputs of 8 channels, so on a CPU that product is paid in
operations rather than arithmetic. :class:`ChannelwiseTensorProduct` computes the same
function per input irrep x (E, u, i) with the spherical harmonics Y (E, j):

    M[z, i, q] = Σ_j Y[z, j] C[i, j, q]           (one matrix product)
    out[z, u, q] = w[z, u, p(q)] · Σ_i x[z, u, i] M[z, i, q]   (one batched product, one product)

where the columns q run over the components k of every instruction p reading that input and
C[i, j, (p, k)] = path_weight_p · wigner_3j(l1, l2, l3)[i, j, k] (the coefficients e3nn uses, so
the function is the same up to float round-off: 4e-7 of the largest component of the shipped
models' float32 predictions, equal to 1e-12 in float64, tested).

:meth:`ChannelwiseTensorProduct.scatter_mean` also averages the edges into their nodes in its
own column order and reorders the columns on the nodes (about 19x fewer rows than edges), so no
edge-sized copy is made to match e3nn's layout. Measured with ``benchmarks/bench_product.py``:
the three shipped screening models' forward passes take 1.26x less CPU time (docs/benchmarks.md).
"""

from __future__ import annotations

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
        #: per group, its paths: (first column, end column, first weight of the path)
        self.paths: list[list[tuple[int, int, int]]] = []
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
                group_paths.append((col, col + d3, weight_offsets[n]))
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
            position += mul * n_cols
        if sorted(column_of) != list(range(self.dim_out)):
            raise ValueError("the instructions do not fill the output irreps exactly once")
        self.register_buffer("order", torch.tensor(column_of, dtype=torch.long), persistent=False)

    def _parts(
        self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor
    ) -> list[torch.Tensor]:
        """Each input irrep's outputs (E, mul · columns), channel-major, in this module's order."""
        n = x1.shape[0]
        parts = []
        for g, (start, stop, mul, d1) in enumerate(self.groups):
            m = (x2 @ getattr(self, f"coupling_{g}")).reshape(n, d1, -1)
            x = x1[:, start:stop].reshape(n, mul, d1)
            out = torch.bmm(x, m) if d1 > 1 else x * m
            if out.requires_grad or weight.requires_grad:  # autograd needs both factors
                w = weight.index_select(1, getattr(self, f"weight_index_{g}"))
                parts.append(out.reshape(n, -1) * w)
                continue
            # no autograd: each path's columns times its weights, in place and broadcast over
            # the path's components, so no edge-sized copy of the weights is made (the same
            # products as above, bitwise; 6-9 % less forward time on the shipped models)
            for first, end, w0 in self.paths[g]:
                out[:, :, first:end].mul_(weight[:, w0 : w0 + mul, None])
            parts.append(out.reshape(n, -1))
        return parts

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
