"""Point-group projection of the crystal feature G (GMTNet paper §3.4), with Wigner-D matrices.

For a point group {g} and the irreps of G, the exact projector onto the invariant subspace is
P = (1/|G|) Σ_g D(g). D(g) is block diagonal with one block D^{l,p}(g) per irrep copy, the same for
every copy of an irrep, so P is computed once per distinct (l, p):
P^{l,p} = (1/|G|) Σ_g p^{k(g)} D^l(det(g)·g), k(g) = 1 for improper g, else 0 (e3nn's convention).
The full averaging matrix is used (the reference keeps only its positive entries, which is not a
projector, e.g. for uniaxial crystals with c along z).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from e3nn import o3


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Temporarily set torch's default dtype.

    e3nn builds its so(3) generators, Clebsch-Gordan and change-of-basis constants in the default
    dtype; building them under float64 keeps float64 computations exact to ~1e-15.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


#: Projectors already computed, keyed by (rounded operations, l, p); float64 on the CPU.
_PROJECTOR_CACHE: OrderedDict[tuple[bytes, int, int], torch.Tensor] = OrderedDict()
PROJECTOR_CACHE_SIZE = 8192
#: Decimals of the Cartesian operations in the cache key: crystals whose operations agree to
#: 1e-12 (e.g. every cubic crystal in the standard setting) share one projector.
_KEY_DECIMALS = 12


def _ops_key(ops: torch.Tensor) -> bytes:
    rounded = np.round(ops.detach().cpu().numpy().astype(np.float64), _KEY_DECIMALS) + 0.0
    return rounded.tobytes() + str(rounded.shape).encode()


def _compute_projectors(ops: Sequence[torch.Tensor], ll: int, p: int) -> torch.Tensor:
    """(B, 2l+1, 2l+1) float64 projectors of irrep (l, p) for each crystal's operations."""
    counts = torch.tensor([len(o) for o in ops])
    allops = torch.cat([o.detach().cpu() for o in ops], dim=0).to(torch.float64)
    det = torch.sign(torch.linalg.det(allops))
    proper = allops * det[:, None, None]
    alpha, beta, gamma = o3.matrix_to_angles(proper)
    owner = torch.repeat_interleave(torch.arange(len(ops)), counts)
    with default_dtype(torch.float64):
        D = o3.wigner_D(ll, alpha, beta, gamma)  # (n_total, 2l+1, 2l+1), float64
    if p == -1:
        D = torch.where((det < 0)[:, None, None], -D, D)
    total = torch.zeros(len(ops), *D.shape[1:], dtype=D.dtype)
    total.index_add_(0, owner, D)
    return total / counts[:, None, None].to(D.dtype)


def irrep_projectors(
    ops: Sequence[torch.Tensor], irreps: o3.Irreps
) -> dict[tuple[int, int], torch.Tensor]:
    """Per distinct (l, p) of ``irreps``: (B, 2l+1, 2l+1) projectors, one per crystal.

    ``ops[b]`` is the (n_b, 3, 3) Cartesian point-group operations of crystal b (float64 advised).
    Projectors depend only on the operations, so they are cached (Wigner-D matrices cost more
    than the rest of the symmetry module): a screening run meets the same few hundred operation
    sets again and again. Returned on the device of ``ops``, float64.
    """
    device = ops[0].device
    keys = [_ops_key(o) for o in ops]
    out: dict[tuple[int, int], torch.Tensor] = {}
    for _, ir in irreps:
        lp = (ir.l, ir.p)
        if lp in out:
            continue
        missing = {k: i for i, k in enumerate(keys) if (k, *lp) not in _PROJECTOR_CACHE}
        if missing:
            fresh = _compute_projectors([ops[i] for i in missing.values()], *lp)
            for k, P in zip(missing, fresh, strict=True):
                _PROJECTOR_CACHE[(k, *lp)] = P
        blocks = []
        for k in keys:
            _PROJECTOR_CACHE.move_to_end((k, *lp))
            blocks.append(_PROJECTOR_CACHE[(k, *lp)])
        out[lp] = torch.stack(blocks).to(device)
    while len(_PROJECTOR_CACHE) > PROJECTOR_CACHE_SIZE:
        _PROJECTOR_CACHE.popitem(last=False)
    return out


def project_features(
    G: torch.Tensor, irreps: o3.Irreps, projectors: dict[tuple[int, int], torch.Tensor]
) -> torch.Tensor:
    """G ← P·G, block by block. G: (B, irreps.dim)."""
    pieces = []
    for (mul, ir), sl in zip(irreps, irreps.slices(), strict=True):
        block = G[:, sl].reshape(G.shape[0], mul, ir.dim)
        P = projectors[(ir.l, ir.p)].to(G.dtype)
        pieces.append(torch.einsum("bij,bmj->bmi", P, block).reshape(G.shape[0], -1))
    return torch.cat(pieces, dim=1)
