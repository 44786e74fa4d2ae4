"""Derived quantities of dielectric, piezoelectric and elastic tensors.

Inputs are full Cartesian tensors or standard Voigt matrices (tensor components, order
xx, yy, zz, yz, xz, xy) in any Cartesian frame; scalar results are frame independent.
Units: dielectric dimensionless, piezo e in C/m^2, elastic in GPa, compliance in 1/GPa,
piezo d in pC/N.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from atomate2_gmt.tensors.conventions import TENSOR_ORDER, as_full, full_to_voigt

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = [
    "born_stable",
    "compliance_from_elastic",
    "dielectric_average",
    "dielectric_eigenvalues",
    "elastic_eigenvalues",
    "elastic_moduli",
    "isotropic_elastic_tensor",
    "piezo_d_from_e",
    "piezo_longitudinal_max",
    "piezo_max_eij",
    "piezo_norm",
    "piezo_principal",
]

_MANDEL = np.array([1.0, 1.0, 1.0, np.sqrt(2.0), np.sqrt(2.0), np.sqrt(2.0)])


def _single(tensor: ArrayLike, kind: str) -> np.ndarray:
    full = as_full(tensor, kind)
    if full.ndim != TENSOR_ORDER[kind]:
        raise ValueError(f"expected a single {kind} tensor, got shape {np.shape(tensor)}")
    return full


# ----------------------------------------------------------------------------------------------
# dielectric
# ----------------------------------------------------------------------------------------------
def dielectric_eigenvalues(eps: ArrayLike) -> np.ndarray:
    """Principal values (ascending) of the symmetric part of a 3x3 dielectric tensor."""
    e = _single(eps, "dielectric")
    return np.linalg.eigvalsh(0.5 * (e + e.T))


def dielectric_average(eps: ArrayLike) -> float:
    """Orientation average of a dielectric tensor, tr(eps)/3 (the polycrystalline value)."""
    return float(np.trace(_single(eps, "dielectric")) / 3.0)


# ----------------------------------------------------------------------------------------------
# piezoelectric
# ----------------------------------------------------------------------------------------------
def piezo_max_eij(e: ArrayLike) -> tuple[float, tuple[int, int]]:
    """Largest |e_iJ| (C/m^2) of the standard Voigt 3x6 form and its 0-based index (i, J)."""
    v = full_to_voigt(_single(e, "piezo"), "piezo")
    i, j = np.unravel_index(int(np.argmax(np.abs(v))), v.shape)
    return float(abs(v[i, j])), (int(i), int(j))


def piezo_principal(e: ArrayLike) -> tuple[float, np.ndarray, np.ndarray]:
    """Largest singular value of the Voigt 3x6 e (C/m^2) with its unit field direction (3,)
    and unit Voigt strain (6,) (the definition emmet uses for ``e_ij_max``). The sign is
    fixed so that the direction's largest component is positive."""
    v = full_to_voigt(_single(e, "piezo"), "piezo")
    u, s, vt = np.linalg.svd(v, full_matrices=False)
    direction, strain = u[:, 0], vt[0]
    if direction[np.argmax(np.abs(direction))] < 0:
        direction, strain = -direction, -strain
    return float(s[0]), direction, strain


def piezo_norm(e: ArrayLike) -> float:
    """Frobenius norm of the full Cartesian e_ijk (C/m²): the same in every frame."""
    return float(np.linalg.norm(_single(e, "piezo")))


