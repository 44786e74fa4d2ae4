"""GMTNet: invariant Comformer layers → equivariant TFN layers → point-group-exact tensor head."""

from __future__ import annotations

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from torch import nn

from atomate2_gmt.model.batch import CrystalBatch
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.equivariant_symmetry import irrep_projectors, project_features
from atomate2_gmt.model.heads import TensorHead, feature_irreps
from atomate2_gmt.model.layers import TFNLayer, hidden_irreps, scatter_mean
from atomate2_gmt.model.tensor_model import TensorModel


class GMTNet(TensorModel):
    """The GMTNet model for one task (see docs/model.md for the irreps of every layer).

    ``forward`` returns full Cartesian tensors (B, 3, ..., 3) in the frame of each input structure,
    in the task's units (dimensionless, C/m², GPa), float64 after the symmetry projection. The
    output is head(G) · target_scale + iso(target_offset), projected onto the crystal's
    symmetric subspace (:class:`~atomate2_gmt.model.tensor_model.TensorModel`).
    """

    arch = "gmtnet"

    def _build(self, config: GMTNetConfig) -> None:
        d = config.node_dim
        self._build_trunk(config)
        self.irreps_sh = o3.Irreps.spherical_harmonics(config.lmax_sh)
        self.to_equivariant = nn.Linear(d, config.scalar_mul)
        irreps: o3.Irreps = o3.Irreps(f"{config.scalar_mul}x0e")
        gate = hidden_irreps(config.scalar_mul, config.vector_mul, config.hidden_lmax)
        layers = []
        for n in range(config.n_equivariant_layers):
            last = n == config.n_equivariant_layers - 1
            layer = TFNLayer(
                irreps,
                self.irreps_sh,
                feature_irreps(config.kind, config.out_mul) if last else None,
                edge_dim=d,
                radial_hidden=config.radial_hidden,
                gate=None if last else gate,
                residual=(n == 0),
            )
            layers.append(layer)
            irreps = layer.irreps_out
        self.equivariant_layers = nn.ModuleList(layers)
        self.irreps_feature = irreps
        # an MLP of the invariant trunk's pooled features added to the scalar channels of G (the
        # head is linear in G): an invariant added to 0e channels keeps exact O(3)-equivariance
        self.shortcut: nn.Module | None = None
        if config.invariant_shortcut:
            scalar = [
                sl
                for (_, ir), sl in zip(irreps, irreps.slices(), strict=True)
                if ir == o3.Irrep("0e")
            ]
            self._shortcut_slice = scalar[0]
            self.shortcut = nn.Sequential(
                nn.Linear(d, d), nn.SiLU(), nn.Linear(d, scalar[0].stop - scalar[0].start)
            )
        # per-irrep-channel normalisation of G: a fixed scaling in eval mode, so it commutes with
        # the point-group projector and keeps equivariance exact
        self.feature_norm: nn.Module | None = (
            e3nn_nn.BatchNorm(irreps) if config.feature_norm else None
        )
        self.head = TensorHead(config.kind, irreps)

    def crystal_features(self, batch: CrystalBatch) -> torch.Tensor:
        """The crystal feature G (B, irreps_feature.dim), projected if the config says so."""
        g = batch.graph
        f, e = self.trunk_features(g)
        x = self.to_equivariant(f)
        sh = o3.spherical_harmonics(
            self.irreps_sh, g.edge_vec, normalize=True, normalization="component"
        )
        for tfn in self.equivariant_layers:
            x = tfn(x, sh, e, g.edge_src, g.edge_dst)
        G = scatter_mean(x, g.node_graph, g.n_graphs)
        if self.shortcut is not None:
            pooled = self.shortcut(scatter_mean(f, g.node_graph, g.n_graphs))
            sl = self._shortcut_slice
            G = torch.cat([G[:, : sl.start], G[:, sl] + pooled, G[:, sl.stop :]], dim=1)
        if self.feature_norm is not None:
            G = self.feature_norm(G)
        if self.config.feature_projection:
            P = irrep_projectors(batch.ops, self.irreps_feature)
            G = project_features(G, self.irreps_feature, P)
        return G

    def forward(self, batch: CrystalBatch) -> torch.Tensor:
        """Predicted tensors (B, 3, ..., 3), float64, structure frames, task units."""
        G = self.crystal_features(batch)
        T = self.head(G).to(torch.float64) * self.target_scale + self.isotropic_offset()
        if self.config.output_projection:
            B = T.shape[0]
            flat = torch.einsum("bij,bj->bi", batch.output_projector.to(T.device), T.reshape(B, -1))
            T = flat.reshape(T.shape)
        return T
