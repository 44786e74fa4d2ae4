"""Symmetry search of a periodic cell: the native numpy search and spglib's dataset.

The native search follows spglib's tolerance rules (atoms match within ``symprec`` Cartesian
distance; lattice vectors within ``symprec`` in length and ``angle_tolerance`` degrees in angle)
and asks spglib only for the point-group class (and, lazily, the space-group type). It is
several times faster than a full ``spglib.get_symmetry_dataset`` call on cubic cells (see
benchmarks/bench_symmetry.py); ``_spglib_search`` takes the operations from spglib's dataset.
Both return integer operations in a lattice basis (:class:`_RawSymmetry`);
:mod:`~atomate2_gmt.tensors.symmetry.groups` turns them into Cartesian operations.

:func:`angle_tolerance_matters` says whether spglib's search of a lattice could depend on the
angle tolerance (spglib's default -1 against pymatgen's 5 degrees), so that a caller holding a
dataset found at one can tell whether it is also the one found at the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import spglib

from atomate2_gmt.tensors.symmetry.policy import ANGLE_TOLERANCE

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["Backend", "angle_tolerance_matters"]

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
    lattice: ArrayLike,
    symprec: float,
    angle_tolerance: float = ANGLE_TOLERANCE,
    margin: float = 0.1,
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
    """The operations of the cell (lattice rows Å, fractional coordinates, species types) at
    ``symprec`` (Å) / ``angle_tol`` (degrees), or ``_SearchFailedError``. Three steps in one
    function (about 100 lines), as spglib orders them, because each hands several arrays to
    the next: (1) pure translations give the primitive cell, (2) its Delaunay-reduced basis
    and sites, (3) the lattice operations that also map the crystal onto itself."""
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
    return _raw_from_dataset(ds, lattice, symprec, angle_tol)


def _raw_from_dataset(
    ds: Any, lattice: np.ndarray, symprec: float, angle_tol: float
) -> _RawSymmetry:
    """:func:`_spglib_search`'s operations from the dataset ``ds`` spglib found at ``symprec``
    / ``angle_tol`` for the cell with ``lattice`` (rows, Å)."""
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
