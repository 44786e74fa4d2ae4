"""Training documents: one DFPT target tensor of one structure, ready to train on.

A :class:`TrainingDoc` is made from an accepted :class:`~atomate2_gmt.schemas.dfpt.DFPTResultDoc`
for each training-target part it has (:data:`~atomate2_gmt.schemas.dfpt.PART_TASK`:
``dielectric_electronic`` → ``dielectric``, ``dielectric_total`` → ``dielectric_total``,
``piezo_total`` → ``piezo``, ``elastic_relaxed`` → ``elastic``). The tensor is full Cartesian in
the frame of ``structure`` (the structure as computed) with its standard Voigt form (xx, yy, zz,
yz, xz, xy; no factors of 2) in the same frame; units per task (dimensionless, C/m², GPa).

The key ``record_id`` = ``"<structure_key>:<task>:<code>:<part>"`` is deterministic, so writing
the same result again replaces the document instead of adding one. The stored tensor has its
intrinsic index symmetry exactly (a DFPT code's round-off asymmetry, which validation bounds, is
projected away).

A different result for the same ``record_id`` never replaces a stored one
(:func:`atomate2_gmt.jobs.feedback.write_training_docs`): it is kept as a conflicting record,
``record_id`` = ``"<record_id>~<digest of its tensor>"``, with ``conflict_with`` naming the
stored record and ``use_for_training`` False; the stored record lists it in ``conflicts``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, field_validator

from atomate2_gmt.data.records import TASK_UNITS, TensorRecord
from atomate2_gmt.data.store_source import record_from_training_dict
from atomate2_gmt.schemas.dfpt import PART_TASK, DFPTResultDoc
from atomate2_gmt.tensors.conventions import full_to_voigt, kind_of
from atomate2_gmt.tensors.symmetry import intrinsic_projector

__all__ = [
    "PART_CONTRIBUTION",
    "TRAINING_DOC_INDEXES",
    "TRAINING_KEY",
    "TrainingDoc",
    "index_symmetrised",
    "training_record_id",
]

TRAINING_KEY = "record_id"

PART_CONTRIBUTION: dict[str, str] = {
    "dielectric_electronic": "electronic",
    "dielectric_total": "total",
    "piezo_total": "total (relaxed-ion)",
    "elastic_relaxed": "relaxed-ion",
}
"""Which physical part each training-target DFPT part is."""

TRAINING_DOC_INDEXES: tuple[tuple[tuple[str, ...], bool], ...] = (
    ((TRAINING_KEY,), True),
    (("structure_key",), False),
    (("task",), False),
    (("part",), False),
    (("code",), False),
    (("source",), False),
    (("id",), False),
    (("candidate_id",), False),
    (("last_updated",), False),
    (("conflict_with",), False),
)
"""Indexes of the training store for TrainingDocs (unique record id; structure key, task, part,
code, source, id, candidate_id, last_updated, conflict_with)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def index_symmetrised(tensor: np.ndarray, kind: str) -> np.ndarray:
    """``tensor`` (full Cartesian) projected onto its intrinsic index symmetry (ε_ij = ε_ji;
    e_ijk = e_ikj; C_ijkl = C_jikl = C_ijlk = C_klij); same units."""
    arr = np.asarray(tensor, dtype=float)
    return (intrinsic_projector(kind) @ arr.reshape(-1)).reshape(arr.shape)


def training_record_id(structure_key: str, task: str, code: str, part: str) -> str:
    """The deterministic key of a training document."""
    return f"{structure_key}:{task}:{code}:{part}"


class TrainingDoc(BaseModel):
    """One training tensor from a DFPT calculation, with its provenance."""

    record_id: str = Field(description="'<structure_key>:<task>:<code>:<part>'.")
    id: str = Field(description="Record id inside its source (= record_id).")
    source: str = Field(description="'dfpt_<code>'.")
    structure_key: str
    formula_pretty: str | None = None
    structure: dict[str, Any] = Field(description="Structure.as_dict(); the tensor's frame.")
    task: str = Field(description="dielectric, dielectric_total, piezo or elastic.")
    part: str = Field(description="DFPT part (schemas.dfpt.DFPT_PARTS) the tensor is.")
    contribution: str = Field(description="electronic / total / relaxed-ion.")
    units: str = Field(description="dimensionless, C/m^2 or GPa.")
    tensor: list[Any] = Field(description="Full Cartesian tensor in the structure's frame.")
    voigt: list[list[float]] = Field(description="Standard Voigt form, same frame and units.")
    code: str
    code_version: str | None = None
    functional: str | None = None
    pseudopotentials: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    job_uuid: str | None = None
    dir_name: str | None = None
    candidate_id: str | None = None
    use_for_training: bool = Field(
        default=True,
        description="False for a result that conflicts with the validated record of its key.",
    )
    conflict_with: str | None = Field(
        default=None, description="record_id of the validated record this result disagrees with."
    )
    conflicts: list[str] = Field(
        default_factory=list, description="record_ids of later results that disagree with this one."
    )
    created_at: datetime = Field(default_factory=_utcnow)
    last_updated: datetime = Field(default_factory=_utcnow)

    @field_validator("structure", mode="before")
    @classmethod
    def _structure_as_dict(cls, value: Any) -> Any:
        """Accept a pymatgen Structure too (jobflow decodes MSON dicts into objects)."""
        return value.as_dict() if hasattr(value, "as_dict") else value

    @classmethod
    def from_dfpt(cls, doc: DFPTResultDoc) -> list[TrainingDoc]:
        """One TrainingDoc per training-target part of a (validated) DFPT result."""
        if doc.state != "successful":
            raise ValueError(f"DFPT result is {doc.state!r}: {doc.error}")
        if not doc.structure_key:
            raise ValueError("DFPT result has no structure_key")
        out = []
        for part, task in PART_TASK.items():
            tensor = doc.tensor(part)
            if tensor is None:
                continue
            tensor = index_symmetrised(tensor, kind_of(task))
            rid = training_record_id(doc.structure_key, task, doc.code, part)
            out.append(
                cls(
                    record_id=rid,
                    id=rid,
                    source=f"dfpt_{doc.code}",
                    structure_key=doc.structure_key,
                    formula_pretty=doc.formula_pretty,
                    structure=doc.structure,
                    task=task,
                    part=part,
                    contribution=PART_CONTRIBUTION[part],
                    units=TASK_UNITS[task],
                    tensor=tensor.tolist(),
                    voigt=np.asarray(full_to_voigt(tensor, kind_of(task))).tolist(),
                    code=doc.code,
                    code_version=doc.code_version,
                    functional=doc.functional,
                    pseudopotentials=doc.pseudopotentials,
                    settings=doc.settings,
                    job_uuid=doc.job_uuid,
                    dir_name=doc.dir_name,
                    candidate_id=doc.candidate_id,
                )
            )
        return out

    def to_store_dict(self) -> dict[str, Any]:
        """Dict for a store (datetimes kept as datetimes, tensors as nested lists)."""
        return self.model_dump()

    def to_tensor_record(self) -> TensorRecord:
        """The :class:`TensorRecord` of this document (same frame, units, id)."""
        return record_from_training_dict(self.to_store_dict())
