"""Atom and edge embeddings: the CGCNN atom table and a Gaussian RBF of −0.75/r."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np
import torch
from torch import nn

from atomate2_gmt.model.graph import MAX_Z


@lru_cache(maxsize=1)
def cgcnn_table() -> np.ndarray:
    """The 92-d CGCNN one-hot atom features, row Z for atomic number Z (row 0 unused, zeros)."""
    text = resources.files("atomate2_gmt.model").joinpath("resources/cgcnn_atom_init.json")
    data = json.loads(text.read_text())
    dim = len(next(iter(data.values())))
    table = np.zeros((MAX_Z + 1, dim), dtype=np.float32)
    for key, vec in data.items():
        z = int(key)
        if 1 <= z <= MAX_Z:
            table[z] = vec
    return table


class AtomEmbedding(nn.Module):
    """Atomic number → 92-d CGCNN features → Linear(out_dim)."""

    table: torch.Tensor

    def __init__(self, out_dim: int = 128) -> None:
        super().__init__()
        table = torch.from_numpy(cgcnn_table())
        self.register_buffer("table", table, persistent=False)
        self.linear = nn.Linear(table.shape[1], out_dim)

    def forward(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        """(N,) int → (N, out_dim)."""
        return self.linear(self.table[atomic_numbers].to(self.linear.weight.dtype))


class EdgeEmbedding(nn.Module):
    """Edge length r (Å) → x = −0.75/r → Gaussian RBFs on [vmin, vmax] → Linear → Softplus."""

    centers: torch.Tensor

    def __init__(
        self, out_dim: int = 128, bins: int = 512, vmin: float = -4.0, vmax: float = 0.0
    ) -> None:
        super().__init__()
        centers = torch.linspace(vmin, vmax, bins)
        self.register_buffer("centers", centers, persistent=False)
        self.gamma = 1.0 / float((vmax - vmin) / (bins - 1))  # inverse centre spacing
        self.linear = nn.Linear(bins, out_dim)
        self.act = nn.Softplus()

    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        """(E,) Å → (E, out_dim)."""
        x = -0.75 / lengths
        rbf = torch.exp(-self.gamma * (x[:, None] - self.centers.to(x.dtype)) ** 2)
        return self.act(self.linear(rbf))
