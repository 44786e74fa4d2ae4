"""Crystal point groups: Cartesian operations in the structure's own frame.

All matrices are Cartesian, in the structure's own frame (the frame of ``structure.lattice``).
A point-group operation ``R`` acts on a Cartesian vector as ``r -> R r``. Both search backends
(:mod:`~atomate2_gmt.tensors.symmetry.search`) return exactly orthogonal matrices: the lattice
metric is averaged over the integer operations before converting to Cartesian, so the
operations are orthogonal and close under multiplication to float precision, even when the
lattice is only symmetric within tolerance. Tolerances default to
:mod:`~atomate2_gmt.tensors.symmetry.policy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import spglib

from atomate2_gmt.tensors.symmetry.policy import ANGLE_TOLERANCE, SYMPREC
from atomate2_gmt.tensors.symmetry.search import (
    _AUTO_NATIVE_MAX_SITES,
    _MAX_ATTEMPTS,
    _REDUCE_RATE,
    Backend,
    _cell_from_structure,
    _check_min_distance,
    _check_tolerances,
    _native_search,
    _raw_from_dataset,
    _RawSymmetry,
    _SearchFailedError,
    _spglib_dataset,
    _spglib_search,
)

if TYPE_CHECKING:
    from numpy.typing import ArrayLike
    from pymatgen.core import IStructure, Structure

__all__ = [
    "CRYSTAL_SYSTEMS",
    "CRYSTAL_SYSTEM_OF_POINT_GROUP",
    "SNAP_TOLERANCE",
    "PointGroupInfo",
    "cartesian_operations",
    "check_group",
    "point_group_from_dataset",
    "point_group_info",
    "point_group_operations",
    "refined_structure",
    "snap_operations",
]

#: The seven crystal systems, from lowest to highest symmetry.
CRYSTAL_SYSTEMS: tuple[str, ...] = (
    "triclinic",
    "monoclinic",
    "orthorhombic",
    "tetragonal",
    "trigonal",
    "hexagonal",
    "cubic",
)

CRYSTAL_SYSTEM_OF_POINT_GROUP: dict[str, str] = {
    **dict.fromkeys(("1", "-1"), "triclinic"),
    **dict.fromkeys(("2", "m", "2/m"), "monoclinic"),
    **dict.fromkeys(("222", "mm2", "mmm"), "orthorhombic"),
    **dict.fromkeys(("4", "-4", "4/m", "422", "4mm", "-42m", "4/mmm"), "tetragonal"),
    **dict.fromkeys(("3", "-3", "32", "3m", "-3m"), "trigonal"),
    **dict.fromkeys(("6", "-6", "6/m", "622", "6mm", "-6m2", "6/mmm"), "hexagonal"),
    **dict.fromkeys(("23", "m-3", "432", "-43m", "m-3m"), "cubic"),
}
"""Hermann–Mauguin point-group symbol (spglib spelling) -> crystal system: pymatgen's
``PointGroup(symbol).crystal_system`` for all 32 (tests/tensors/test_pymatgen_agreement.py),
written out because building the 32 ``PointGroup`` objects (their operations) takes 0.44 s,
which every import of the tensors layer would pay."""
_ORTHO_ATOL = 1e-6  # orthogonality / closure tolerance for user-supplied operations


# ----------------------------------------------------------------------------------------------
# Cartesian operations
# ----------------------------------------------------------------------------------------------
def _sqrtm_spd(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Square root and inverse square root of a symmetric positive definite matrix."""
    w, v = np.linalg.eigh(0.5 * (m + m.T))
    return (v * np.sqrt(w)) @ v.T, (v / np.sqrt(w)) @ v.T


