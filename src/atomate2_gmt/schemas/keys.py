"""A stable key for a crystal structure: :func:`structure_key` (see
:mod:`atomate2_gmt.tensors.symmetry.keys`, where it is computed from the spglib dataset that
:class:`~atomate2_gmt.tensors.symmetry.analysis.SymmetryAnalysis` holds)."""

from atomate2_gmt.tensors.symmetry.keys import (
    KEY_VERSION,
    Cell,
    _canonical_sites,
    _lattice_parameters,
    _metric_preserving,
    _niggli_right_handed,
    key_from_dataset,
    primitive_standard_cell,
    spglib_cell,
    structure_key,
    symmetry_dataset,
)

__all__ = [
    "KEY_VERSION",
    "Cell",
    "_canonical_sites",
    "_lattice_parameters",
    "_metric_preserving",
    "_niggli_right_handed",
    "key_from_dataset",
    "primitive_standard_cell",
    "spglib_cell",
    "structure_key",
    "symmetry_dataset",
]
