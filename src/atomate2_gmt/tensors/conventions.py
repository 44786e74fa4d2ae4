"""Tensor conventions: kinds, Voigt orders, full <-> Voigt, rotation, IEEE frame.

Every public function works on full Cartesian tensors in the structure's own Cartesian frame
unless stated otherwise. The IEEE 176 frame is pymatgen's: :func:`ieee_rotation` asks pymatgen
(one spglib search), :func:`ieee_rotation_from_setting` applies the same rules to a symmetry
dataset the caller already has. Voigt matrices hold tensor components (no factors of 2) in the
standard order xx, yy, zz, yz, xz, xy. VASP writes xx, yy, zz, xy, yz, zx; convert with
:func:`vasp_voigt_to_standard` at the point where VASP/JARVIS data enters.

Units: dielectric dimensionless, piezoelectric (stress-charge e_iJ) C/m^2, elastic GPa.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from atomate2_gmt.tensors.tasks import DFPT_PART_KIND, KIND_RANK, KINDS, TASK_SPECS

if TYPE_CHECKING:
    from numpy.typing import ArrayLike
    from pymatgen.core import Structure

__all__ = [
    "FULL_SHAPE",
    "KINDS",
    "TASK_TO_KIND",
    "TENSOR_ORDER",
    "VASP_VOIGT_PAIRS",
    "VOIGT_PAIRS",
    "VOIGT_SHAPE",
    "as_full",
    "crystal_system",
    "full_to_voigt",
    "ieee_rotation",
    "ieee_rotation_from_setting",
    "kind_of",
    "rotate",
    "standard_voigt_to_vasp",
    "to_ieee",
    "validate_kind",
    "vasp_voigt_to_standard",
    "voigt_to_full",
]

TENSOR_ORDER: dict[str, int] = dict(KIND_RANK)
"""Cartesian order of each tensor kind (from :data:`atomate2_gmt.tensors.tasks.KIND_SPECS`)."""

TASK_TO_KIND: dict[str, str] = {**DFPT_PART_KIND, **{t: s.kind for t, s in TASK_SPECS.items()}}
"""Prediction tasks and DFPT parts, and the tensor kind each one is (from the task registry)."""

FULL_SHAPE: dict[str, tuple[int, ...]] = {k: (3,) * n for k, n in TENSOR_ORDER.items()}
VOIGT_SHAPE: dict[str, tuple[int, int]] = {"dielectric": (3, 3), "piezo": (3, 6), "elastic": (6, 6)}

VOIGT_PAIRS: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
"""Standard Voigt order xx, yy, zz, yz, xz, xy as Cartesian index pairs."""

VASP_VOIGT_PAIRS: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2))
"""VASP's Voigt order xx, yy, zz, xy, yz, zx as Cartesian index pairs."""

# standard[..., J] = vasp[..., _VASP_TO_STD[J]]
_VASP_TO_STD = np.array([VASP_VOIGT_PAIRS.index(p) for p in VOIGT_PAIRS])
_STD_TO_VASP = np.argsort(_VASP_TO_STD)

# Voigt index of each Cartesian pair (i, j), symmetric.
_PAIR_TO_VOIGT = np.empty((3, 3), dtype=int)
for _J, (_a, _b) in enumerate(VOIGT_PAIRS):
    _PAIR_TO_VOIGT[_a, _b] = _PAIR_TO_VOIGT[_b, _a] = _J


def validate_kind(kind: str) -> str:
    """Return ``kind`` if it is a tensor kind, else raise a ``ValueError`` naming the valid ones."""
    if kind not in TENSOR_ORDER:
        raise ValueError(f"unknown tensor kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return kind


def kind_of(task: str) -> str:
    """Tensor kind (``dielectric``, ``piezo`` or ``elastic``) of a task or DFPT part name."""
    try:
        return TASK_TO_KIND[task]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown task {task!r}; valid tasks: {', '.join(TASK_SPECS)}; "
            f"DFPT parts: {', '.join(DFPT_PART_KIND)}"
        ) from None


