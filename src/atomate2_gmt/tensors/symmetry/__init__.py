"""Crystal point groups and exact symmetry projectors for dielectric, piezo and elastic tensors.

All matrices are Cartesian, in the structure's own frame (the frame of ``structure.lattice``).
A point-group operation ``R`` acts on a Cartesian vector as ``r -> R r`` and on a tensor as
``T'_{ij..} = R_ia R_jb .. T_ab..`` (polar tensors, no det(R) factor).

Modules:

- :mod:`.policy`: the tolerances (symprec, angle tolerances), in one place;
- :mod:`.search`: the native numpy search (spglib's tolerance rules, several times faster than
  ``spglib.get_symmetry_dataset`` on small cells) and the spglib backend;
- :mod:`.groups`: :func:`point_group_info` (exactly orthogonal Cartesian operations, closed to
  float precision), :func:`check_group`, :func:`refined_structure`;
- :mod:`.projectors`: :func:`projector`, :func:`symmetrize`, :func:`zero_mask`, ...;
- :mod:`.keys`: the structure key from spglib's dataset (:func:`structure_key` in
  :mod:`.analysis`);
- :mod:`.analysis`: :class:`SymmetryAnalysis`, one analysis per (structure, symprec) giving
  the operations, the dataset, the key, the IEEE rotation and emmet's ``SymmetryData``.

See docs/conventions.md for the tolerance policy.
"""

from atomate2_gmt.tensors.symmetry.analysis import SymmetryAnalysis, structure_key
from atomate2_gmt.tensors.symmetry.groups import (
    CRYSTAL_SYSTEM_OF_POINT_GROUP,
    CRYSTAL_SYSTEMS,
    SNAP_TOLERANCE,
    PointGroupInfo,
    cartesian_operations,
    check_group,
    point_group_info,
    point_group_operations,
    refined_structure,
    snap_operations,
)
from atomate2_gmt.tensors.symmetry.policy import ANGLE_TOLERANCE, KEY_ANGLE_TOLERANCE, SYMPREC
from atomate2_gmt.tensors.symmetry.projectors import (
    intrinsic_projector,
    projector,
    symmetrize,
    symmetry_residual,
    tie_pairs,
    zero_mask,
)
from atomate2_gmt.tensors.symmetry.search import Backend, angle_tolerance_matters

__all__ = [
    "ANGLE_TOLERANCE",
    "CRYSTAL_SYSTEMS",
    "CRYSTAL_SYSTEM_OF_POINT_GROUP",
    "KEY_ANGLE_TOLERANCE",
    "SNAP_TOLERANCE",
    "SYMPREC",
    "Backend",
    "PointGroupInfo",
    "SymmetryAnalysis",
    "angle_tolerance_matters",
    "cartesian_operations",
    "check_group",
    "intrinsic_projector",
    "point_group_info",
    "point_group_operations",
    "projector",
    "refined_structure",
    "snap_operations",
    "structure_key",
    "symmetrize",
    "symmetry_residual",
    "tie_pairs",
    "zero_mask",
]
