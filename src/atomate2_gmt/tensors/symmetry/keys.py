"""A stable key for a crystal structure, independent of how the cell is written down.

:func:`structure_key` hashes a canonical form of the crystal: spglib's primitive standardised
cell (symmetrised at ``symprec``), Niggli-reduced and made right-handed, with the remaining
freedom (the lattice's proper rotations that keep the reduced metric, and the origin) removed by
taking the lexicographically smallest description. The key is therefore the same for any atom
order, origin shift, supercell or rigid rotation of the same crystal, while enantiomorphs
(mirror images) and different compositions, structures or volumes get different keys. Fractional
coordinates are compared on a 1e-3 grid and lattice lengths/angles to 1e-3 Å / 1e-2 degrees.

The key identifies one description up to round-off: two relaxations of the same material that
differ by more than that can get different keys (use pymatgen's ``StructureMatcher`` to match
near-identical crystals).

The primitive standardised cell is derived from one ``spglib.get_symmetry_dataset`` call (its
idealised conventional cell reduced by the centring of the space group, as
``spglib.standardize_cell(to_primitive=True)`` does) at ``symprec`` and
:data:`~atomate2_gmt.tensors.symmetry.policy.KEY_ANGLE_TOLERANCE`. That dataset is the one
:class:`~atomate2_gmt.tensors.symmetry.analysis.SymmetryAnalysis` holds (``.dataset``), which
also gives the key (``.structure_key``) and the IEEE frame from it: :func:`spglib_cell`,
:func:`symmetry_dataset`, then :func:`key_from_dataset`.
"""

from __future__ import annotations

import hashlib
import itertools
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import spglib

from atomate2_gmt.tensors.symmetry.policy import KEY_ANGLE_TOLERANCE

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    "KEY_VERSION",
    "key_from_dataset",
    "primitive_standard_cell",
    "spglib_cell",
    "symmetry_dataset",
]

KEY_VERSION = "sk1"
"""Prefix of every key; changes if the canonical form ever changes."""

_GRID = 1000  # fractional-coordinate grid (1e-3)

Cell = tuple[np.ndarray, np.ndarray, np.ndarray]
"""spglib's cell: lattice (3, 3) rows in Å, fractional coordinates (n, 3), atomic numbers (n,)."""

# spglib's centring matrices M (primitive basis columns = conventional basis columns @ M), by the
# first letter of the international symbol; R: the hexagonal (obverse) setting spglib uses.
_CENTRING: dict[str, np.ndarray] = {
    "P": np.eye(3),
    "A": np.array([[1, 0, 0], [0, 1 / 2, -1 / 2], [0, 1 / 2, 1 / 2]]),
    "C": np.array([[1 / 2, 1 / 2, 0], [-1 / 2, 1 / 2, 0], [0, 0, 1]]),
    "R": np.array([[2 / 3, -1 / 3, -1 / 3], [1 / 3, 1 / 3, -2 / 3], [1 / 3, 1 / 3, 1 / 3]]),
    "I": np.array([[-1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [1 / 2, 1 / 2, -1 / 2]]),
    "F": np.array([[0, 1 / 2, 1 / 2], [1 / 2, 0, 1 / 2], [1 / 2, 1 / 2, 0]]),
}


@lru_cache(maxsize=1)
def _integer_rows() -> np.ndarray:
    """The 27 vectors with entries in {-1, 0, 1}: the candidate rows of a basis change."""
    return np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)