def _as_float_array(x: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_trailing_shape(arr: np.ndarray, shape: tuple[int, ...], what: str) -> None:
    n = len(shape)
    if arr.ndim < n or arr.shape[arr.ndim - n :] != shape:
        raise ValueError(f"{what} must have shape {shape} (optionally batched), got {arr.shape}")


def full_to_voigt(tensor: ArrayLike, kind: str) -> np.ndarray:
    """Full Cartesian tensor -> Voigt matrix in the standard order (tensor components).

    dielectric 3x3 -> 3x3 (symmetric part), piezo 3x3x3 -> 3x6, elastic 3x3x3x3 -> 6x6.
    Components related by the intrinsic index symmetry (e_ijk = e_ikj, C_ijkl = C_jikl =
    C_ijlk) are averaged, so the map is exact on tensors that have that symmetry. Leading
    batch dimensions are allowed. Units are unchanged.
    """
    validate_kind(kind)
    t = _as_float_array(tensor, f"{kind} tensor")
    _check_trailing_shape(t, FULL_SHAPE[kind], f"full {kind} tensor")
    a = np.array([p[0] for p in VOIGT_PAIRS])
    b = np.array([p[1] for p in VOIGT_PAIRS])
    if kind == "dielectric":
        return 0.5 * (t + np.swapaxes(t, -1, -2))
    if kind == "piezo":
        return 0.5 * (t[..., :, a, b] + t[..., :, b, a])
    sym = 0.25 * (
        t[..., a[:, None], b[:, None], a[None, :], b[None, :]]
        + t[..., b[:, None], a[:, None], a[None, :], b[None, :]]
        + t[..., a[:, None], b[:, None], b[None, :], a[None, :]]
        + t[..., b[:, None], a[:, None], b[None, :], a[None, :]]
    )
    return sym


def voigt_to_full(voigt: ArrayLike, kind: str) -> np.ndarray:
    """Standard-order Voigt matrix (tensor components) -> full Cartesian tensor.

    dielectric 3x3 -> 3x3 symmetrised; piezo 3x6 -> 3x3x3 with e_ijk = e_ikj; elastic 6x6 ->
    3x3x3x3 with the minor symmetries (major symmetry only if the 6x6 is symmetric).
    Leading batch dimensions are allowed. Units are unchanged.
    """
    validate_kind(kind)
    v = _as_float_array(voigt, f"{kind} Voigt matrix")
    _check_trailing_shape(v, VOIGT_SHAPE[kind], f"Voigt {kind} matrix")
    if kind == "dielectric":
        return 0.5 * (v + np.swapaxes(v, -1, -2))
    m = _PAIR_TO_VOIGT
    if kind == "piezo":
        return v[..., :, m]
    return v[..., m[:, :, None, None], m[None, None, :, :]]


def vasp_voigt_to_standard(voigt: ArrayLike, kind: str) -> np.ndarray:
    """Reorder a Voigt matrix from VASP's order (xx,yy,zz,xy,yz,zx) to the standard one.

    Piezo 3x6: columns permuted; elastic 6x6: rows and columns; dielectric: unchanged.
    """
    return _reorder_voigt(voigt, kind, _VASP_TO_STD)


def standard_voigt_to_vasp(voigt: ArrayLike, kind: str) -> np.ndarray:
    """Reorder a Voigt matrix from the standard order to VASP's (xx,yy,zz,xy,yz,zx)."""
    return _reorder_voigt(voigt, kind, _STD_TO_VASP)


def _reorder_voigt(voigt: ArrayLike, kind: str, order: np.ndarray) -> np.ndarray:
    """Permute the Voigt index of piezo columns / elastic rows and columns by ``order``."""
    validate_kind(kind)
    v = _as_float_array(voigt, f"{kind} Voigt matrix")
    _check_trailing_shape(v, VOIGT_SHAPE[kind], f"Voigt {kind} matrix")
    if kind == "dielectric":
        return v.copy()
    if kind == "piezo":
        return v[..., order]
    return v[..., order[:, None], order[None, :]]


def as_full(tensor: ArrayLike, kind: str) -> np.ndarray:
    """Full Cartesian tensor from either a full tensor or a standard Voigt matrix.

    The form is read from the trailing shape (piezo 3x6 / elastic 6x6 are Voigt; a 3x3
    dielectric is both and returned as given). Leading batch dimensions are allowed.
    """
    validate_kind(kind)
    t = _as_float_array(tensor, f"{kind} tensor")
    full, voigt = FULL_SHAPE[kind], VOIGT_SHAPE[kind]
    if t.ndim >= len(full) and t.shape[t.ndim - len(full) :] == full:
        return t
    if t.ndim >= 2 and t.shape[-2:] == voigt:
        return voigt_to_full(t, kind)
    raise ValueError(
        f"{kind} tensor must have shape {full} (full) or {voigt} (Voigt), got {t.shape}"
    )


def rotate(tensor: ArrayLike, R: ArrayLike) -> np.ndarray:
    """Rotate a Cartesian tensor of any order: T'_{ij..} = R_ia R_jb .. T_ab...

    ``R`` is a 3x3 orthogonal matrix, proper or improper. No det(R) factor is applied: the
    dielectric, piezoelectric and elastic tensors are polar tensors.

    Equal to pymatgen's ``Tensor(tensor).rotate(R)`` (to ~1e-15). Kept here because it is on
    the screening path (the IEEE Voigt form of every prediction, the symmetry residuals) and
    pymatgen's is 1.4-2x slower: 136/168/193 µs against 269/261/387 µs per order-2/3/4 tensor
    (2-core CI machine), as it builds a ``SymmOp`` and a ``Tensor`` per call.
    """
    t = _as_float_array(tensor, "tensor")
    r = _as_float_array(R, "rotation matrix")
    if r.shape != (3, 3):
        raise ValueError(f"rotation matrix must be 3x3, got {r.shape}")
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-6):
        raise ValueError("rotation matrix is not orthogonal (R R^T != I within 1e-6)")
    if t.ndim == 0 or any(n != 3 for n in t.shape):
        raise ValueError(f"tensor must have shape (3, 3, ..., 3), got {t.shape}")
    out = t
    for axis in range(t.ndim):
        out = np.moveaxis(np.tensordot(r, out, axes=([1], [axis])), 0, axis)
    return out


