"""The symmetry tolerances of the package, in one place.

Every symmetry search of a structure takes its tolerances from here (through
:class:`~atomate2_gmt.tensors.symmetry.analysis.SymmetryAnalysis` or the defaults of the search
functions):

- :data:`SYMPREC` (Å): the Cartesian distance within which atoms (and lattice vector lengths)
  count as equal; the default of every search, of ``symprec`` options and of the documents.
- :data:`ANGLE_TOLERANCE` (degrees): lattice angles within which the point-group search counts
  lattice vectors as equal (pymatgen's ``SpacegroupAnalyzer`` default, so the point group, the
  symmetry data and the IEEE frame agree with pymatgen's).
- :data:`KEY_ANGLE_TOLERANCE`: spglib's default -1 (lattice angles judged by ``symprec`` as a
  distance), used by the spglib dataset behind the structure key and the candidates' space
  group. It is part of the key's definition: changing it changes keys already stored.

Where the two angle tolerances could give different datasets
(:func:`~atomate2_gmt.tensors.symmetry.search.angle_tolerance_matters`), the IEEE frame is taken
from pymatgen's own search at :data:`SYMPREC` / :data:`ANGLE_TOLERANCE` rather than from the
key's dataset.
"""

from __future__ import annotations

__all__ = ["ANGLE_TOLERANCE", "KEY_ANGLE_TOLERANCE", "SYMPREC"]

SYMPREC = 0.01
"""Default symmetry distance tolerance (Å)."""

ANGLE_TOLERANCE = 5.0
"""Default angle tolerance of the point-group search and of the IEEE frame (degrees)."""

KEY_ANGLE_TOLERANCE = -1.0
"""spglib's angle tolerance for the structure key's dataset (-1: judged by ``symprec``)."""