def cartesian_operations(
    lattice: ArrayLike, rotations: ArrayLike
) -> tuple[np.ndarray, float, np.ndarray]:
    """Exactly orthogonal Cartesian matrices of integer operations in the basis ``lattice``.

    ``lattice`` holds the basis vectors as rows (Å); ``rotations`` (n, 3, 3) act on fractional
    column vectors (x' = W x) and must form a group. The raw maps R_g = A W_g A^-1 (A =
    lattice^T) are orthogonal only if the lattice is exactly symmetric. With the symmetric
    positive definite H = <R_g^T R_g> (invariant: R_h^T H R_h = H), the returned operations
    H^1/2 R_g H^-1/2 are orthogonal and close to float precision; they are the exact operations
    of the lattice H^1/2 A, i.e. the input lattice with a small symmetric stretch and no
    rotation, and do not depend on the basis chosen for the lattice.

    Returns (ops (n, 3, 3), defect, symmetric lattice rows): defect is the largest spectral
    norm |R_g - op_g|, the lattice's own deviation from the symmetry.
    """
    lat = np.asarray(lattice, dtype=float)
    w = np.asarray(rotations, dtype=float)
    a = lat.T
    raw = a @ w @ np.linalg.inv(a)
    h = np.tensordot(raw, raw, axes=([0, 1], [0, 1])) / len(raw)
    h_half, h_inv_half = _sqrtm_spd(h)
    ops = h_half @ raw @ h_inv_half
    ops[np.all(w == np.eye(3), axis=(1, 2))] = np.eye(3)  # the identity stays exact
    defect = float(np.max(np.linalg.norm(raw - ops, ord=2, axis=(1, 2))))
    return ops, defect, lat @ h_half


#: Entries of crystallographic operations in a frame aligned with the symmetry axes.
_SNAP_VALUES = np.array([0.0, 0.5, -0.5, 1.0, -1.0, np.sqrt(3) / 2, -np.sqrt(3) / 2])
#: Operations whose entries all lie this close to those values are snapped onto them.
SNAP_TOLERANCE = 1e-6


def snap_operations(ops: np.ndarray, tol: float = SNAP_TOLERANCE) -> np.ndarray:
    """Snap operations to exact entries (0, ±1/2, ±√3/2, ±1) when all lie within ``tol``.

    Lattices are stored to finite precision (the MP data to 1e-6 Å), so operations of a crystal
    whose axes lie along x, y, z come out with ~1e-7 off-axis entries; the projector then leaks
    ~1e-7·|T| into forbidden components (7e-5 GPa for a 400 GPa elastic tensor, above the 1e-5
    zero criterion). Snapping makes zeros exact in such frames. All or nothing: if any entry is
    not close to one of the values (a frame not aligned with the symmetry axes), or the snapped
    matrices are not orthogonal to 1e-12, the operations are returned unchanged.
    """
    diff = np.abs(ops[..., None] - _SNAP_VALUES)
    if diff.min(axis=-1).max() >= tol:
        return ops
    snapped = _SNAP_VALUES[diff.argmin(axis=-1)]
    eye = np.eye(3)
    if np.abs(snapped @ np.swapaxes(snapped, 1, 2) - eye).max() > 1e-12:
        return ops
    return snapped


# ----------------------------------------------------------------------------------------------
# public: point groups
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PointGroupInfo:
    """A crystal's point group in its own Cartesian frame.

    ``ops`` (n, 3, 3) are orthogonal Cartesian matrices (identity first); ``point_group`` is the
    Hermann–Mauguin symbol (e.g. "-43m"); ``crystal_system`` one of triclinic, monoclinic,
    orthorhombic, tetragonal, trigonal, hexagonal, cubic; ``symprec`` (Å) and
    ``angle_tolerance`` (degrees) are the tolerances that produced it (smaller than requested
    if the search had to be retried); ``lattice_defect`` is the largest spectral-norm distance
    between an operation and the raw lattice map A W A^-1 (0 for an ideal lattice).
    """

    ops: np.ndarray
    point_group: str
    crystal_system: str
    symprec: float
    angle_tolerance: float
    lattice_defect: float
    rotations: np.ndarray = field(repr=False)
    translations: np.ndarray = field(repr=False)
    lattice: np.ndarray = field(repr=False)
    _space_group: tuple[int, str] | None = field(default=None, repr=False)

    @cached_property
    def _space_group_type(self) -> tuple[int, str]:
        if self._space_group is not None:
            return self._space_group
        sg = spglib.get_spacegroup_type_from_symmetry(
            self.rotations.astype(np.intc), self.translations, self.lattice, symprec=self.symprec
        )
        if sg is None:
            raise ValueError("spglib could not identify the space group of these operations")
        return int(sg.number), str(sg.international_short)

    @property
    def space_group_number(self) -> int:
        """International space-group number (1-230), computed on first access."""
        return self._space_group_type[0]

    @property
    def space_group_symbol(self) -> str:
        """Short international space-group symbol, e.g. "Fm-3m", computed on first access."""
        return self._space_group_type[1]

    @property
    def order(self) -> int:
        """Number of point-group operations."""
        return len(self.ops)