def _niggli_right_handed(lattice: np.ndarray, frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from pymatgen.core import Lattice

    reduced = Lattice(lattice).get_niggli_reduced_lattice().matrix
    if np.linalg.det(reduced) < 0:
        reduced = -reduced
    cart = frac @ lattice
    new_frac = cart @ np.linalg.inv(reduced)
    return reduced, new_frac


def _metric_preserving(lattice: np.ndarray) -> np.ndarray:
    """Integer basis changes M (entries in {-1, 0, 1}, det +1) with M G M^T = G, G the metric of
    ``lattice`` rows (to 1e-4 of the largest diagonal element).

    Row i of such an M must keep the diagonal element G_ii (m G m^T = G_ii), so only the few rows
    that do are combined, and the off-diagonal elements and the determinant checked on those.
    """
    g = lattice @ lattice.T
    tol = 1e-4 * float(np.max(np.diag(g)))
    rows = _integer_rows()
    norms = np.einsum("ni,ij,nj->n", rows, g, rows)
    choices = [rows[np.abs(norms - g[i, i]) < tol] for i in range(3)]
    i0, i1, i2 = (a.ravel() for a in np.meshgrid(*(np.arange(len(c)) for c in choices)))
    mats = np.stack([choices[0][i0], choices[1][i1], choices[2][i2]], axis=1)  # (n, 3, 3)
    dets = np.rint(np.linalg.det(mats))
    mats = mats[dets == 1]
    transformed = (mats @ g) @ mats.transpose(0, 2, 1)  # M G M^T for every candidate M
    ok = np.all(np.abs(transformed - g) < tol, axis=(1, 2))
    return mats[ok]


def _lattice_parameters(lattice: np.ndarray) -> tuple[float, ...]:
    a, b, c = np.linalg.norm(lattice, axis=1)
    alpha = np.degrees(np.arccos(np.dot(lattice[1], lattice[2]) / (b * c)))
    beta = np.degrees(np.arccos(np.dot(lattice[0], lattice[2]) / (a * c)))
    gamma = np.degrees(np.arccos(np.dot(lattice[0], lattice[1]) / (a * b)))
    return (
        round(float(a), 3) + 0.0,
        round(float(b), 3) + 0.0,
        round(float(c), 3) + 0.0,
        round(float(alpha), 2) + 0.0,
        round(float(beta), 2) + 0.0,
        round(float(gamma), 2) + 0.0,
    )


def _canonical_sites(frac: np.ndarray, numbers: np.ndarray, ops: np.ndarray) -> tuple:
    counts = {int(z): int(np.sum(numbers == z)) for z in np.unique(numbers)}
    anchor_z = min(counts, key=lambda z: (counts[z], z))
    anchors = np.flatnonzero(numbers == anchor_z)
    best: tuple | None = None
    for m in ops:
        f = frac @ np.linalg.inv(m)
        for a in anchors:
            shifted = np.mod(f - f[a], 1.0)
            grid = np.mod(np.rint(shifted * _GRID).astype(np.int64), _GRID)
            rows = sorted(zip(numbers.tolist(), *grid.T.tolist(), strict=True))
            candidate = tuple(rows)
            if best is None or candidate < best:
                best = candidate
    assert best is not None
    return best


def spglib_cell(structure: Structure, symprec: float) -> Cell:
    """The structure as spglib's cell (lattice rows in Å, fractional coordinates, atomic numbers;
    oxidation states ignored), after the checks every key makes: ``ValueError`` for
    ``symprec <= 0``, empty or disordered structures and non-finite lattices or coordinates."""
    if symprec <= 0:
        raise ValueError(f"symprec must be positive, got {symprec}")
    if len(structure) == 0:
        raise ValueError("cannot key an empty structure")
    if not structure.is_ordered:
        raise ValueError("cannot key a disordered structure (partial occupancies); order it first")
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    frac = np.asarray(structure.frac_coords, dtype=float)
    numbers = np.array([site.specie.Z for site in structure], dtype=np.int64)
    if not np.all(np.isfinite(lattice)) or not np.all(np.isfinite(frac)):
        raise ValueError("structure has non-finite lattice or coordinates")
    return lattice, frac, numbers


def symmetry_dataset(cell: Cell, symprec: float) -> Any:
    """spglib's symmetry dataset of ``cell`` at ``symprec`` (Å) and the key's angle tolerance
    (:data:`~atomate2_gmt.tensors.symmetry.policy.KEY_ANGLE_TOLERANCE`, spglib's default -1:
    lattice angles judged by ``symprec`` too), or None if spglib finds none."""
    spg_cell: Any = cell
    return spglib.get_symmetry_dataset(
        spg_cell, symprec=symprec, angle_tolerance=KEY_ANGLE_TOLERANCE
    )


def primitive_standard_cell(dataset: Any) -> Cell:
    """spglib's primitive standardised idealised cell from a symmetry dataset: the idealised
    conventional cell (``std_lattice``, rows in Å, in spglib's standard Cartesian orientation)
    reduced by the space group's centring (A, C, I, F, or R for the hexagonal setting of a
    rhombohedral group), one atom per ``std_mapping_to_primitive`` class; fractional
    coordinates in [0, 1) of the primitive basis. The same lattice and sites as
    ``spglib.standardize_cell(to_primitive=True, no_idealize=False)`` up to round-off."""
    centring = _CENTRING[str(dataset.international)[0]]
    std_lattice = np.asarray(dataset.std_lattice, dtype=float)
    lattice = centring.T @ std_lattice
    _, first = np.unique(np.asarray(dataset.std_mapping_to_primitive), return_index=True)
    std_frac = np.asarray(dataset.std_positions, dtype=float)[first]
    frac = std_frac @ np.linalg.inv(centring.T)
    frac = frac - np.floor(frac)
    numbers = np.asarray(dataset.std_types, dtype=np.int64)[first]
    return lattice, frac, numbers


def key_from_dataset(cell: Cell, dataset: Any, symprec: float) -> str:
    """:func:`structure_key` of ``cell`` (from :func:`spglib_cell`) given its
    :func:`symmetry_dataset` at ``symprec``; with no dataset (None) the input cell itself is
    keyed."""
    if dataset is None:
        lattice, frac, numbers = cell
    elif str(dataset.international)[:1] in _CENTRING:
        lattice, frac, numbers = primitive_standard_cell(dataset)
    else:  # a centring this module does not tabulate: ask spglib itself
        spg_cell: Any = cell
        std: Any = spglib.standardize_cell(
            spg_cell, to_primitive=True, no_idealize=False, symprec=symprec
        )
        lattice, frac, numbers = (np.asarray(x) for x in std)
        numbers = numbers.astype(np.int64)
    reduced, frac = _niggli_right_handed(np.asarray(lattice, dtype=float), frac)
    ops = _metric_preserving(reduced)
    sites = _canonical_sites(frac, numbers, ops)
    payload = repr((_lattice_parameters(reduced), sites))
    return f"{KEY_VERSION}-" + hashlib.sha256(payload.encode()).hexdigest()[:32]