def ieee_rotation(structure: Structure) -> np.ndarray:
    """Rotation taking the structure's Cartesian frame to the IEEE 176 frame (pymatgen)."""
    from pymatgen.core.tensors import Tensor

    return np.asarray(Tensor.get_ieee_rotation(structure, refine_rotation=True), dtype=float)


def crystal_system(space_group_number: int) -> str:
    """Crystal system of an international space-group number (1-230), pymatgen's names:
    triclinic, monoclinic, orthorhombic, tetragonal, trigonal, hexagonal, cubic.

    The same number ranges as pymatgen's ``SpaceGroup.crystal_system`` (tested for every
    number). pymatgen offers them only on a ``SpaceGroup`` object, and
    ``SpaceGroup.from_int_number`` takes ~35 ms (it builds the group's operations), while this
    runs once per screened structure; ``PointGroup.from_space_group`` fails for some groups
    (P321: "Could not create a valid crystal class", pymatgen 2026.10.24).
    """
    n = space_group_number
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise ValueError(f"invalid space group {n!r}: space-group number must be an integer")
    if not 1 <= n <= 230:
        raise ValueError(f"invalid space group: space-group number must be in 1..230, got {n}")
    return next(name for upper, name in _CRYSTAL_SYSTEM_BOUNDS if n <= upper)


_CRYSTAL_SYSTEM_BOUNDS = (
    (2, "triclinic"),
    (15, "monoclinic"),
    (74, "orthorhombic"),
    (142, "tetragonal"),
    (167, "trigonal"),
    (194, "hexagonal"),
    (230, "cubic"),
)


def _unit(vec: np.ndarray) -> np.ndarray:
    """``vec`` / |vec|, or ``vec`` itself below 1e-8 (pymatgen's ``get_uvec``)."""
    norm = np.linalg.norm(vec)
    return vec if norm < 1e-8 else vec / norm


