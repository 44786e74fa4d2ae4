"""Measure whether a model rotates with the crystal: the check every shipped or promoted model
passes.

For a structure S, an orthogonal matrix R (a rotation, or a rotation times the inversion) and the
predicted full tensor T(S), an O(3)-equivariant model gives T(R·S) = R·T(S) (R applied to every
index). :func:`equivariance_error` is the worst relative Frobenius error of that identity over
structures and one proper plus one improper random R each; a float32 model reaches round-off,
about 1e-7, so :data:`EQUIVARIANCE_TOLERANCE` (1e-5) separates round-off from a broken model
(a lab-frame constant, a frame-dependent input) by orders of magnitude.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

from atomate2_gmt.model.batch import collate_crystals, prepare_crystal
from atomate2_gmt.model.tensor_model import TensorModel
from atomate2_gmt.tensors.conventions import rotate

__all__ = ["EQUIVARIANCE_TOLERANCE", "equivariance_error", "random_orthogonal", "transformed"]

EQUIVARIANCE_TOLERANCE = 1e-5
"""Largest relative error accepted for a float32 model (round-off is about 1e-7)."""


def random_orthogonal(rng: np.random.Generator, improper: bool) -> np.ndarray:
    """A random 3x3 rotation (det +1), or that rotation times -1 (det -1) when ``improper``."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return -q if improper else q


def transformed(structure: Structure, R: np.ndarray) -> Structure:
    """``structure`` with every Cartesian vector mapped x → R x (lattice rows and sites)."""
    return Structure(
        Lattice(structure.lattice.matrix @ R.T),
        structure.species,
        structure.frac_coords,
        site_properties=structure.site_properties,
    )


def equivariance_error(
    model: TensorModel, structures: Sequence[Structure], seed: int = 0
) -> tuple[float, str]:
    """Worst relative error ``|T(R·S) − R·T(S)|_F / |T(S)|_F`` over ``structures``, each under
    one proper and one improper random R, and where it occurred. The denominator is never
    below the model's ``target_scale`` (the RMS training component, task units): float32
    round-off is relative to the magnitudes the network works at, so a tensor much smaller than
    that (0.05 C/m² for a zinc-blende piezo prediction) is compared against the scale, and a
    symmetry-forbidden zero tensor in absolute terms of it."""
    rng = np.random.default_rng(seed)
    model.eval()
    config = model.config
    worst, where = 0.0, ""
    floor = max(float(getattr(model, "target_scale", 0.0)), 1e-8)
    for structure in structures:
        for improper in (False, True):
            R = random_orthogonal(rng, improper)
            crystals = [
                prepare_crystal(structure, config),
                prepare_crystal(transformed(structure, R), config),
            ]
            with torch.no_grad():
                batch = collate_crystals(crystals, model.dtype).to(model.device, model.dtype)
                out = model(batch).cpu().numpy()
            expected = rotate(out[0], R)
            scale = max(float(np.linalg.norm(expected)), floor)
            err = float(np.linalg.norm(out[1] - expected)) / scale
            if err > worst:
                kind = "improper" if improper else "proper"
                worst, where = err, f"{structure.composition.reduced_formula} ({kind} rotation)"
    return worst, where
