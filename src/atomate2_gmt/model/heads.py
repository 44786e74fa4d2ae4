"""Response heads (GMTNet paper §3.3): tensors as derivatives of a bilinear response.

* dielectric: D = (G ⊗ E) → 1o,               ε_ij   = ∂D_i/∂E_j
* piezo:      D = (G ⊗ s) → 1o,               e_ijk  = ∂D_i/∂ε_jk
* elastic:    σ = (G ⊗ s) → 0e + 2e,          C_ijkl = ∂σ_ij/∂ε_kl

where s = Q·ε is the symmetric strain in irreps 0e + 2e (Q: e3nn's orthonormal change of basis of
symmetric 3x3 matrices) and σ_ij = Σ_a Q_aij σ_a. Each response is bilinear in (G, perturbation), so
the derivative is exactly the response evaluated on the unit perturbations: that is how
:meth:`TensorHead.forward` computes it (no double backward when training); the paper's autograd form
is :meth:`TensorHead.autograd_tensor`, kept to test that the two agree.
All tensors are full Cartesian in the frame of the input structure.
"""

from __future__ import annotations

from functools import cache

import torch
from e3nn import o3
from torch import nn

from atomate2_gmt.model.equivariant_symmetry import default_dtype

#: Irreps of the crystal feature G that each head uses (others could only add parts that the
#: intrinsic index symmetry removes).
HEAD_FEATURE_IRREPS = {
    "dielectric": "0e + 2e",
    "piezo": "1o + 2o + 3o",
    "elastic": "0e + 2e + 4e",
}
_PERTURBATION = {"dielectric": "1o", "piezo": "0e + 2e", "elastic": "0e + 2e"}
_RESPONSE = {"dielectric": "1o", "piezo": "1o", "elastic": "0e + 2e"}


def strain_change_of_basis() -> torch.Tensor:
    """Q (6, 3, 3): symmetric 3x3 Cartesian → irreps 0e + 2e, orthonormal (Q_flat Q_flatᵀ = I)."""
    return _strain_change_of_basis().clone()


@cache
def _strain_change_of_basis() -> torch.Tensor:
    """Q, computed once per process (e3nn's reduction takes ~0.1 s; every head needs it)."""
    with default_dtype(torch.float64):  # exact to float64, cast down where used
        return o3.ReducedTensorProducts("ij=ji", i="1o").change_of_basis.detach().clone()


def feature_irreps(kind: str, mul: int) -> o3.Irreps:
    """Irreps of G for ``kind`` with multiplicity ``mul`` each."""
    return o3.Irreps(" + ".join(f"{mul}x{ir}" for ir in HEAD_FEATURE_IRREPS[kind].split(" + ")))


class TensorHead(nn.Module):
    """Bilinear response head for one tensor kind; output (B, 3, ..., 3)."""

    def __init__(self, kind: str, irreps_feature: o3.Irreps) -> None:
        super().__init__()
        if kind not in HEAD_FEATURE_IRREPS:
            raise ValueError(f"unknown tensor kind {kind!r}")
        self.kind = kind
        self.irreps_feature = o3.Irreps(irreps_feature)
        self.irreps_perturbation = o3.Irreps(_PERTURBATION[kind])
        self.tp = o3.FullyConnectedTensorProduct(
            self.irreps_feature, self.irreps_perturbation, o3.Irreps(_RESPONSE[kind])
        )
        self.register_buffer("Q", strain_change_of_basis(), persistent=False)

    def response(self, G: torch.Tensor, perturbation: torch.Tensor) -> torch.Tensor:
        """The bilinear response (D or σ in irreps) to a perturbation given in irreps."""
        return self.tp(G, perturbation)

    def forward(self, G: torch.Tensor) -> torch.Tensor:
        """Tensor by evaluating the response on the basis of perturbations. G: (B, dim G)."""
        B = G.shape[0]
        nb = self.irreps_perturbation.dim
        basis = torch.eye(nb, dtype=G.dtype, device=G.device)
        R = self.tp(
            G[:, None, :].expand(B, nb, G.shape[1]).reshape(B * nb, -1),
            basis[None].expand(B, nb, nb).reshape(B * nb, nb),
        ).reshape(B, nb, -1)  # R[b, c, a] = response component a to unit perturbation c
        Q = self.Q.to(G.dtype)
        if self.kind == "dielectric":
            return R.transpose(1, 2)  # ε_ij = D_i(E = e_j)
        if self.kind == "piezo":
            return torch.einsum("bci,cjk->bijk", R, Q)
        return torch.einsum("aij,bca,ckl->bijkl", Q, R, Q)

    def autograd_tensor(self, G: torch.Tensor) -> torch.Tensor:
        """The paper's form: differentiate the response w.r.t. a Cartesian perturbation at zero."""
        B = G.shape[0]
        Q = self.Q.to(G.dtype)
        if self.kind == "dielectric":
            E = torch.zeros(B, 3, dtype=G.dtype, device=G.device, requires_grad=True)
            D = self.tp(G, E)
            rows = [torch.autograd.grad(D[:, i].sum(), E, create_graph=True)[0] for i in range(3)]
            return torch.stack(rows, dim=1)
        eps = torch.zeros(B, 3, 3, dtype=G.dtype, device=G.device, requires_grad=True)
        s = torch.einsum("aij,bij->ba", Q, eps)
        out = self.tp(G, s)
        if self.kind == "piezo":
            rows = [
                torch.autograd.grad(out[:, i].sum(), eps, create_graph=True)[0] for i in range(3)
            ]
            return torch.stack(rows, dim=1)
        sigma = torch.einsum("aij,ba->bij", Q, out)
        grads = [
            torch.autograd.grad(sigma[:, i, j].sum(), eps, create_graph=True)[0]
            for i in range(3)
            for j in range(3)
        ]
        return torch.stack(grads, dim=1).reshape(B, 3, 3, 3, 3)