def _lengths_angles(vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row lengths (Å) and angles alpha, beta, gamma (degrees) as pymatgen's ``Lattice``."""
    lengths = np.sqrt(np.sum(vecs**2, axis=1))
    cosines = np.zeros(3)
    for dim in range(3):
        j, k = (dim + 1) % 3, (dim + 2) % 3
        cosines[dim] = np.clip(np.dot(vecs[j], vecs[k]) / (lengths[j] * lengths[k]), -1, 1)
    return lengths, np.rad2deg(np.arccos(cosines))


def _ieee_axes(vecs: np.ndarray, system: str) -> np.ndarray:
    """Unrefined IEEE axes (rows x1, x2, x3) from the conventional lattice rows ``vecs``."""
    lengths, angles = _lengths_angles(vecs)
    rotation = np.zeros((3, 3))
    if system == "cubic":  # a, b, c || x1, x2, x3
        rotation = np.array([vecs[i] / lengths[i] for i in range(3)])
    elif system == "tetragonal":  # a = b in length; c, a || x3, x1
        rotation = np.array(
            [v / m for (m, v) in sorted(zip(lengths, vecs, strict=True), key=lambda x: x[0])]
        )
        if abs(lengths[2] - lengths[1]) < abs(lengths[1] - lengths[0]):
            rotation[[0, 2]] = rotation[[2, 0]]
        rotation[1] = _unit(np.cross(rotation[2], rotation[0]))
    elif system == "orthorhombic":  # c < a < b; c, a || x3, x1
        rotation = np.roll([v / m for (m, v) in sorted(zip(lengths, vecs, strict=True))], 2, axis=0)
    elif system in ("trigonal", "hexagonal"):  # c, a || x3, x1; c the threefold axis
        tf_index = np.argmin(abs(angles - 120.0))
        non_tf_mask = np.logical_not(angles == angles[tf_index])
        rotation[2] = _unit(vecs[tf_index])
        rotation[0] = _unit(vecs[non_tf_mask][0])
        rotation[1] = _unit(np.cross(rotation[2], rotation[0]))
    elif system == "monoclinic":  # b, c || x2, x3; alpha = beta = 90, c < a
        u_index = np.argmax(abs(angles - 90.0))
        n_umask = np.logical_not(angles == angles[u_index])
        rotation[1] = _unit(vecs[u_index])
        c = next(v / m for (m, v) in sorted(zip(lengths[n_umask], vecs[n_umask], strict=True)))
        rotation[2] = np.array(c)
        rotation[0] = np.cross(rotation[1], rotation[2])
    elif system == "triclinic":  # c || x3, x2 normal to the ac plane
        rotation = np.array([v / m for (m, v) in sorted(zip(lengths, vecs, strict=True))])
        rotation[1] = _unit(np.cross(rotation[2], rotation[0]))
        rotation[0] = np.cross(rotation[1], rotation[2])
    return rotation


def ieee_rotation_from_setting(
    lattice: ArrayLike, transformation_matrix: ArrayLike, system: str
) -> np.ndarray:
    """Rotation taking the structure's Cartesian frame to the IEEE 176 frame, from a symmetry
    dataset the caller already has.

    ``lattice``: the structure's lattice (rows, Å); ``transformation_matrix``: spglib's
    ``transformation_matrix`` P of that lattice (conventional rows = (lattice.T @ inv(P)).T);
    ``system``: the crystal system of the space group (:func:`crystal_system`).

    Reproduces pymatgen's ``Tensor.get_ieee_rotation(structure, refine_rotation=True)``
    (pymatgen, MIT licence): the same IEEE rules per crystal system on the same conventional
    lattice, then ``SquareTensor.refine_rotation`` (x normalised, y made normal to x,
    z = x × y; as in pymatgen, y is not renormalised). Equal to :func:`ieee_rotation` when the
    dataset is the one pymatgen's ``SpacegroupAnalyzer`` finds (symprec 0.01, angle tolerance 5
    degrees, sites typed by species, magnetic moments).

    Kept here because the screen already has the dataset (for the structure key):
    pymatgen's ``get_ieee_rotation`` runs its own spglib search and standardisation,
    14.7 ms per structure against 0.26 ms here on the shipped elastic set's first 150
    structures, with identical rotations (2-core CI machine).
    """
    lat = np.asarray(lattice, dtype=float)
    tmat = np.asarray(transformation_matrix, dtype=float)
    conv = np.transpose(np.dot(np.transpose(lat), np.linalg.inv(tmat)))
    rotation = _ieee_axes(conv, system)
    new_x, y = _unit(rotation[0]), _unit(rotation[1])
    new_y = y - np.dot(new_x, y) * new_x
    return np.array([new_x, new_y, np.cross(new_x, new_y)], dtype=float)


def to_ieee(
    tensor: ArrayLike, structure: Structure, kind: str, initial_fit: bool = True
) -> np.ndarray:
    """The tensor as a full Cartesian tensor in the IEEE 176 frame of ``structure``.

    ``tensor`` is full or standard Voigt in the structure's own frame. Uses pymatgen's
    ``Tensor.convert_to_ieee``; with ``initial_fit`` the tensor is first fitted to the
    structure's symmetry, as pymatgen does. Units are unchanged.
    """
    from pymatgen.core.tensors import Tensor

    full = as_full(tensor, kind)
    if full.shape != FULL_SHAPE[kind]:
        raise ValueError(f"to_ieee takes a single tensor, got shape {full.shape}")
    converted = Tensor(full).convert_to_ieee(structure, initial_fit=initial_fit)
    return np.asarray(converted, dtype=float)
