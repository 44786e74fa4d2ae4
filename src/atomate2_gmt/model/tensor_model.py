"""The interface every crystal-tensor model of the package shares: :class:`TensorModel`.

GMTNet (``model/gmtnet.py``) and the invariant baseline (``model/baselines.py``) are both
``TensorModel``\\ s: a config, the invariant trunk (CGCNN atom embedding, RBF edge embedding,
invariant Comformer layers), target normalisation buffers (``target_scale``, ``target_offset``)
and ``forward(CrystalBatch)`` returning full Cartesian tensors (B, 3, ..., 3), float64, in the
task's units. The trainer, the checkpoint format and ``atomate2_gmt.predict`` take any of them;
``model/factory.py`` builds one from a checkpoint's ``arch`` tag.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.e3nn_build import fast_e3nn_build
from atomate2_gmt.model.embedding import AtomEmbedding, EdgeEmbedding
from atomate2_gmt.model.equivariant_symmetry import default_dtype
from atomate2_gmt.model.layers import ComformerNodeLayer, TFNLayer
from atomate2_gmt.tensors.isotropic import isotropic_projector

if TYPE_CHECKING:
    from atomate2_gmt.model.batch import CrystalBatch
    from atomate2_gmt.model.graph import GraphBatch


class TensorModel(nn.Module, ABC):
    """A crystal → tensor model for one task (see the module docstring).

    Subclasses set ``arch`` (the tag stored in checkpoints) and implement :meth:`_build` (create
    the modules, the trunk first via :meth:`_build_trunk`), :meth:`crystal_features` and
    :meth:`forward`.
    """

    arch: ClassVar[str]
    target_scale: torch.Tensor
    target_offset: torch.Tensor
    offset_projector: torch.Tensor

    def __init__(self, config: GMTNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or GMTNetConfig()
        # e3nn computes its Clebsch-Gordan and change-of-basis constants in the default dtype:
        # build under float64 when asked, so a float64 model is exact to float64 precision.
        # fast_e3nn_build: e3nn's generated code, compiled once (model/e3nn_build.py)
        dtype = torch.float64 if config.dtype == "float64" else torch.float32
        with default_dtype(dtype), fast_e3nn_build():
            self._build(config)
        # target normalisation, set by the trainer and stored in checkpoints: the output is
        # raw · target_scale + iso(target_offset); iso() keeps only the O(3)-invariant part of
        # the stored offset (see isotropic_offset)
        self.register_buffer("target_scale", torch.tensor(1.0, dtype=torch.float64))
        self.register_buffer("target_offset", torch.zeros((3,) * config.order, dtype=torch.float64))
        # the offset enters through its isotropic part only (tensors.isotropic): a constant that
        # is the same in every frame, so the model stays exactly O(3)-equivariant whatever
        # target_offset a checkpoint holds
        iso = torch.from_numpy(isotropic_projector(config.order).copy())
        self.register_buffer("offset_projector", iso, persistent=False)
        if config.dtype == "float64":
            self.double()

    @abstractmethod
    def _build(self, config: GMTNetConfig) -> None:
        """Create the model's modules (called once, under the config's default dtype)."""

    def _build_trunk(self, config: GMTNetConfig) -> None:
        """The invariant trunk: atom embedding, RBF edge embedding, invariant Comformer layers."""
        d = config.node_dim
        self.atom_embedding = AtomEmbedding(d)
        self.edge_embedding = EdgeEmbedding(d, config.rbf_bins, config.rbf_vmin, config.rbf_vmax)
        self.invariant_layers = nn.ModuleList(
            ComformerNodeLayer(d, output_bn=config.invariant_output_bn)
            for _ in range(config.n_invariant_layers)
        )

    def trunk_features(self, g: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Invariant node features (n_nodes, node_dim) after the Comformer layers, and the edge
        embedding (n_edges, node_dim): functions of interatomic distances (Å) only."""
        f = self.atom_embedding(g.atomic_numbers)
        e = self.edge_embedding(torch.linalg.norm(g.edge_vec, dim=1))
        for layer in self.invariant_layers:
            f = layer(f, e, g.edge_src, g.edge_dst)
        return f, e

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the weights."""
        return self.atom_embedding.linear.weight.dtype

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.atom_embedding.linear.weight.device

    @abstractmethod
    def crystal_features(self, batch: CrystalBatch) -> torch.Tensor:
        """The pooled crystal feature (B, n_features) the output is read from."""

    @abstractmethod
    def forward(self, batch: CrystalBatch) -> torch.Tensor:
        """Predicted tensors (B, 3, ..., 3), float64, structure frames, task units."""

    def isotropic_offset(self) -> torch.Tensor:
        """The O(3)-invariant part of ``target_offset`` (task units, float64), the constant the
        model adds in every frame: δ-terms for order 2 and 4, zero for order 3. A checkpoint
        whose stored offset has an anisotropic part (a lab-frame training mean) loads and
        predicts with that part dropped."""
        flat = self.offset_projector.to(self.target_offset) @ self.target_offset.reshape(-1)
        return flat.reshape(self.target_offset.shape)

    def prepare_inference(self) -> TensorModel:
        """Eval mode, and the edge embedding's inference table and the TFN layers' mixing
        matrices built now (call before forking worker processes so they inherit them);
        returns the model."""
        self.eval()
        self.edge_embedding.build_table()
        for module in self.modules():
            if isinstance(module, TFNLayer):
                module.prepare_inference()
        return self

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