def point_group_info(
    structure: IStructure,
    symprec: float = SYMPREC,
    angle_tolerance: float = ANGLE_TOLERANCE,
    backend: Backend = "auto",
) -> PointGroupInfo:
    """Point group of a periodic structure, with Cartesian operations in its own frame.

    ``symprec`` is a Cartesian distance in Å, ``angle_tolerance`` in degrees (<= 0: unused).
    If the operations found do not form a group, the search is retried with both tolerances
    multiplied by 0.95 (at most 19 times, down to 0.38 x); if it still fails a ``ValueError``
    is raised. Disordered structures, molecules, NaN coordinates and overlapping sites raise a
    ``ValueError``.
    ``backend``: "native" (numpy search), "spglib" (spglib's dataset) or "auto" (native up to
    64 sites, spglib above, whichever is faster); both give the same groups on the shipped data.
    """
    _check_tolerances(symprec, angle_tolerance)
    if backend not in ("auto", "native", "spglib"):
        raise ValueError(f"unknown backend {backend!r}; valid: 'auto', 'native', 'spglib'")
    lattice, frac, types = _cell_from_structure(structure)
    _check_min_distance(lattice, frac, symprec)
    if backend == "auto":
        backend = "native" if len(frac) <= _AUTO_NATIVE_MAX_SITES else "spglib"
    search = _native_search if backend == "native" else _spglib_search
    errors = []
    sp, at = symprec, angle_tolerance
    for _ in range(_MAX_ATTEMPTS):
        try:
            raw = search(lattice, frac, types, sp, at)
            break
        except _SearchFailedError as exc:
            errors.append(f"symprec={sp:g}: {exc}")
            sp, at = sp * _REDUCE_RATE, at * _REDUCE_RATE
    else:
        raise ValueError("symmetry search failed at every tolerance tried: " + "; ".join(errors))
    return _info_of(raw)


def point_group_from_dataset(
    structure: IStructure,
    dataset: Any,
    symprec: float = SYMPREC,
    angle_tolerance: float = ANGLE_TOLERANCE,
) -> PointGroupInfo:
    """:func:`point_group_info` with the spglib backend, read from ``dataset``: a symmetry
    dataset spglib has already found for ``structure`` at ``symprec`` (no second search).

    The caller vouches that it is the dataset that search would find, as
    :meth:`~atomate2_gmt.tensors.symmetry.analysis.SymmetryAnalysis.point_group_of_dataset`
    checks: sites typed by species as spglib typed them, and an ``angle_tolerance`` that does
    not change the lattice operations (:func:`~atomate2_gmt.tensors.symmetry.search.
    angle_tolerance_matters`). Raises ``ValueError`` where :func:`point_group_info` would,
    or where the dataset's operations do not form a group.
    """
    _check_tolerances(symprec, angle_tolerance)
    lattice, frac, _ = _cell_from_structure(structure)
    _check_min_distance(lattice, frac, symprec)
    try:
        raw = _raw_from_dataset(dataset, lattice, symprec, angle_tolerance)
    except _SearchFailedError as exc:
        raise ValueError(f"symmetry dataset unusable: {exc}") from None
    return _info_of(raw)


def _info_of(raw: _RawSymmetry) -> PointGroupInfo:
    """The :class:`PointGroupInfo` of a search's integer operations."""
    ops, defect, _ = cartesian_operations(raw.lattice, raw.rotations)
    ops = snap_operations(ops)
    try:
        system = CRYSTAL_SYSTEM_OF_POINT_GROUP[raw.point_group]
    except KeyError:
        raise ValueError(f"unrecognised point group symbol {raw.point_group!r}") from None
    return PointGroupInfo(
        ops=ops,
        point_group=raw.point_group,
        crystal_system=system,
        symprec=raw.symprec,
        angle_tolerance=raw.angle_tolerance,
        lattice_defect=defect,
        rotations=raw.rotations,
        translations=raw.translations,
        lattice=raw.lattice,
        _space_group=raw.space_group,
    )


