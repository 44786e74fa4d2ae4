"""Invariant baseline: GMTNet's invariant trunk → pooled features → MLP → Voigt numbers.

The MEGNET-like baseline of the GMTNet paper's tables: the same CGCNN atom embedding, RBF edge
embedding and invariant Comformer layers as :class:`~atomate2_gmt.model.gmtnet.GMTNet`, mean-pooled
over atoms, then an MLP that regresses the *independent Voigt components* of the task directly
(6 for the symmetric 3x3 dielectric tensor, 18 for piezo e_iJ, 21 for the symmetric 6x6 elastic
matrix), assembled into the full Cartesian tensor with
:func:`atomate2_gmt.tensors.conventions.voigt_to_full`.

Every input of the trunk is an interatomic distance, so the prediction is rotation-INVARIANT: a
rotated crystal gets the same Voigt numbers, i.e. the model is not equivariant (a documented
negative control, see tests/training/test_baselines.py). With ``config.output_projection=True``
the output is group-averaged over the structure's point group with the same float64 tensor-space
projector GMTNet applies (baseline (b)): zeros and ties then hold exactly, in the structure's frame.

Like GMTNet it is a :class:`~atomate2_gmt.model.tensor_model.TensorModel` (``config``,
``target_scale``, ``dtype``, ``forward(CrystalBatch)``, ``n_parameters``), so the trainer, the
checkpoint format and ``atomate2_gmt.predict`` take it unchanged; it builds none of GMTNet's
equivariant modules. Checkpoints record ``arch = "invariant_voigt"``; the architecture factory
(``build_model``, ``model_arch``) is :mod:`atomate2_gmt.model.factory`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from atomate2_gmt.model.batch import CrystalBatch
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.layers import scatter_mean
from atomate2_gmt.model.tensor_model import TensorModel
from atomate2_gmt.tensors.conventions import FULL_SHAPE, VOIGT_SHAPE, voigt_to_full

#: Architecture tag of :class:`InvariantTensorNet` in checkpoints.
INVARIANT_ARCH = "invariant_voigt"


def independent_voigt_basis(kind: str) -> np.ndarray:
    """(3**order, n_independent) matrix A: full tensor (flattened) = A @ independent components.

    Independent components: the upper triangle (incl. diagonal) of a symmetric Voigt matrix for
    dielectric (6) and elastic (21), all 18 entries of the 3x6 piezo matrix. Column k is
    ``voigt_to_full`` of the k-th unit Voigt matrix (both mirror entries set for symmetric ones),
    so the assembly is exactly the project's Voigt convention. Units pass through unchanged.
    """
    rows, cols = VOIGT_SHAPE[kind]
    symmetric = kind in ("dielectric", "elastic")
    pairs = [(i, j) for i in range(rows) for j in range(cols) if not symmetric or j >= i]
    columns = []
    for i, j in pairs:
        unit = np.zeros((rows, cols))
        unit[i, j] = 1.0
        if symmetric:
            unit[j, i] = 1.0
        columns.append(voigt_to_full(unit, kind).reshape(-1))
    return np.stack(columns, axis=1)


class InvariantTensorNet(TensorModel):
    """Invariant Comformer trunk + MLP on the independent Voigt components (baselines a and b).

    ``forward`` returns full Cartesian tensors (B, 3, ..., 3), float64, in the task's units
    (dimensionless, C/m², GPa); point-group averaged iff ``config.output_projection``.
    Uses of the config: task, node_dim, rbf_*, n_invariant_layers, invariant_output_bn,
    output_projection; the equivariant fields are ignored.
    """

    arch = INVARIANT_ARCH
    voigt_basis: torch.Tensor

    def _build(self, config: GMTNetConfig) -> None:
        d = config.node_dim
        self._build_trunk(config)
        basis = torch.from_numpy(independent_voigt_basis(config.kind))
        self.register_buffer("voigt_basis", basis, persistent=False)
        self.readout = nn.Sequential(
            nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d), nn.SiLU(), nn.Linear(d, basis.shape[1])
        )

    @property
    def n_independent(self) -> int:
        """Number of regressed Voigt components (6, 18 or 21)."""
        return int(self.voigt_basis.shape[1])

    def crystal_features(self, batch: CrystalBatch) -> torch.Tensor:
        """Mean-pooled invariant node features (B, node_dim): a function of distances only."""
        g = batch.graph
        f, _ = self.trunk_features(g)
        return scatter_mean(f, g.node_graph, g.n_graphs)

    def voigt_components(self, batch: CrystalBatch) -> torch.Tensor:
        """The regressed independent Voigt components (B, n_independent), float64, task units."""
        h = self.crystal_features(batch)
        return self.readout(h).to(torch.float64) * self.target_scale

    def forward(self, batch: CrystalBatch) -> torch.Tensor:
        """Predicted tensors (B, 3, ..., 3), float64, task units (see class docstring)."""
        y = self.voigt_components(batch)
        offset = self.isotropic_offset().reshape(-1)
        flat = y @ self.voigt_basis.to(y.device, torch.float64).T + offset
        if self.config.output_projection:
            flat = torch.einsum("bij,bj->bi", batch.output_projector.to(flat.device), flat)
        return flat.reshape(-1, *FULL_SHAPE[self.config.kind])
