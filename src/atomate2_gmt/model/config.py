"""GMTNetConfig: one dataclass describing a GMTNet model for any of the tensor tasks."""

from __future__ import annotations

import math
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
        check_config_dict(d)
        return cls(**d)


#: Inclusive ranges of the size fields of a config read from a file, checked before any model
#: is built: about 8x the shipped models (node_dim 128, scalar_mul 64, vector_mul 8, out_mul 16,
#: radial_hidden 128, rbf_bins 512). The largest model within them (elastic, every size at its
#: bound, 4+4 layers) has 6e7 weights and builds in 0.6 GB; a node_dim of 10⁹ asked for 360 GB.
SIZE_BOUNDS: dict[str, tuple[float, float]] = {
    "k_neighbors": (1, 128),
    "max_radius": (1.0, 50.0),
    "max_sites": (1, 100_000),
    "atom_feature_dim": (1, 256),
    "node_dim": (1, 1024),
    "rbf_bins": (2, 4096),
    "rbf_vmin": (-100.0, 100.0),
    "rbf_vmax": (-100.0, 100.0),
    "n_invariant_layers": (0, 12),
    "n_equivariant_layers": (1, 12),
    "lmax_sh": (-1, 8),
    "scalar_mul": (1, 512),
    "vector_mul": (1, 64),
    "hidden_lmax": (-1, 8),
    "out_mul": (1, 128),
    "radial_hidden": (1, 1024),
    "symprec": (1e-6, 1.0),
    "angle_tolerance": (-1.0, 180.0),
}
#: ``options`` is free-form, but bounded: at most this many values in all (every visit of a
#: shared value counts, so a "billion laughs" of shared references stops here), this depth and
#: strings this long.
OPTIONS_MAX_VALUES = 1000
OPTIONS_MAX_DEPTH = 8
OPTIONS_MAX_STRING = 1000


def check_config_dict(d: Any) -> None:
    """Refuse a config dict (as read from a checkpoint) whose fields are not of their declared
    type, whose sizes are outside :data:`SIZE_BOUNDS`, or whose ``options`` are not a small
    JSON-like tree; raises ValueError with the first reason. Nothing is built or copied before
    this passes (a deep copy of a billion-laughs ``options`` never ends)."""
    if not isinstance(d, dict):
        raise ValueError(f"config is a {type(d).__name__}, not a dict")
    declared = {f.name: f.type for f in fields(GMTNetConfig)}
    unknown = [k for k in d if k not in declared]
    if unknown:
        raise ValueError(f"unknown GMTNetConfig fields: {sorted(map(str, unknown))[:10]}")
    for name, value in d.items():
        kind = declared[name]
        if kind == "bool":
            ok = isinstance(value, bool)
        elif kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind == "float":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and math.isfinite(value)
        elif kind == "str":
            ok = isinstance(value, str) and len(value) <= 100
        else:  # options
            ok = isinstance(value, dict)
        if not ok:
            shown = repr(value) if isinstance(value, int | float | bool) else type(value).__name__
            raise ValueError(f"config field {name!r} must be a {kind}, got {shown[:60]}")
        if name in SIZE_BOUNDS:
            low, high = SIZE_BOUNDS[name]
            if not low <= value <= high:
                raise ValueError(
                    f"config field {name!r} = {value!r} is outside [{low:g}, {high:g}] "
                    "(model.config.SIZE_BOUNDS): refused before building the model"
                )
    _check_options(d.get("options", {}))


def _check_options(options: Any) -> None:
    """``options`` must be a JSON-like tree within the ``OPTIONS_*`` bounds."""
    budget = [OPTIONS_MAX_VALUES]

    def visit(value: Any, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise ValueError(
                f"config options hold more than {OPTIONS_MAX_VALUES} values (shared references "
                "count each time they appear): refused"
            )
        if depth > OPTIONS_MAX_DEPTH:
            raise ValueError(f"config options are nested deeper than {OPTIONS_MAX_DEPTH}: refused")
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    raise ValueError("config options keys must be strings")
                visit(v, depth + 1)
        elif isinstance(value, list | tuple):
            for v in value:
                visit(v, depth + 1)
        elif isinstance(value, str):
            if len(value) > OPTIONS_MAX_STRING:
                raise ValueError(f"a config option string is longer than {OPTIONS_MAX_STRING}")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError("a config option is not finite")
        elif value is not None and not isinstance(value, bool | int):
            raise ValueError(f"config options hold a {type(value).__name__}, not JSON data")

    visit(options, 0)
