"""GMTNetConfig: one dataclass describing a GMTNet model for any of the tensor tasks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from atomate2_gmt.tensors.tasks import KIND_RANK, TASK_SPECS, check_task

__all__ = ["TASK_KIND", "TASK_UNITS", "GMTNetConfig", "check_task"]

#: Tasks the model predicts, and the tensor kind (order, intrinsic symmetry) of each.
TASK_KIND: dict[str, str] = {t: s.kind for t, s in TASK_SPECS.items()}

#: Units of the predicted tensor per task.
TASK_UNITS: dict[str, str] = {t: s.units for t, s in TASK_SPECS.items()}


@dataclass
class GMTNetConfig:
    """Hyper-parameters of a GMTNet model (architecture + graph + symmetry options).

    Lengths are in Å. ``lmax_sh`` is the highest spherical-harmonic order of the edge directions; it
    must reach the order the head needs (3 for piezo, 4 for elastic) or some symmetry-allowed
    components are unreachable for crystals whose atoms sit on cubic sites (see docs/model.md).
    """

    task: str = "dielectric"
    # graph
    k_neighbors: int = 16
    max_radius: float = 12.0  # Å: an atom whose k-th neighbour is further away is rejected
    max_sites: int = 2000
    # embeddings
    atom_feature_dim: int = 92
    node_dim: int = 128
    rbf_bins: int = 512
    rbf_vmin: float = -4.0
    rbf_vmax: float = 0.0
    # invariant (Comformer) layers
    n_invariant_layers: int = 2
    invariant_output_bn: bool = True  # paper eq. 2 applies BN to the aggregated message
    # equivariant (tensor-field-network) layers
    n_equivariant_layers: int = 3
    lmax_sh: int = -1  # -1: the order the head needs
    scalar_mul: int = 64
    vector_mul: int = 8  # multiplicity of every l >= 1 irrep (both parities) in hidden layers
    hidden_lmax: int = -1  # highest l of the hidden features; -1: the order the head needs
    # add an MLP of the mean-pooled invariant node features to the scalar (0e) channels of G
    # (dielectric and elastic; piezo's G has no scalar part)
    invariant_shortcut: bool = False
    out_mul: int = 16  # multiplicity of each irrep of the crystal feature G
    radial_hidden: int = 128
    feature_norm: bool = True  # equivariant BatchNorm on G: its l >= 1 parts start O(1)
    # symmetry
    symprec: float = 0.01
    angle_tolerance: float = 5.0
    refine_structure: bool = False  # the paper's "structure correction" before the graph is built
    feature_projection: bool = True  # G <- P G with the Wigner-D projector of the point group
    output_projection: bool = True  # tensor-space projector of tensors.symmetry on the output
    # numerics
    dtype: str = "float32"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_task(self.task)
        if self.lmax_sh < 0:
            self.lmax_sh = self.head_lmax
        if self.hidden_lmax < 0:
            self.hidden_lmax = self.head_lmax
        if self.invariant_shortcut and self.kind == "piezo":
            raise ValueError("invariant_shortcut: piezo's crystal feature has no scalar (0e) part")
        if self.k_neighbors < 1:
            raise ValueError("k_neighbors must be >= 1")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', not {self.dtype!r}")

    @property
    def kind(self) -> str:
        """Tensor kind of the task: 'dielectric', 'piezo' or 'elastic'."""
        return TASK_KIND[self.task]

    @property
    def order(self) -> int:
        """Tensor order (2, 3 or 4)."""
        return KIND_RANK[self.kind]

    @property
    def head_lmax(self) -> int:
        """Highest l of the crystal feature G that the head uses: the tensor order (a rank-n
        tensor holds irreps up to l = n, and the head can only use what G carries)."""
        return KIND_RANK[self.kind]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GMTNetConfig:
        """Build from :meth:`as_dict` output; unknown keys (a mismatched checkpoint) raise."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown GMTNetConfig fields: {sorted(unknown)}")
        return cls(**d)
