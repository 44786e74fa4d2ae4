"""Crystal point groups and exact symmetry projectors for dielectric, piezo and elastic tensors.

All matrices are Cartesian, in the structure's own frame (the frame of ``structure.lattice``).
A point-group operation ``R`` acts on a Cartesian vector as ``r -> R r`` and on a tensor as
``T'_{ij..} = R_ia R_jb .. T_ab..`` (polar tensors, no det(R) factor).

Symmetry search. The default backend (``"native"``) finds the operations with a vectorised
numpy search that follows spglib's tolerance rules (atoms match within ``symprec`` Cartesian
distance; lattice vectors within ``symprec`` in length and ``angle_tolerance`` degrees in angle)
and asks spglib only for the point-group class (and, lazily, the space-group type). It is several
times faster than a full ``spglib.get_symmetry_dataset`` call on cubic cells; ``backend="spglib"``
uses the dataset directly. Both return exactly orthogonal matrices: the lattice metric is averaged
over the integer operations before converting to Cartesian, so the operations are orthogonal and
close under multiplication to float precision, even when the lattice is only symmetric within
tolerance. See docs/conventions.md for the tolerance policy.

:func:`angle_tolerance_matters` says whether spglib's search of a lattice could depend on the
angle tolerance (spglib's default -1 against pymatgen's 5 degrees), so that a caller holding a
dataset found at one can tell whether it is also the one found at the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, cached_property
from itertools import permutations
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import spglib

from atomate2_gmt.tensors.conventions import (
    FULL_SHAPE,
    TENSOR_ORDER,
    VOIGT_SHAPE,
    full_to_voigt,
    validate_kind,
    voigt_to_full,
)

if TYPE_CHECKING:
    from numpy.typing import ArrayLike
    from pymatgen.core import IStructure, Structure

__all__ = [
    "CRYSTAL_SYSTEMS",
    "CRYSTAL_SYSTEM_OF_POINT_GROUP",
    "PointGroupInfo",
    "angle_tolerance_matters",
    "cartesian_operations",
    "check_group",
    "intrinsic_projector",
    "point_group_info",
    "point_group_operations",
    "projector",
    "refined_structure",
    "symmetrize",
    "symmetry_residual",
    "tie_pairs",
    "zero_mask",
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
"""Hermann–Mauguin point-group symbol (spglib spelling) -> crystal system."""

_MAX_ATTEMPTS = 20  # symprec * 0.95**k, k = 0..19 (down to 0.38 symprec), as spglib does
_REDUCE_RATE = 0.95
_ORTHO_ATOL = 1e-6  # orthogonality / closure tolerance for user-supplied operations

Backend = Literal["auto", "native", "spglib"]
_AUTO_NATIVE_MAX_SITES = 64  # above this spglib's search is faster than the numpy one


# ----------------------------------------------------------------------------------------------
# input validation
# ----------------------------------------------------------------------------------------------
def _cell_from_structure(structure: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lattice rows in Å, fractional coordinates, integer species types) of a Structure."""
    from pymatgen.core import IMolecule, IStructure

    if isinstance(structure, IMolecule):
        raise ValueError(
            "got a pymatgen Molecule: a point group of a crystal needs a periodic Structure "
            "with a lattice"
        )
    if not isinstance(structure, IStructure):
        raise ValueError(f"expected a pymatgen Structure, got {type(structure).__name__}")
    if len(structure) == 0:
        raise ValueError("structure has no sites")
    if not structure.is_ordered:
        raise ValueError(
            "structure is disordered (partial occupancy); symmetry analysis needs an ordered "
            "structure"
        )
    lattice = np.array(structure.lattice.matrix, dtype=float)
    frac = np.array(structure.frac_coords, dtype=float).reshape(-1, 3)
    if not np.all(np.isfinite(lattice)):
        raise ValueError("structure lattice contains NaN or infinite values")
    if not np.all(np.isfinite(frac)):
        raise ValueError("structure coordinates contain NaN or infinite values")
    volume = abs(np.linalg.det(lattice))
    if not volume > 1e-6 * max(1.0, float(np.prod(np.linalg.norm(lattice, axis=1)))):
        raise ValueError(f"structure lattice is degenerate (volume {volume:.3g} Å^3)")
    species: dict[Any, int] = {}
    types = np.array([species.setdefault(site.specie, len(species)) for site in structure])
    return lattice, frac, types