def point_group_operations(
    structure: IStructure, symprec: float = SYMPREC, angle_tolerance: float = ANGLE_TOLERANCE
) -> np.ndarray:
    """The crystal's point-group operations, (n, 3, 3) orthogonal Cartesian matrices in the
    structure's own frame, deduplicated, identity first, closed under multiplication."""
    return point_group_info(structure, symprec, angle_tolerance).ops


def check_group(ops: ArrayLike, atol: float = _ORTHO_ATOL) -> np.ndarray:
    """Validate Cartesian operations: shape (n, 3, 3), finite, orthogonal and closed under
    multiplication within ``atol``. Returns them as a float array; raises ``ValueError``."""
    arr = np.asarray(ops, dtype=float)
    if arr.ndim == 2 and arr.shape == (3, 3):
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (3, 3) or len(arr) == 0:
        raise ValueError(f"operations must have shape (n, 3, 3), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("operations contain NaN or infinite values")
    gram = arr @ arr.transpose(0, 2, 1)
    if np.abs(gram - np.eye(3)).max() > atol:
        raise ValueError(f"operations are not orthogonal (|R R^T - I| > {atol})")
    flat = arr.reshape(len(arr), 9)
    prods = (arr[:, None] @ arr[None, :]).reshape(-1, 9)
    # every product must coincide with some operation: |P - Q|^2 = 6 - 2 P.Q for orthogonal P, Q
    best = (prods @ flat.T).max(axis=1)
    if np.any(6.0 - 2.0 * best > (3 * atol) ** 2 + 1e-12):
        raise ValueError("operations do not form a group (not closed under multiplication)")
    return arr


# ----------------------------------------------------------------------------------------------
# public: structure correction
# ----------------------------------------------------------------------------------------------
def refined_structure(
    structure: IStructure, symprec: float = SYMPREC, angle_tolerance: float = ANGLE_TOLERANCE
) -> Structure:
    """spglib's idealised structure, in the input's Cartesian orientation, cell and site order.

    spglib's dataset at ``symprec`` (Å) / ``angle_tolerance`` (degrees) gives the idealised
    standard cell (lattice rotated by ``std_rotation_matrix`` R, exact Wyckoff positions) and
    the map x_std = P x + p from the input cell. The lattice is rotated back (R^T) and
    transformed back (P), and every input site is moved onto the idealised standard site it
    corresponds to (same species, same position modulo the standard lattice), so the result is
    exactly symmetric, has the input's sites in the input's order, species and site properties,
    and differs from the input by at most ~symprec per site.
    """
    from pymatgen.core import Lattice
    from pymatgen.core import Structure as _Structure

    _check_tolerances(symprec, angle_tolerance)
    lattice, frac, types = _cell_from_structure(structure)
    _check_min_distance(lattice, frac, symprec)
    try:
        ds = _spglib_dataset(lattice, frac, types, symprec, angle_tolerance)
    except _SearchFailedError as exc:
        raise ValueError(str(exc)) from None
    p_mat = np.asarray(ds.transformation_matrix, dtype=float)
    shift = np.asarray(ds.origin_shift, dtype=float)
    rot = np.asarray(ds.std_rotation_matrix, dtype=float)
    std_cols = np.asarray(ds.std_lattice, dtype=float).T  # idealised, rotated by R
    new_cols = rot.T @ std_cols @ p_mat  # (a b c) = (a_s b_s c_s) P, rotated back
    std_pos = np.asarray(ds.std_positions, dtype=float)
    std_types = np.asarray(ds.std_types)
    y = frac @ p_mat.T + shift  # input sites in standard fractional coordinates
    y_new = np.empty_like(y)
    std_metric = std_cols.T @ std_cols
    for k in range(len(y)):
        cand = np.flatnonzero(std_types == types[k])
        d = y[k] - std_pos[cand]
        n = np.rint(d)
        r = d - n
        dist = np.sqrt(np.einsum("ci,ij,cj->c", r, std_metric, r))
        best = int(np.argmin(dist))
        if dist[best] > 2 * symprec:
            raise ValueError(
                f"site {k} is {dist[best]:.3g} Å from every idealised site of its species"
            )
        y_new[k] = std_pos[cand[best]] + n[best]
    new_frac = (y_new - shift) @ np.linalg.inv(p_mat).T
    return _Structure(
        Lattice(new_cols.T),
        [site.species for site in structure],
        new_frac,
        site_properties=structure.site_properties or None,
    )
