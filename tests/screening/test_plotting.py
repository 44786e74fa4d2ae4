"""Tensor pictures: the plotted directional quantities are the right physics."""

from __future__ import annotations

import numpy as np
import pytest

from atomate2_gmt.plotting import (
    directional_values,
    longitudinal_piezo,
    plot_tensor_surfaces,
    unit_sphere,
    youngs_modulus,
)
from atomate2_gmt.tensors.conventions import voigt_to_full
from atomate2_gmt.tensors.properties import isotropic_elastic_tensor


def test_isotropic_young_modulus_is_9KG_over_3K_plus_G():
    K, G = 160.0, 80.0
    C = isotropic_elastic_tensor(K, G)
    E = youngs_modulus(C, unit_sphere(10, 20))
    np.testing.assert_allclose(E, 9 * K * G / (3 * K + G), rtol=1e-10)


def test_cubic_young_modulus_along_axes_and_body_diagonal():
    # Cu-like cubic C11, C12, C44 (GPa): E<100> = (C11-C12)(C11+2C12)/(C11+C12)
    c11, c12, c44 = 168.4, 121.4, 75.4
    voigt = np.zeros((6, 6))
    voigt[:3, :3] = c12
    np.fill_diagonal(voigt[:3, :3], c11)
    voigt[3, 3] = voigt[4, 4] = voigt[5, 5] = c44
    C = voigt_to_full(voigt, "elastic")
    e100 = (c11 - c12) * (c11 + 2 * c12) / (c11 + c12)
    s11 = (c11 + c12) / ((c11 - c12) * (c11 + 2 * c12))
    s12 = -c12 / ((c11 - c12) * (c11 + 2 * c12))
    s44 = 1 / c44
    e111 = 1 / (s11 - 2 * (s11 - s12 - s44 / 2) / 3)
    n = np.array([[1.0, 0, 0], [0, 0, 1.0], np.ones(3) / np.sqrt(3)])
    np.testing.assert_allclose(youngs_modulus(C, n), [e100, e100, e111], rtol=1e-10)


def test_zincblende_longitudinal_piezo():
    e14 = -0.16  # C/m², GaAs-like; -43m: e_x,yz = e_y,zx = e_z,xy = e14
    voigt = np.zeros((3, 6))
    voigt[0, 3] = voigt[1, 4] = voigt[2, 5] = e14
    e = voigt_to_full(voigt, "piezo")
    n = np.array([[1.0, 0, 0], np.ones(3) / np.sqrt(3), -np.ones(3) / np.sqrt(3)])
    expected = [0.0, 2 * e14 / np.sqrt(3), -2 * e14 / np.sqrt(3)]  # e_L = 6 e14 n_x n_y n_z
    np.testing.assert_allclose(longitudinal_piezo(e, n), expected, atol=1e-15)


def test_dielectric_surface_and_errors(tmp_path):
    eps = np.diag([2.0, 3.0, 5.0])
    n = np.eye(3)
    np.testing.assert_allclose(directional_values("dielectric", eps, n), [2.0, 3.0, 5.0])
    with pytest.raises(ValueError, match="singular"):
        youngs_modulus(np.zeros((3, 3, 3, 3)), n)
    with pytest.raises(ValueError, match="no picture for task"):
        directional_values("bandgap", eps, n)
    with pytest.raises(ValueError, match="no tensors"):
        plot_tensor_surfaces({}, tmp_path / "x.png")


def test_picture_is_written(tmp_path):
    C = isotropic_elastic_tensor(100.0, 50.0)
    out = plot_tensor_surfaces(
        {"dielectric": np.diag([2.0, 3.0, 5.0]), "elastic": C},
        tmp_path / "f" / "t.png",
        resolution=12,
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _overlapping_tick_labels(fig) -> list[tuple[int, str, str]]:
    """(panel, label, label) for every two drawn tick labels of one 3D panel whose boxes (the
    renderer's window extents) overlap; all three axes of a panel are checked together."""
    import itertools

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out = []
    for k, ax in enumerate(a for a in fig.axes if hasattr(a, "zaxis")):
        labels = []
        for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim()),
                          (ax.zaxis, ax.get_zlim())):  # fmt: skip
            for tick in axis.get_major_ticks():
                if min(lim) <= tick.get_loc() <= max(lim) and tick.label1.get_text():
                    labels.append(tick.label1)
        assert len(labels) >= 6  # something is drawn on each axis
        boxes = [label.get_window_extent(renderer) for label in labels]
        for a, b in itertools.combinations(range(len(labels)), 2):
            if boxes[a].overlaps(boxes[b]):
                out.append((k, labels[a].get_text(), labels[b].get_text()))
    return out


@pytest.mark.parametrize("scale", [0.33, 0.05, 0.012, 0.0031, 1.7])
def test_tick_labels_of_the_panels_do_not_overlap(scale):
    """The three panels of ``show`` (ε∞, piezo, elastic); piezo magnitudes from 0.003 to 2 C/m²
    once made the middle panel's x tick labels run into each other."""
    import matplotlib.pyplot as plt

    from atomate2_gmt.plotting import tensor_surfaces_figure

    voigt = np.zeros((3, 6))
    voigt[0, 3] = voigt[1, 4] = voigt[2, 5] = -0.5 * scale
    voigt[2, 2], voigt[2, 0], voigt[2, 1] = scale, -0.15 * scale, -0.15 * scale
    tensors = {
        "dielectric": np.diag([5.1, 5.1, 6.3]),
        "piezo": voigt_to_full(voigt, "piezo"),
        "elastic": isotropic_elastic_tensor(120.0, 60.0),
    }
    fig = tensor_surfaces_figure(tensors, title="AlP")
    try:
        assert _overlapping_tick_labels(fig) == []
    finally:
        plt.close(fig)
