"""Prediction documents with known, symmetry-consistent tensors for the store/query tests.

(A uniquely named helper module: test files import it directly, conftest.py wraps it in
fixtures.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

from atomate2_gmt.schemas.prediction import (
    GMTPredictionDoc,
    SourceProperties,
    compute_ieee_rotation,
    derived_quantities,
)
from atomate2_gmt.tensors.conventions import full_to_voigt
from atomate2_gmt.tensors.properties import isotropic_elastic_tensor
from atomate2_gmt.tensors.symmetry import symmetrize


def _structures() -> dict[str, Structure]:
    hexagonal = Lattice.hexagonal
    return {
        "ZnO": Structure.from_spacegroup(
            "P6_3mc", hexagonal(3.25, 5.21), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]]
        ),
        "CdS": Structure.from_spacegroup(
            "P6_3mc", hexagonal(4.14, 6.72), ["Cd", "S"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.377]]
        ),
        "GaAs": Structure.from_spacegroup(
            "F-43m", Lattice.cubic(5.65), ["Ga", "As"], [[0, 0, 0], [0.25, 0.25, 0.25]]
        ),
        "NaCl": Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ),
        "PbTiO3": Structure.from_spacegroup(
            "P4mm",
            Lattice.tetragonal(3.90, 4.15),
            ["Pb", "Ti", "O", "O"],
            [[0, 0, 0], [0.5, 0.5, 0.54], [0.5, 0.5, 0.11], [0.5, 0, 0.62]],
        ),
        "TiO2": Structure.from_spacegroup(
            "P4_2/mnm", Lattice.tetragonal(4.59, 2.96), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]]
        ),
    }


STRUCTURES = _structures()


def _prediction(tensor: np.ndarray, kind: str) -> dict[str, Any]:
    return {
        "state": "successful",
        "error": None,
        "tensor": tensor.tolist(),
        "voigt": full_to_voigt(tensor, kind).tolist(),
    }


def make_predictions(
    structure: Structure,
    e_max: float = 0.5,
    eps: tuple[float, float, float] = (5.0, 5.0, 6.0),
    K: float = 100.0,
    G: float = 50.0,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Tensors obeying the structure's point group: ε∞ = sym(diag(eps)), ε0 = 2 ε∞,
    piezo scaled so that the document's e_ij_max (largest singular value of the IEEE-frame
    Voigt form) is e_max (0 if centrosymmetric), C = isotropic(K, G)."""
    rng = np.random.default_rng(seed)
    diel = symmetrize(np.diag(eps), structure, "dielectric")
    piezo = symmetrize(rng.normal(size=(3, 3, 3)), structure, "piezo")
    ieee = compute_ieee_rotation(structure)
    assert not isinstance(ieee, str), ieee
    peak = derived_quantities("piezo", piezo, ieee)["e_ij_max"]
    piezo = piezo * (e_max / peak) if peak > 1e-8 else np.zeros((3, 3, 3))
    elastic = isotropic_elastic_tensor(K, G)
    return {
        "dielectric": _prediction(diel, "dielectric"),
        "dielectric_total": _prediction(2 * diel, "dielectric"),
        "piezo": _prediction(piezo, "piezo"),
        "elastic": _prediction(elastic, "elastic"),
    }


def make_doc(
    name: str,
    version: str = "v1",
    source: str | None = None,
    tasks: tuple[str, ...] = ("dielectric", "dielectric_total", "piezo", "elastic"),
    structure: Structure | None = None,
    energy_above_hull: float | None = None,
    band_gap: float | None = None,
    is_metal: bool | None = None,
    material_id: str | None = None,
    uncertainty: dict[str, float] | None = None,
    **tensor_kwargs: Any,
) -> GMTPredictionDoc:
    structure = structure or STRUCTURES[name]
    preds = make_predictions(structure, **tensor_kwargs)
    info = {
        t: {"name": f"gmtnet-{t}", "version": version, "checkpoint_hash": "0" * 64} for t in tasks
    }
    return GMTPredictionDoc.from_predictions(
        structure,
        {t: preds[t] for t in tasks},
        info,
        source=source or f"{name}.cif",
        device="cpu",
        source_properties=SourceProperties(
            energy_above_hull=energy_above_hull,
            band_gap=band_gap,
            is_metal=is_metal,
            material_id=material_id,
        ),
        uncertainty=uncertainty,
    )