def _fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` nearly uniform unit vectors (n, 3)."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (1.0 + np.sqrt(5.0)) * k
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


_SPHERE = _fibonacci_sphere(400)


def piezo_longitudinal_max(e: ArrayLike) -> tuple[float, np.ndarray]:
    """Largest longitudinal response max_n e_ijk n_i n_j n_k over unit vectors n (C/m²), and
    that n (structure's frame): the maximum radius of the tensor picture's surface.

    The cubic form is odd in n, so this is also max_n |e_L(n)|; it is frame independent (a
    rotation of the tensor rotates its maximiser). Found from the best 4 of 400 nearly uniform
    directions by Newton's method on the sphere (a step is kept only where it increases the
    form, else a gradient step): converged to round-off, ~1e-14 relative, in a millisecond.
    """
    t = _single(e, "piezo")
    # the fully symmetric part has the same cubic form
    sym = (
        t
        + t.transpose(0, 2, 1)
        + t.transpose(1, 0, 2)
        + t.transpose(1, 2, 0)
        + t.transpose(2, 0, 1)
        + t.transpose(2, 1, 0)
    ) / 6.0
    scale = float(np.abs(sym).max())
    if scale == 0.0:
        return 0.0, np.array([0.0, 0.0, 1.0])
    sym = sym / scale

    def form(n: np.ndarray) -> np.ndarray:
        return np.einsum("ijk,ni,nj,nk->n", sym, n, n, n)

    n = _SPHERE[np.argsort(form(_SPHERE))[-4:]]
    eye = np.eye(3)
    for _ in range(40):
        f = form(n)
        grad = 3.0 * np.einsum("ijk,nj,nk->ni", sym, n, n)
        tangent = grad - (3.0 * f)[:, None] * n  # Riemannian gradient
        proj = eye - n[:, :, None] * n[:, None, :]
        hess = 6.0 * np.einsum("ijk,nk->nij", sym, n) - (3.0 * f)[:, None, None] * eye
        system = proj @ hess @ proj + n[:, :, None] * n[:, None, :]
        # pinv: at a flat critical point (e.g. a 6mm tensor's polar axis) the system is
        # singular; the least-norm step then moves along the curved directions only
        step = (np.linalg.pinv(system) @ -tangent[..., None])[..., 0]
        newton = n + step
        newton /= np.linalg.norm(newton, axis=1, keepdims=True)
        climb = n + 0.1 * tangent
        climb /= np.linalg.norm(climb, axis=1, keepdims=True)
        better = (form(newton) >= f)[:, None]
        new = np.where(better, newton, climb)
        done = float(np.abs(new - n).max()) < 1e-13
        n = new
        if done:
            break
    values = form(n)
    best = int(np.argmax(values))
    return float(values[best]) * scale, n[best]


def compliance_from_elastic(C: ArrayLike) -> np.ndarray:
    """Full compliance tensor S_ijkl (1/GPa) of an elastic tensor (GPa): the inverse of C on
    symmetric strains (S_ijkl C_klmn = symmetric identity), pymatgen's
    ``ElasticTensor.compliance_tensor`` of the standard Voigt form (:func:`full_to_voigt`).
    Raises ``ValueError`` if C is singular (Mandel-form condition number above 1e12)."""
    from pymatgen.analysis.elasticity.elastic import ElasticTensor

    cv = full_to_voigt(_single(C, "elastic"), "elastic")
    if np.linalg.cond(_MANDEL[:, None] * cv * _MANDEL[None, :]) > 1e12:
        raise ValueError("elastic tensor is singular: it has no compliance")
    return np.asarray(ElasticTensor.from_voigt(cv).compliance_tensor, dtype=float)


def piezo_d_from_e(e: ArrayLike, compliance: ArrayLike) -> np.ndarray:
    """Piezoelectric strain tensor d_ijk = e_ilm S_lmjk as a full 3x3x3 tensor in pC/N.

    ``e`` in C/m^2 and ``compliance`` in 1/GPa (full, or Voigt 6x6 of *tensor components*, i.e.
    without the factors 2 and 4 of the engineering compliance; use
    :func:`compliance_from_elastic`). The conventional Voigt d_iJ doubles the shear columns:
    d_iJ = d_ijk for J <= 3 and 2 d_ijk for J > 3.
    """
    ef = _single(e, "piezo")
    sf = _single(compliance, "elastic")
    return 1e3 * np.einsum("ilm,lmjk->ijk", ef, sf)  # C/m^2 * 1/GPa = 1e-9 C/N = 1e3 pC/N


# ----------------------------------------------------------------------------------------------
# elastic
# ----------------------------------------------------------------------------------------------
def isotropic_elastic_tensor(K: float, G: float) -> np.ndarray:
    """Full elastic tensor (GPa) of an isotropic solid with bulk modulus K and shear modulus G:
    C_ijkl = (K - 2G/3) δ_ij δ_kl + G (δ_ik δ_jl + δ_il δ_jk)."""
    d = np.eye(3)
    lam = K - 2.0 * G / 3.0
    return lam * np.einsum("ij,kl->ijkl", d, d) + G * (
        np.einsum("ik,jl->ijkl", d, d) + np.einsum("il,jk->ijkl", d, d)
    )


def elastic_eigenvalues(C: ArrayLike) -> np.ndarray:
    """Kelvin moduli (GPa, ascending): eigenvalues of the symmetric part of C in Mandel form."""
    cv = full_to_voigt(_single(C, "elastic"), "elastic")
    mandel = _MANDEL[:, None] * cv * _MANDEL[None, :]
    return np.linalg.eigvalsh(0.5 * (mandel + mandel.T))


def born_stable(C: ArrayLike, tol: float = 0.0) -> bool:
    """Born mechanical stability: the 6x6 elastic matrix is positive definite (smallest Kelvin
    modulus > ``tol`` GPa). Positive definiteness of the Voigt and Mandel forms coincide."""
    return bool(elastic_eigenvalues(C)[0] > tol)


def elastic_moduli(C: ArrayLike) -> dict[str, float]:
    """Polycrystalline moduli (GPa) of an elastic tensor (GPa, full or Voigt 6x6).

    Keys: K_V, K_R, K_VRH, G_V, G_R, G_VRH (Voigt, Reuss, Hill bulk and shear moduli), E
    (Young's modulus from the Hill values), nu (Poisson ratio, Hill), AU (universal anisotropy
    index 5 G_V/G_R + K_V/K_R - 6). Raises ``ValueError`` for a singular tensor.

    The definitions are pymatgen's ``ElasticTensor`` ones (``k_voigt``, ``k_reuss``, ``k_vrh``,
    ``g_voigt``, ``g_reuss``, ``g_vrh``, ``y_mod`` / 1e9, ``homogeneous_poisson``,
    ``universal_anisotropy``; the values emmet stores for Materials Project) on the symmetric
    part of the Voigt matrix, equal to ~1e-15 relative (tests/tensors/test_properties.py).
    They are written out here because the screen computes them for every elastic prediction
    and pymatgen rebuilds the Voigt matrix 84 times per set of properties: 32 ms against
    0.14 ms per tensor (2-core CI machine), which would add ~30 s per 1000 structures to a
    screen that takes ~21 s (benchmarks/bench_screen.py).
    """
    c = full_to_voigt(_single(C, "elastic"), "elastic")
    c = 0.5 * (c + c.T)
    if np.linalg.cond(c) > 1e12:
        raise ValueError("elastic tensor is singular: Reuss averages are undefined")
    s = np.linalg.inv(c)  # engineering compliance (factors 2, 4 included), 1/GPa
    d_c, o_c, sh_c = np.trace(c[:3, :3]), c[0, 1] + c[1, 2] + c[0, 2], np.trace(c[3:, 3:])
    d_s, o_s, sh_s = np.trace(s[:3, :3]), s[0, 1] + s[1, 2] + s[0, 2], np.trace(s[3:, 3:])
    k_v = (d_c + 2.0 * o_c) / 9.0
    g_v = (d_c - o_c + 3.0 * sh_c) / 15.0
    k_r = 1.0 / (d_s + 2.0 * o_s)
    g_r = 15.0 / (4.0 * d_s - 4.0 * o_s + 3.0 * sh_s)
    k, g = 0.5 * (k_v + k_r), 0.5 * (g_v + g_r)
    return {
        "K_V": float(k_v),
        "K_R": float(k_r),
        "K_VRH": float(k),
        "G_V": float(g_v),
        "G_R": float(g_r),
        "G_VRH": float(g),
        "E": float(9.0 * k * g / (3.0 * k + g)),
        "nu": float((3.0 * k - 2.0 * g) / (2.0 * (3.0 * k + g))),
        "AU": float(5.0 * g_v / g_r + k_v / k_r - 6.0),
    }
