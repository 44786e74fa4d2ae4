"""The DFPT result document: what every DFPT backend (ABINIT, VASP) returns.

One :class:`DFPTResultDoc` per finished (or failed) calculation on one structure. Tensors are
full Cartesian, in the Cartesian frame of ``structure`` (the structure as computed, i.e. the
frame the code reported its tensors in after any conversion the backend made), in the project's
units: dielectric dimensionless, piezo stress-charge e_ijk in C/m², elastic C_ijkl in GPa.
Voigt forms are derived on demand (standard order xx,yy,zz,yz,xz,xy, no factors of 2).

Which part is which (:data:`DFPT_PARTS`):

- ``dielectric_electronic``: ε∞, clamped ions (the ``dielectric`` task);
- ``dielectric_ionic``: the lattice (phonon) contribution; ``dielectric_total`` = ε∞ + ionic
  (the ``dielectric_total`` task, static ε0);
- ``piezo_electronic``: clamped-ion e_ijk; ``piezo_ionic``: the internal-strain part;
  ``piezo_total``: relaxed-ion = electronic + ionic (the ``piezo`` task, what MP reports);
- ``elastic_clamped``: clamped-ion C_ijkl; ``elastic_relaxed``: relaxed-ion (the ``elastic`` task).

Backends fill the parts they compute and leave the others out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator

from atomate2_gmt import __version__
from atomate2_gmt.tensors.tasks import DFPT_PART_KIND, KIND_RANK, KIND_SPECS, TASK_SPECS

__all__ = ["DFPT_PARTS", "PART_TASK", "TASK_PART", "DFPTResultDoc"]

DFPT_PARTS: dict[str, tuple[str, str]] = {
    part: (kind, KIND_SPECS[kind].units) for part, kind in DFPT_PART_KIND.items()
}
"""Part name → (tensor kind, units), from the task registry (:mod:`atomate2_gmt.tensors.tasks`)."""

PART_TASK: dict[str, str] = {s.dfpt_part: task for task, s in TASK_SPECS.items()}
"""The DFPT part that is the training target of each prediction task."""

TASK_PART: dict[str, str] = {task: part for part, task in PART_TASK.items()}
"""Prediction task → the DFPT part it is trained on."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DFPTResultDoc(BaseModel):
    """Tensors from one DFPT calculation on one structure, with provenance."""

    structure: dict[str, Any] = Field(
        description="pymatgen Structure.as_dict() as computed; its Cartesian frame is the tensors'."
    )
    structure_key: str | None = Field(
        default=None, description="tensors.symmetry.analysis.structure_key."
    )
    formula_pretty: str | None = None
    code: Literal["abinit", "vasp"] = Field(description="Code that computed it.")
    code_version: str | None = None
    functional: str | None = Field(default=None, description="e.g. 'PBE', 'LDA', 'PBEsol'.")
    pseudopotentials: dict[str, Any] = Field(
        default_factory=dict, description="Element → pseudopotential file/label (and its hash)."
    )
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Accuracy settings: ecut, k-points, tolerances, preset."
    )
    state: Literal["successful", "failed"] = "successful"
    error: str | None = Field(default=None, description="Why it failed or was rejected.")
    tensors: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Part (see DFPT_PARTS) → full Cartesian tensor (nested lists), units per part.",
    )
    born_charges: list[list[list[float]]] | None = Field(
        default=None, description="Born effective charges Z*_{k,αβ} per site (e), when computed."
    )
    candidate_id: str | None = Field(
        default=None, description="prediction_id of the candidate document that was selected."
    )
    job_uuid: str | None = None
    dir_name: str | None = Field(default=None, description="Folder of the calculation.")
    wall_time_s: float | None = None
    atomate2_gmt_version: str = Field(default=__version__)
    last_updated: datetime = Field(default_factory=_utcnow)

    @field_validator("structure", mode="before")
    @classmethod
    def _structure_as_dict(cls, value: Any) -> Any:
        """Accept a pymatgen Structure too (jobflow decodes MSON dicts into objects when it
        resolves a job output)."""
        return value.as_dict() if hasattr(value, "as_dict") else value

    @field_validator("tensors")
    @classmethod
    def _check_tensors(cls, value: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for part, tensor in value.items():
            if part not in DFPT_PARTS:
                raise ValueError(f"unknown DFPT part {part!r}; valid: {', '.join(DFPT_PARTS)}")
            arr = np.asarray(tensor, dtype=float)
            rank = KIND_RANK[DFPT_PARTS[part][0]]
            if arr.shape != (3,) * rank:
                raise ValueError(
                    f"DFPT part {part!r} must be a full Cartesian tensor of shape {(3,) * rank}, "
                    f"got {arr.shape}"
                )
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"DFPT part {part!r} has non-finite components")
            out[part] = arr.tolist()
        return out

    def tensor(self, part: str) -> np.ndarray | None:
        """The full Cartesian tensor of ``part`` as an array, or None if not computed."""
        if part not in DFPT_PARTS:
            raise ValueError(f"unknown DFPT part {part!r}; valid: {', '.join(DFPT_PARTS)}")
        value = self.tensors.get(part)
        return None if value is None else np.asarray(value, dtype=float)

    def get_structure(self) -> Any:
        """The pymatgen Structure (the tensors' frame)."""
        from pymatgen.core import Structure

        return Structure.from_dict(self.structure)
