"""Pictures of predicted tensors: directional surfaces (matplotlib, Agg backend).

- dielectric: |D| over directions, |ε·n| for a unit field along n (dimensionless);
- piezo: the longitudinal response e_L(n) = e_ijk n_i n_j n_k (C/m²), radius |e_L|, colour
  the sign;
- elastic: the directional Young's modulus E(n) = 1 / (n_i n_j n_k n_l S_ijkl) (GPa), with S
  the compliance tensor (pymatgen ``ElasticTensor.compliance_tensor``).

All in the structure's Cartesian frame (the frame of the tensors in the documents).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "directional_values",
    "longitudinal_piezo",
    "plot_tensor_surfaces",
    "tensor_surfaces_figure",
    "unit_sphere",
    "youngs_modulus",
]

_TITLES = {
    "dielectric": ("|D| / |E|, ε∞", "dimensionless"),
    "dielectric_total": ("|D| / |E|, ε0", "dimensionless"),
    "piezo": ("longitudinal e_L(n)", "C/m²"),
    "elastic": ("Young's modulus E(n)", "GPa"),
}


def unit_sphere(n_theta: int = 60, n_phi: int = 120) -> np.ndarray:
    """Unit vectors on a (θ, φ) grid, shape (n_theta, n_phi, 3)."""
    theta = np.linspace(0.0, np.pi, n_theta)
    phi = np.linspace(0.0, 2.0 * np.pi, n_phi)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    return np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1)


def longitudinal_piezo(e: Any, n: np.ndarray) -> np.ndarray:
    """e_L(n) = e_ijk n_i n_j n_k for unit vectors ``n`` (..., 3); ``e`` full 3x3x3 (C/m²)."""
    e = np.asarray(e, dtype=float)
    if e.shape != (3, 3, 3):
        raise ValueError(f"piezo tensor must be 3x3x3, got {e.shape}")
    return np.einsum("ijk,...i,...j,...k->...", e, n, n, n)


def youngs_modulus(C: Any, n: np.ndarray) -> np.ndarray:
    """Directional Young's modulus (GPa) for unit vectors ``n`` (..., 3); ``C`` full 3x3x3x3 GPa.

    Raises a ``ValueError`` if C is singular (no compliance)."""
    from pymatgen.analysis.elasticity import ElasticTensor

    C = np.asarray(C, dtype=float)
    if C.shape != (3, 3, 3, 3):
        raise ValueError(f"elastic tensor must be 3x3x3x3, got {C.shape}")
    voigt = ElasticTensor(C).voigt
    if abs(np.linalg.det(voigt)) < 1e-12 * max(1.0, float(np.abs(voigt).max()) ** 6):
        raise ValueError("the elastic tensor is singular: no compliance, no Young's modulus")
    S = np.asarray(ElasticTensor(C).compliance_tensor, dtype=float)
    return 1.0 / np.einsum("ijkl,...i,...j,...k,...l->...", S, n, n, n, n)


def directional_values(task: str, tensor: Any, n: np.ndarray) -> np.ndarray:
    """The plotted quantity of ``task`` along unit vectors ``n`` (see the module docstring)."""
    T = np.asarray(tensor, dtype=float)
    if task in ("dielectric", "dielectric_total"):
        if T.shape != (3, 3):
            raise ValueError(f"dielectric tensor must be 3x3, got {T.shape}")
        return np.linalg.norm(np.einsum("ij,...j->...i", T, n), axis=-1)
    if task == "piezo":
        return longitudinal_piezo(T, n)
    if task == "elastic":
        return youngs_modulus(T, n)
    raise ValueError(f"no picture for task {task!r}")


def _nice_tick(limit: float) -> float:
    """The largest 1, 2 or 5 × 10^k not above ``limit`` (> 0)."""
    if not limit > 0:
        return 1.0
    exponent = np.floor(np.log10(limit))
    for mantissa in (5.0, 2.0, 1.0):
        value = mantissa * 10.0**exponent
        if value <= limit:
            return float(value)
    return float(10.0**exponent)


def plot_tensor_surfaces(
    tensors: dict[str, Any],
    path: str | Path,
    title: str | None = None,
    resolution: int = 48,
) -> Path:
    """Write one PNG with a directional surface per task in ``tensors`` (task → full tensor).

    The radius along n is |value(n)|, the colour its value (signed for piezo). Returns the path.
    """
    import matplotlib.pyplot as plt

    fig = tensor_surfaces_figure(tensors, title=title, resolution=resolution)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def tensor_surfaces_figure(
    tensors: dict[str, Any], title: str | None = None, resolution: int = 48
) -> Any:
    """The matplotlib figure of :func:`plot_tensor_surfaces` (one 3D panel per task).

    Each axis has three ticks (−a, 0, a; a = 1, 2 or 5 × 10^k inside the surface's extent) in a
    small font, so that the tick labels of narrow panels never overlap, whatever the magnitude
    of the tensor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors
    from matplotlib.ticker import FixedLocator, FuncFormatter

    if not tensors:
        raise ValueError("no tensors to plot")
    n = unit_sphere(resolution, 2 * resolution)
    fig = plt.figure(figsize=(4.2 * len(tensors), 4.4))
    for k, (task, tensor) in enumerate(tensors.items(), 1):
        values = directional_values(task, tensor, n)
        radius = np.abs(values)
        scale = float(radius.max()) or 1.0
        xyz = n * radius[..., None]
        ax = fig.add_subplot(1, len(tensors), k, projection="3d")
        if task == "piezo":
            lim = float(np.abs(values).max()) or 1.0
            norm = colors.Normalize(-lim, lim)
            cmap = cm.coolwarm
        else:
            norm = colors.Normalize(float(values.min()), float(values.max()) + 1e-12)
            cmap = cm.viridis
        ax.plot_surface(
            xyz[..., 0],
            xyz[..., 1],
            xyz[..., 2],
            facecolors=cmap(norm(values)),
            rstride=1,
            cstride=1,
            linewidth=0,
            antialiased=False,
            shade=False,
        )
        for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
            setter(-scale, scale)
        tick = _nice_tick(0.7 * scale)
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.set_major_locator(FixedLocator([-tick, 0.0, tick]))
            axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.tick_params(labelsize=7, pad=1)
        ax.set_box_aspect((1, 1, 1))
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_zlabel("z")
        label, units = _TITLES.get(task, (task, ""))
        ax.set_title(f"{label}\n[{values.min():.3g}, {values.max():.3g}] {units}", fontsize=9)
        mappable = cm.ScalarMappable(norm=norm, cmap=cmap)
        bar = fig.colorbar(mappable, ax=ax, shrink=0.6, pad=0.1, format="%.3g")
        bar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    return fig
