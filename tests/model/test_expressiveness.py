"""Every symmetry-allowed component must be reachable (untrained weights).

With harmonics only up to l = 2, crystals whose atoms all sit on cubic sites get no l = 3 / l = 4
features: no piezo e14 for -43m (zincblende), and C44 = (C11 − C12)/2 for rocksalt and bcc. The
negative controls below build that model and show the failure; the default model must not have it.
"""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.analysis.elasticity import ElasticTensor
from pymatgen.core import Lattice, Structure

from atomate2_gmt.tensors.symmetry import point_group_info
from tests.model.conftest import calibrated_model, predict_one, prototypes

# point group -> (space group, lattice): one primitive space group per non-centrosymmetric group
NONCENTRO = {
    "1": (1, Lattice.from_parameters(4.1, 4.6, 5.2, 82, 97, 104)),
    "2": (3, Lattice.from_parameters(4.1, 4.6, 5.2, 90, 101, 90)),
    "m": (6, Lattice.from_parameters(4.1, 4.6, 5.2, 90, 101, 90)),
    "222": (16, Lattice.orthorhombic(4.1, 4.6, 5.2)),
    "mm2": (25, Lattice.orthorhombic(4.1, 4.6, 5.2)),
    "4": (75, Lattice.tetragonal(4.4, 5.2)),
    "-4": (81, Lattice.tetragonal(4.4, 5.2)),
    "422": (89, Lattice.tetragonal(4.4, 5.2)),
    "4mm": (99, Lattice.tetragonal(4.4, 5.2)),
    "-42m": (111, Lattice.tetragonal(4.4, 5.2)),
    "3": (143, Lattice.hexagonal(4.6, 5.4)),
    "32": (150, Lattice.hexagonal(4.6, 5.4)),
    "3m": (156, Lattice.hexagonal(4.6, 5.4)),
    "6": (168, Lattice.hexagonal(4.6, 5.4)),
    "-6": (174, Lattice.hexagonal(4.6, 5.4)),
    "622": (177, Lattice.hexagonal(4.6, 5.4)),
    "6mm": (183, Lattice.hexagonal(4.6, 5.4)),
    "-6m2": (187, Lattice.hexagonal(4.6, 5.4)),
    "23": (195, Lattice.cubic(5.9)),
    "-43m": (215, Lattice.cubic(5.9)),
    "432": (207, Lattice.cubic(5.9)),
}


def point_group_crystal(pg: str) -> Structure:
    """Zn on a general position + O at the origin of a space group of point group ``pg``."""
    number, lattice = NONCENTRO[pg]
    return Structure.from_spacegroup(number, lattice, ["Zn", "O"], [[0.09, 0.36, 0.27], [0, 0, 0]])


@pytest.mark.parametrize("pg", sorted(NONCENTRO))
def test_piezo_nonzero_for_every_noncentrosymmetric_point_group(pg):
    structure = point_group_crystal(pg)
    assert point_group_info(structure).point_group == pg
    model = calibrated_model("piezo", "float64")
    e = predict_one(model, structure)
    if pg == "432":  # piezo forbidden by symmetry
        assert np.abs(e).max() < 1e-12
    else:
        assert np.linalg.norm(e) > 1e-4, f"{pg}: piezo tensor {np.linalg.norm(e):.1e} C/m²"
    for task in ("dielectric", "elastic"):
        T = predict_one(calibrated_model(task, "float64"), structure)
        assert np.linalg.norm(T) > 1e-2


@pytest.mark.parametrize("name", ["zincblende_GaAs", "zincblende_BN"])
def test_zincblende_piezo_e14_is_reachable(name):
    structure = prototypes()[name]
    e = predict_one(calibrated_model("piezo", "float64"), structure)
    # -43m: the only independent component is e14 = e_xyz (Voigt e_14 = e[0, 1, 2])
    assert abs(e[0, 1, 2]) > 1e-4
    assert np.allclose(e[0, 1, 2], [e[1, 0, 2], e[2, 0, 1]], rtol=1e-10)
    # negative control: harmonics to l = 2 only (the reference's choice) give exactly zero
    reference_like = calibrated_model("piezo", "float64", lmax_sh=2)
    assert np.abs(predict_one(reference_like, structure)).max() < 1e-10


@pytest.mark.parametrize("name", ["rocksalt_NaCl", "rocksalt_MgO", "bcc_Fe", "bcc_W", "cscl_CsCl"])
def test_cubic_elastic_anisotropy_is_reachable(name):
    structure = prototypes()[name]
    C = ElasticTensor(predict_one(calibrated_model("elastic", "float64"), structure)).voigt
    zener = 2 * C[3, 3] / (C[0, 0] - C[0, 1])
    assert abs(zener - 1) > 1e-3, f"{name}: Zener ratio {zener}"
    # negative control: with harmonics to l = 2 the model is stuck at the isotropic ratio
    Cref = ElasticTensor(
        predict_one(calibrated_model("elastic", "float64", lmax_sh=2), structure)
    ).voigt
    assert abs(2 * Cref[3, 3] / (Cref[0, 0] - Cref[0, 1]) - 1) < 1e-8


@pytest.mark.parametrize("name", sorted(prototypes()))
def test_dielectric_and_elastic_nonzero_for_prototypes(name):
    structure = prototypes()[name]
    for task in ("dielectric", "elastic"):
        assert np.linalg.norm(predict_one(calibrated_model(task, "float64"), structure)) > 1e-2


@pytest.mark.parametrize("task", ["piezo", "elastic"])
def test_lighter_hidden_features_keep_every_component_reachable(task):
    """``hidden_lmax=2`` (the cheaper shipped configuration) keeps harmonics to the head's order,
    so zincblende e14 and cubic elastic anisotropy stay reachable."""
    model = calibrated_model(task, "float64", hidden_lmax=2)
    assert model.config.lmax_sh == model.config.head_lmax
    assert max(ir.l for _, ir in model.equivariant_layers[0].irreps_out) == 2
    if task == "piezo":
        assert abs(predict_one(model, prototypes()["zincblende_GaAs"])[0, 1, 2]) > 1e-4
    else:
        C = ElasticTensor(predict_one(model, prototypes()["rocksalt_NaCl"])).voigt
        assert abs(2 * C[3, 3] / (C[0, 0] - C[0, 1]) - 1) > 1e-3
