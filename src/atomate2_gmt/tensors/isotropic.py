"""The isotropic (O(3)-invariant) part of a Cartesian tensor.

A tensor T of order n is invariant under every orthogonal matrix R (proper and improper) exactly
when it lies in the span of products of Kronecker deltas:

- order 2: δ_ij (the isotropic part of ε is tr(ε)/3 · δ_ij);
- order 3: nothing (ε_ijk changes sign under improper rotations, so a polar order-3 tensor such as
  the piezoelectric e_ijk has no isotropic part);
- order 4: δ_ij δ_kl, δ_ik δ_jl, δ_il δ_jk (for a tensor with the elastic index symmetries this is
  λ δ_ij δ_kl + μ (δ_ik δ_jl + δ_il δ_jk)).

The orthogonal projection onto that span is the average of R·T over O(3), so the isotropic part of a
tensor is the same in every Cartesian frame: a constant added in a lab frame keeps a model exactly
O(3)-equivariant only if it is isotropic. Units pass through unchanged.
"""

from __future__ import annotations

from functools import cache

import numpy as np

__all__ = ["isotropic_basis", "isotropic_part", "isotropic_projector"]


@cache
def isotropic_basis(order: int) -> np.ndarray:
    """(3**order, m) matrix whose columns span the O(3)-invariant tensors of ``order`` (m >= 0)."""
    d = np.eye(3)
    if order == 2:
        columns = [d]
    elif order == 4:
        columns = [
            np.einsum("ij,kl->ijkl", d, d),
            np.einsum("ik,jl->ijkl", d, d),
            np.einsum("il,jk->ijkl", d, d),
        ]
    elif order in (1, 3):
        columns = []
    else:
        raise ValueError(f"isotropic tensors are tabulated for orders 1-4, not {order}")
    if not columns:
        return np.zeros((3**order, 0))
    return np.stack([c.reshape(-1) for c in columns], axis=1)


@cache
def isotropic_projector(order: int) -> np.ndarray:
    """(3**order, 3**order) orthogonal projector onto the isotropic tensors of ``order``."""
    basis = isotropic_basis(order)
    if basis.shape[1] == 0:
        return np.zeros((3**order, 3**order))
    gram = basis.T @ basis
    proj = basis @ np.linalg.solve(gram, basis.T)
    proj.setflags(write=False)
    return proj


def isotropic_part(tensor: np.ndarray) -> np.ndarray:
    """The isotropic part of a full Cartesian tensor (same shape, same units, frame-independent)."""
    t = np.asarray(tensor, dtype=np.float64)
    if t.shape != (3,) * t.ndim:
        raise ValueError(f"expected a full Cartesian tensor (3, ..., 3), got shape {t.shape}")
    return (isotropic_projector(t.ndim) @ t.reshape(-1)).reshape(t.shape)