def _check_tolerances(symprec: float, angle_tolerance: float) -> None:
    if not (np.isfinite(symprec) and symprec > 0):
        raise ValueError(f"symprec must be a positive distance in Å, got {symprec}")
    if not np.isfinite(angle_tolerance):
        raise ValueError(
            f"angle_tolerance must be finite (degrees; <= 0 means unused), got {angle_tolerance}"
        )


def _check_min_distance(lattice: np.ndarray, frac: np.ndarray, symprec: float) -> None:
    """Raise if two atoms overlap within ``symprec`` (spglib cannot analyse such a cell)."""
    n = len(frac)
    for start in range(0, n, 256):
        d = frac[start : start + 256, None, :] - frac[None, :, :]
        d -= np.rint(d)
        cart = d @ lattice
        dist2 = np.einsum("ijk,ijk->ij", cart, cart)
        rows = np.arange(dist2.shape[0])
        dist2[rows, start + rows] = np.inf
        i, j = np.unravel_index(np.argmin(dist2), dist2.shape)
        if dist2[i, j] < symprec**2:
            a, b = sorted((int(start + i), int(j)))
            raise ValueError(
                f"sites {a} and {b} are {np.sqrt(dist2[i, j]):.2e} Å apart, closer than "
                f"symprec={symprec} Å: the structure cannot be analysed"
            )


# ----------------------------------------------------------------------------------------------
# integer-operation helpers
# ----------------------------------------------------------------------------------------------
def _int_keys(mats: np.ndarray, bound: int) -> np.ndarray:
    base = 2 * bound + 1
    flat = mats.reshape(len(mats), -1).astype(np.int64) + bound
    return flat @ (base ** np.arange(flat.shape[1], dtype=np.int64))


def _unique_int_ops(rots: np.ndarray) -> np.ndarray:
    """Deduplicate integer 3x3 matrices, identity first, deterministic order."""
    rots = np.asarray(rots, dtype=np.int64)
    bound = int(np.abs(rots).max())
    keys = _int_keys(rots, bound)
    _, first = np.unique(keys, return_index=True)
    uniq = rots[np.sort(first)]
    is_id = np.all(uniq == np.eye(3, dtype=np.int64), axis=(1, 2))
    return np.concatenate([uniq[is_id], uniq[~is_id]])


def _is_closed_int(rots: np.ndarray) -> bool:
    """True if the integer matrices contain the identity and close under multiplication."""
    if not np.any(np.all(rots == np.eye(3, dtype=rots.dtype), axis=(1, 2))):
        return False
    prods = (rots[:, None] @ rots[None, :]).reshape(-1, 3, 3)
    bound = int(np.abs(rots).max())
    if int(np.abs(prods).max()) > bound:
        return False
    return bool(np.all(np.isin(_int_keys(prods, bound), _int_keys(rots, bound))))


