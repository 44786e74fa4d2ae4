"""What a loaded model must pass before it is used: outputs within the physical bounds, and
rotation equivariance.

Loading a checkpoint only loads (:func:`~atomate2_gmt.model.checkpoint.load_checkpoint`); these
checks run where models enter use: when a checkpoint is registered (the output scale) or
promoted (the output scale and equivariance, :mod:`atomate2_gmt.registry.registry`), and once
per checkpoint file given by path to a prediction process (the model cache of
:mod:`atomate2_gmt.registry.loading`); the shipped checkpoints are checked by the test suite
(``tests/model/test_shipped_equivariance.py``), so loading them (or a registry version) runs no
forward pass.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from atomate2_gmt.model.checkpoint import load_checkpoint
from atomate2_gmt.model.equivariance import EQUIVARIANCE_TOLERANCE, equivariance_error
from atomate2_gmt.model.predict import predict
from atomate2_gmt.tensors.bounds import PHYSICAL_BOUNDS, TASK_BOUNDS

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from atomate2_gmt.model.tensor_model import TensorModel

__all__ = ["build_lock", "check_output_scale", "equivariance_problem", "load_validated"]

_LOCK = threading.Lock()


def build_lock() -> threading.Lock:
    """The lock :func:`load_validated` holds (building a model and its forward pass set torch's
    default dtype, global to the process): take it to build a model, or to run
    :func:`check_output_scale` on one, outside :func:`load_validated`."""
    return _LOCK


def load_validated(path: str | Path, task: str | None = None) -> tuple[TensorModel, dict[str, Any]]:
    """:func:`~atomate2_gmt.model.checkpoint.load_checkpoint`, then :func:`check_output_scale`
    (one forward pass): a checkpoint whose outputs are unphysical is refused (ValueError).

    One at a time per process: building a model and its forward pass set torch's default dtype,
    which is global to the process, so two threads validating at once (concurrent
    registrations) would see each other's."""
    with _LOCK:
        model, meta = load_checkpoint(path, task=task)
        check_output_scale(model, path)
    return model, meta


def equivariance_problem(model: TensorModel, structures: Sequence[Structure]) -> str | None:
    """None if ``model`` rotates with the crystal on ``structures``, else what is wrong
    ("relative error ... for ..., above ..."). Measured on a float64 copy, so that float32
    round-off, which the symmetry projection can amplify for an untrained model, neither hides
    nor fakes a failure: a frame-dependent term errs by 1e-3 or more, round-off by about
    1e-7."""
    error, where = equivariance_error(copy.deepcopy(model).double(), structures)
    if error < EQUIVARIANCE_TOLERANCE:
        return None
    return f"relative error {error:.2g} for {where}, above {EQUIVARIANCE_TOLERANCE:g}"


def check_output_scale(model: Any, path: Any) -> None:
    """Refuse a checkpoint whose outputs are beyond the task's physical bound
    (``tensors.bounds``): a ``target_scale`` that is not finite and positive, or a prediction of
    wurtzite ZnO (a polar crystal with every response non-zero) that is beyond the bound, as
    after a corrupted output scale. Costs one forward pass."""
    from pymatgen.core import Lattice, Structure

    task = getattr(model.config, "task", None)
    if task not in TASK_BOUNDS or not hasattr(model, "target_scale"):
        return
    scale = float(model.target_scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{path}: target_scale {scale!r} is not a finite positive number")
    zno = Structure.from_spacegroup(
        "P6_3mc",
        Lattice.hexagonal(3.25, 5.21),
        ["Zn", "O"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]],
    )
    result = predict([zno], task, model=model, device="cpu")[0]
    if result["state"] != "successful":
        raise ValueError(
            f"{path}: the model's prediction for wurtzite ZnO failed ({result['error']}); a "
            "checkpoint whose outputs are unphysical is refused"
        )
    _check_not_round_off(model, task, result["tensor"], path)


#: A learned response (prediction minus the isotropic offset) of wurtzite ZnO smaller than this
#: fraction of the task's physical bound is round-off: 10⁻¹⁰ of 1000 (ε∞), 100 C/m² (piezo) or
#: 2000 GPa (elastic) is 10⁻⁷, 10⁻⁸ C/m², 2·10⁻⁷ GPa. ZnO's real response is ε∞ anisotropy
#: ≈ 0.1, e33 ≈ 1.2 C/m², C11 ≈ 200 GPa; even an untrained, uncalibrated piezo GMTNet gives
#: 9·10⁻⁶ C/m², while an output scale multiplied by 10⁻³⁰ gives about 10⁻³¹.
ROUND_OFF_FRACTION = 1e-10


def _check_not_round_off(model: Any, task: str, tensor: Any, path: Any) -> None:
    """Refuse a model whose ZnO response is round-off (:data:`ROUND_OFF_FRACTION` of the task's
    bound): an output scale multiplied by 10⁻³⁰ predicts zeros (or the bare isotropic offset)
    for every crystal, which ranks nothing and would pass the upper bounds."""
    bound = PHYSICAL_BOUNDS[TASK_BOUNDS[task]][1]
    offset = model.isotropic_offset().detach().cpu().numpy()
    learned = float(np.max(np.abs(np.asarray(tensor, dtype=float) - offset)))
    if learned < ROUND_OFF_FRACTION * bound:
        raise ValueError(
            f"{path}: the model's response for wurtzite ZnO is {learned:.3g} (largest component "
            f"beyond the isotropic offset), below {ROUND_OFF_FRACTION:g} of the {task} bound "
            f"{bound:g}: round-off, as after an output scale multiplied by a tiny factor "
            f"(target_scale {float(model.target_scale):.3g}); refused"
        )