def _hnf_rows(rows: np.ndarray) -> np.ndarray:
    """A 3x3 integer basis of the lattice generated by the integer row vectors ``rows``."""
    work = [[int(v) for v in r] for r in rows]
    basis = []
    for col in range(3):
        while True:
            nonzero = [r for r in work if r[col] != 0]
            if len(nonzero) <= 1:
                break
            piv = min(nonzero, key=lambda r: abs(r[col]))
            work = [
                r
                if (r is piv or r[col] == 0)
                else [a - (r[col] // piv[col]) * b for a, b in zip(r, piv, strict=True)]
                for r in work
            ]
        piv_row = next((r for r in work if r[col] != 0), None)
        if piv_row is None:
            raise ValueError("translation vectors do not span three dimensions")
        basis.append(piv_row)
        work = [r for r in work if r is not piv_row]
    return np.array(basis, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# native symmetry search
# ----------------------------------------------------------------------------------------------
def _species_groups(types: np.ndarray) -> list[np.ndarray]:
    """Site indices per species, rarest species first."""
    uniq, counts = np.unique(types, return_counts=True)
    return [np.flatnonzero(types == uniq[k]) for k in np.argsort(counts, kind="stable")]


def _maps_onto(
    lattice: np.ndarray,
    frac: np.ndarray,
    groups: list[np.ndarray],
    images: np.ndarray,
    which: np.ndarray,
    shifts: np.ndarray,
    symprec: float,
) -> np.ndarray:
    """For each candidate c (an operation's image positions ``images[which[c]]`` (N, 3) plus
    the translation ``shifts[c]``): does every image land on a site of its own species within
    ``symprec`` Å?  Returns a bool array over candidates. A few probe sites are tested first so
    that the full N x N comparison is only made for the few candidates that survive."""
    ok = np.ones(len(which), dtype=bool)
    tol2 = symprec * symprec
    # probe sites spread over the rarest species (a supercell lists periodic copies together),
    # in growing chunks, then every species in full
    first = groups[0][np.argsort(np.arange(len(groups[0])) % 7, kind="stable")]
    blocks = [(first[a:b], groups[0]) for a, b in ((0, 4), (4, 20), (20, 84)) if a < len(first)]
    blocks += [(g, g) for g in groups]
    for src, dst in blocks:
        live = np.flatnonzero(ok)
        if live.size == 0:
            break
        d = images[which[live][:, None], src[None, :]][:, :, None, :] + shifts[live, None, None, :]
        d = d - frac[None, None, dst, :]
        d -= np.rint(d)
        cart = d @ lattice
        dist2 = np.einsum("...k,...k->...", cart, cart)
        ok[live] = np.all(dist2.min(axis=2) < tol2, axis=1)
    return ok


def _metric_ok(
    g_orig: np.ndarray, g_rot: np.ndarray, symprec: float, angle_tolerance: float
) -> np.ndarray:
    """spglib's lattice criterion, vectorised over candidate metrics g_rot (k, 3, 3)."""
    l0 = np.sqrt(np.diag(g_orig))
    l1 = np.sqrt(np.diagonal(g_rot, axis1=1, axis2=2))
    ok = np.all(np.abs(l1 - l0) < symprec, axis=1)
    for j, k in ((0, 1), (1, 2), (2, 0)):
        c0 = np.clip(g_orig[j, k] / (l0[j] * l0[k]), -1.0, 1.0)
        c1 = np.clip(g_rot[:, j, k] / (l1[:, j] * l1[:, k]), -1.0, 1.0)
        if angle_tolerance > 0:
            ok &= np.abs(np.degrees(np.arccos(c1) - np.arccos(c0))) < angle_tolerance
        else:
            x = c0 * c1 + np.sqrt(1 - c0 * c0) * np.sqrt(1 - c1 * c1)
            sin2 = 1 - x * x
            lave2 = (l0[j] + l1[:, j]) * (l0[k] + l1[:, k]) / 4
            ok &= (sin2 <= 1e-12) | (sin2 * lave2 < symprec * symprec)
    return ok


_CANDIDATE_VECTORS = np.array(
    [
        (i, j, k)
        for i in (-1, 0, 1)
        for j in (-1, 0, 1)
        for k in (-1, 0, 1)
        if (i, j, k) != (0, 0, 0)
    ],
    dtype=np.int64,
)


def _candidate_ops(g: np.ndarray, length_tol: float) -> np.ndarray | None:
    """Integer row matrices W (det ±1, rows from the 26 vectors with entries in {-1, 0, 1})
    whose rows keep the basis lengths of the metric ``g`` within ``length_tol`` (Å), or None if
    some basis vector has no candidate image."""
    vec_len = np.sqrt(np.sum((_CANDIDATE_VECTORS @ g) * _CANDIDATE_VECTORS, axis=1))
    basis_len = np.sqrt(np.diag(g))
    cands = [np.flatnonzero(np.abs(vec_len - basis_len[k]) < length_tol) for k in range(3)]
    if any(c.size == 0 for c in cands):
        return None
    ia, ib, ic = (a.ravel() for a in np.meshgrid(*cands, indexing="ij"))
    w = np.stack([_CANDIDATE_VECTORS[ia], _CANDIDATE_VECTORS[ib], _CANDIDATE_VECTORS[ic]], axis=1)
    det = np.rint(np.linalg.det(w)).astype(np.int64)
    return w[np.abs(det) == 1]


def _lattice_ops(lattice: np.ndarray, symprec: float, angle_tolerance: float) -> np.ndarray:
    """Integer row matrices W (images of the basis vectors as rows) that map a Delaunay-reduced
    lattice onto itself within tolerance: W G W^T ~ G with G = lattice lattice^T."""
    g = lattice @ lattice.T
    w = _candidate_ops(g, symprec)
    if w is None:
        return np.eye(3, dtype=np.int64)[None]
    wf = w.astype(float)
    g_rot = wf @ g @ wf.transpose(0, 2, 1)
    return w[_metric_ok(g, g_rot, symprec, angle_tolerance)]


def angle_tolerance_matters(
    lattice: ArrayLike, symprec: float, angle_tolerance: float = 5.0, margin: float = 0.1
) -> bool:
    """Whether spglib might find a different lattice point group for ``lattice`` with
    ``angle_tolerance`` (degrees) than with its default -1 (angles judged by ``symprec``, Å).

    ``lattice`` (rows, Å) is the primitive lattice spglib searches (a dataset's
    ``primitive_lattice``); spglib's angle tolerance enters its symmetry search only through
    the lattice point group of that lattice. Follows spglib: Delaunay reduction at ``symprec``,
    then the integer basis changes with rows in {-1, 0, 1}; True if one of them passes the
    angle test within (1 + margin) of the tolerances but not the ``symprec`` test within
    (1 - margin) of ``symprec``, so that near-misses count as "might differ". False means the
    two searches see the same lattice operations and hence give the same dataset.
    """
    reduced = spglib.delaunay_reduce(np.asarray(lattice, dtype=float), eps=symprec)
    if reduced is None:
        return True
    red = np.asarray(reduced, dtype=float)
    g = red @ red.T
    w = _candidate_ops(g, symprec * (1 + margin))
    if w is None:
        return True
    wf = w.astype(float)
    g_rot = wf @ g @ wf.transpose(0, 2, 1)
    loose = _metric_ok(g, g_rot, symprec * (1 + margin), angle_tolerance * (1 + margin))
    strict = _metric_ok(g, g_rot, symprec * (1 - margin), -1.0)
    return bool(np.any(loose & ~strict))


@dataclass
class _RawSymmetry:
    """Integer operations (column convention, x' = W x + t) in the basis ``lattice`` (rows)."""

    rotations: np.ndarray  # (n, 3, 3) int, unique, identity first
    translations: np.ndarray  # (n, 3)
    lattice: np.ndarray  # (3, 3) rows
    point_group: str
    symprec: float
    angle_tolerance: float
    space_group: tuple[int, str] | None = None


class _SearchFailedError(Exception):
    pass


def _native_search(
    lattice: np.ndarray, frac: np.ndarray, types: np.ndarray, symprec: float, angle_tol: float
) -> _RawSymmetry:
    frac = frac - np.floor(frac)
    n_sites = len(frac)
    groups = _species_groups(types)
    rare = groups[0]
    # 1. pure translations of the cell (supercells, centred cells)
    cand = frac[rare[1:]] - frac[rare[0]]
    if len(cand):
        which = np.zeros(len(cand), dtype=np.int64)
        ok = _maps_onto(lattice, frac, groups, frac[None], which, cand, symprec)
        trans = cand[ok]
    else:
        trans = np.zeros((0, 3))
    m = len(trans) + 1
    if m > 1:
        if n_sites % m or any(len(g) % m for g in groups):
            raise _SearchFailedError("pure translations inconsistent with the site counts")
        scaled = m * trans
        if np.abs(scaled - np.rint(scaled)).max() > 0.25:
            raise _SearchFailedError("pure translations do not form a group")
        gens = np.vstack([m * np.eye(3, dtype=np.int64), np.rint(scaled).astype(np.int64)])
        basis = _hnf_rows(gens)
        if abs(round(np.linalg.det(basis))) != m**2:
            raise _SearchFailedError("pure translations do not form a lattice of index m")
        prim_basis = basis / m  # rows: primitive vectors in fractional coordinates of the cell
        prim_lattice = prim_basis @ lattice
    else:
        prim_lattice = lattice
    # 2. Delaunay reduction (same Cartesian frame), sites in the reduced primitive cell
    reduced = spglib.delaunay_reduce(prim_lattice, eps=1e-5)
    if reduced is None:
        raise _SearchFailedError("Delaunay reduction failed")
    reduced = np.asarray(reduced, dtype=float)
    red_frac = frac @ (lattice @ np.linalg.inv(reduced))
    red_frac -= np.floor(red_frac)
    if m > 1:
        d = red_frac[:, None, :] - red_frac[None, :, :]
        d -= np.rint(d)
        dist2 = np.einsum("ijk,ijk->ij", d @ reduced, d @ reduced)
        same = (dist2 < symprec**2) & (types[:, None] == types[None, :])
        keep = ~np.any(np.tril(same, k=-1), axis=1)
        if keep.sum() * m != n_sites:
            raise _SearchFailedError("primitive cell does not hold N/m sites")
        red_frac, types_p = red_frac[keep], types[keep]
    else:
        types_p = types
    groups_p = _species_groups(types_p)
    rare_p = groups_p[0]
    # 3. lattice point group, then the operations that map the crystal onto itself
    wrows = _lattice_ops(reduced, symprec, angle_tol)
    if wrows.size == 0:
        raise _SearchFailedError("no lattice operation found (not even the identity)")
    images = red_frac @ wrows  # (w, N, 3): x' = W_col x  <=>  x'_row = x_row Wrow
    tcand = red_frac[rare_p][None, :, :] - images[:, rare_p[0], None, :]  # (w, r, 3)
    n_w, n_r = tcand.shape[:2]
    which = np.repeat(np.arange(n_w), n_r)
    ok = _maps_onto(reduced, red_frac, groups_p, images, which, tcand.reshape(-1, 3), symprec)
    ok = ok.reshape(n_w, n_r)
    has = ok.any(axis=1)
    first = np.argmax(ok, axis=1)
    rot_cols = np.transpose(wrows[has], (0, 2, 1)).astype(np.int64)
    t = tcand[has, first[has]]
    t -= np.rint(t)
    if len(rot_cols) == 0 or not _is_closed_int(rot_cols):
        raise _SearchFailedError("operations found do not form a group")
    is_id = np.all(rot_cols == np.eye(3, dtype=np.int64), axis=(1, 2))
    perm = np.concatenate([np.flatnonzero(is_id), np.flatnonzero(~is_id)])
    pg = spglib.get_pointgroup(rot_cols[perm].astype(np.intc))
    if pg is None:
        raise _SearchFailedError("spglib could not classify the point group")
    return _RawSymmetry(
        rotations=rot_cols[perm],
        translations=t[perm],
        lattice=reduced,
        point_group=str(pg[0]).strip(),
        symprec=symprec,
        angle_tolerance=angle_tol,
    )


def _spglib_dataset(
    lattice: np.ndarray, frac: np.ndarray, types: np.ndarray, symprec: float, angle_tol: float
) -> Any:
    try:
        cell: Any = (lattice, frac, types)
        ds = spglib.get_symmetry_dataset(cell, symprec=symprec, angle_tolerance=angle_tol)
    except Exception as exc:  # spglib >= 2.5 may raise SpglibError instead of returning None
        raise _SearchFailedError(f"spglib failed: {exc}") from exc
    if ds is None:
        msg = spglib.get_error_message() if hasattr(spglib, "get_error_message") else ""
        raise _SearchFailedError(f"spglib could not analyse the structure ({msg})")
    return ds


def _spglib_search(
    lattice: np.ndarray, frac: np.ndarray, types: np.ndarray, symprec: float, angle_tol: float
) -> _RawSymmetry:
    """Operations from spglib's dataset. The dataset's own ``rotations`` only hold the
    operations that keep the *input* cell's lattice (a supercell may lose some), so the full
    point group is taken from the database for the dataset's Hall number, in the basis of the
    non-idealised standard cell: rows P^-T L, where x_std = P x + p."""
    ds = _spglib_dataset(lattice, frac, types, symprec, angle_tol)
    db = spglib.get_symmetry_from_database(int(ds.hall_number))
    if db is None:
        raise _SearchFailedError(f"spglib has no database entry for Hall number {ds.hall_number}")
    rots = np.asarray(db["rotations"], dtype=np.int64)
    uniq = _unique_int_ops(rots)
    if not _is_closed_int(uniq):
        raise _SearchFailedError("spglib operations do not form a group")
    bound = int(np.abs(rots).max())
    keys = _int_keys(rots, bound)
    first = [int(np.flatnonzero(keys == k)[0]) for k in _int_keys(uniq, bound)]
    p_mat = np.asarray(ds.transformation_matrix, dtype=float)
    return _RawSymmetry(
        rotations=uniq,
        translations=np.asarray(db["translations"], dtype=float)[first],
        lattice=np.linalg.inv(p_mat).T @ lattice,
        point_group=str(ds.pointgroup).strip(),
        symprec=symprec,
        angle_tolerance=angle_tol,
        space_group=(int(ds.number), str(ds.international)),
    )


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
    symprec: float = 0.01,
    angle_tolerance: float = 5.0,
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
    structure: IStructure, symprec: float = 0.01, angle_tolerance: float = 5.0
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
# public: projectors
# ----------------------------------------------------------------------------------------------
def _intrinsic_permutations(kind: str) -> list[tuple[int, ...]]:
    order = TENSOR_ORDER[kind]
    if kind == "dielectric":
        return [(0, 1), (1, 0)]
    if kind == "piezo":
        return [(0, 1, 2), (0, 2, 1)]
    assert order == 4
    # generated by (ij), (kl) and (ij)<->(kl): the order-8 group of C_ijkl
    perms = set()
    for p in permutations(range(4)):
        pairs = [frozenset(p[:2]), frozenset(p[2:])]
        if set(pairs) == {frozenset((0, 1)), frozenset((2, 3))}:
            perms.add(p)
    return sorted(perms)


@cache
def _intrinsic_projector_cached(kind: str) -> np.ndarray:
    order = TENSOR_ORDER[kind]
    size = 3**order
    eye = np.eye(size).reshape((size,) + (3,) * order)
    mats = []
    for p in _intrinsic_permutations(kind):
        mats.append(np.transpose(eye, (0, *(1 + q for q in p))).reshape(size, size))
    out = np.mean(mats, axis=0)
    out.setflags(write=False)
    return out


def intrinsic_projector(kind: str) -> np.ndarray:
    """Orthogonal projector (3**order, 3**order) onto tensors with the intrinsic index symmetry
    of ``kind`` alone (eps_ij = eps_ji; e_ijk = e_ikj; C_ijkl = C_jikl = C_ijlk = C_klij).
    Acts on the row-major flattened full tensor. The returned array is cached and read-only."""
    return _intrinsic_projector_cached(validate_kind(kind))


def _group_average(ops: np.ndarray, order: int) -> np.ndarray:
    """(1/|G|) Σ_g R_g ⊗ ... ⊗ R_g (order factors) as a (3**order, 3**order) matrix.

    Each sum of Kronecker products is one matrix product: Σ_g vec(X_g) vec(Y_g)^T holds the
    entries of Σ_g X_g ⊗ Y_g, reordered."""
    n = len(ops)
    r1 = ops.reshape(n, 9)
    if order == 2:
        m = (r1.T @ r1).reshape(3, 3, 3, 3)
        return m.transpose(0, 2, 1, 3).reshape(9, 9) / n
    r2 = (ops[:, :, None, :, None] * ops[:, None, :, None, :]).reshape(n, 81)
    if order == 3:
        m = (r2.T @ r1).reshape(9, 9, 3, 3)
        return m.transpose(0, 2, 1, 3).reshape(27, 27) / n
    m = (r2.T @ r2).reshape(9, 9, 9, 9)
    return m.transpose(0, 2, 1, 3).reshape(81, 81) / n


def _ops_of(structure_or_ops: Any, symprec: float, check: bool = True) -> np.ndarray:
    if isinstance(structure_or_ops, PointGroupInfo):
        return structure_or_ops.ops
    if isinstance(structure_or_ops, np.ndarray | list | tuple):
        return check_group(structure_or_ops) if check else np.asarray(structure_or_ops, float)
    return point_group_info(structure_or_ops, symprec=symprec).ops


def projector(kind: str, ops: ArrayLike | PointGroupInfo, check: bool = True) -> np.ndarray:
    """Exact symmetry projector P = (1/|G|) Σ_g ρ(g) · P_intrinsic, shape (3**order, 3**order).

    Acts on the row-major flattened full Cartesian tensor in the frame of ``ops`` (Cartesian,
    (n, 3, 3), a group). P is symmetric and idempotent; rank(P) is the number of independent
    components of ``kind`` (dielectric 2nd, piezo 3rd, elastic 4th order) for that group.
    With ``check`` the operations are validated (orthogonal, closed) first.
    """
    validate_kind(kind)
    arr = _ops_of(ops, 0.01, check=check)
    p_group = _group_average(arr, TENSOR_ORDER[kind])
    p = p_group @ intrinsic_projector(kind)
    return 0.5 * (p + p.T)


def symmetrize(
    tensor: ArrayLike,
    structure_or_ops: IStructure | ArrayLike | PointGroupInfo,
    kind: str,
    symprec: float = 0.01,
) -> np.ndarray:
    """Project a tensor onto the symmetric subspace of the crystal (and of its index symmetry).

    ``tensor``: full Cartesian (3,)*order or standard Voigt (piezo 3x6, elastic 6x6), optionally
    with leading batch dimensions, in the frame of ``structure_or_ops`` (a Structure, a
    PointGroupInfo or Cartesian operations (n, 3, 3)). Returns the same form and units.
    """
    validate_kind(kind)
    t = np.asarray(tensor, dtype=float)
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{kind} tensor contains NaN or infinite values")
    full_shape, voigt_shape = FULL_SHAPE[kind], VOIGT_SHAPE[kind]
    n_full = len(full_shape)
    if t.ndim >= n_full and t.shape[t.ndim - n_full :] == full_shape:
        is_voigt = False
        full = t
    elif t.ndim >= 2 and t.shape[-2:] == voigt_shape:
        is_voigt = True
        full = voigt_to_full(t, kind)
    else:
        raise ValueError(
            f"{kind} tensor must have shape {full_shape} (full) or {voigt_shape} (Voigt), "
            f"got {t.shape}"
        )
    p = projector(kind, _ops_of(structure_or_ops, symprec), check=False)
    batch = full.shape[: full.ndim - n_full]
    out = (full.reshape(*batch, -1) @ p.T).reshape(full.shape)
    return full_to_voigt(out, kind) if is_voigt else out


def symmetry_residual(
    tensor: ArrayLike, structure_or_ops: IStructure | ArrayLike | PointGroupInfo, kind: str
) -> float:
    """max_g |g·T - T|_F / |T|_F over the point-group operations (full tensor, any frame
    consistent with the operations): the data set's ``sym_residual`` definition."""
    from atomate2_gmt.tensors.conventions import as_full, rotate

    full = as_full(tensor, kind)
    norm = float(np.linalg.norm(full))
    if norm == 0:
        return 0.0
    ops = _ops_of(structure_or_ops, 0.01)
    return max(float(np.linalg.norm(rotate(full, g) - full)) for g in ops) / norm


def _order_of_projector(p: np.ndarray) -> int:
    if p.ndim != 2 or p.shape[0] != p.shape[1]:
        raise ValueError(f"projector must be a square matrix, got shape {p.shape}")
    for order in (2, 3, 4):
        if p.shape[0] == 3**order:
            return order
    raise ValueError(f"projector size {p.shape[0]} is not 9, 27 or 81")


def zero_mask(P: ArrayLike, atol: float = 1e-10) -> np.ndarray:
    """Bool array of shape (3,)*order: True where the component is forced to zero by P.

    For an orthogonal projector P_ii = |P e_i|^2, so component i vanishes for every symmetric
    tensor exactly when P_ii = 0. The test is on the row norm |P e_i| <= atol, computed from the
    row (not on P_ii, which would call rows with entries up to sqrt(atol) zero, nor on
    sqrt(P_ii), which turns ~1e-18 cancellation noise of P_ii into 1e-9): a crystal whose
    symmetry axes are tilted ~1e-4 rad from x, y, z has components that are small (~1e-7 |T|)
    but not forbidden, and they must not be counted as zeros."""
    p = np.asarray(P, dtype=float)
    order = _order_of_projector(p)
    row_norm = np.linalg.norm(p, axis=1)
    return (row_norm <= atol).reshape((3,) * order)


def tie_pairs(P: ArrayLike, atol: float = 1e-8) -> list[tuple[int, int, int]]:
    """Pairs (i, j, sign), i < j, of flat full-tensor indices with T_i = sign * T_j forced by
    P (including the intrinsic index symmetry), for non-zero components. Symmetric tensors are
    the range of P, so the tie holds exactly when row i of P equals sign * row j."""
    p = np.asarray(P, dtype=float)
    _order_of_projector(p)
    nonzero = np.flatnonzero(np.abs(np.diag(p)) > atol)
    rows = p[nonzero]
    plus = np.abs(rows[:, None, :] - rows[None, :, :]).max(axis=2) <= atol
    minus = np.abs(rows[:, None, :] + rows[None, :, :]).max(axis=2) <= atol
    out: list[tuple[int, int, int]] = []
    ia, ib = np.triu_indices(len(nonzero), k=1)
    for a, b in zip(ia.tolist(), ib.tolist(), strict=True):
        if plus[a, b]:
            out.append((int(nonzero[a]), int(nonzero[b]), 1))
        elif minus[a, b]:
            out.append((int(nonzero[a]), int(nonzero[b]), -1))
    return out


# ----------------------------------------------------------------------------------------------
# public: structure correction
# ----------------------------------------------------------------------------------------------
def refined_structure(
    structure: IStructure, symprec: float = 0.01, angle_tolerance: float = 5.0
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
