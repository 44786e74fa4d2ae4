"""Training documents: one DFPT target tensor of one structure, ready to train on.

A :class:`TrainingDoc` is made from an accepted :class:`~atomate2_gmt.schemas.dfpt.DFPTResultDoc`
for each training-target part it has (:data:`~atomate2_gmt.schemas.dfpt.PART_TASK`:
``dielectric_electronic`` → ``dielectric``, ``dielectric_total`` → ``dielectric_total``,
``piezo_total`` → ``piezo``, ``elastic_relaxed`` → ``elastic``). The tensor is full Cartesian in
the frame of ``structure`` (the structure as computed) with its standard Voigt form (xx, yy, zz,
yz, xz, xy; no factors of 2) in the same frame; units per task (dimensionless, C/m², GPa).

The key ``record_id`` = ``"<structure_key>:<task>:<code>:<part>"`` is deterministic, so writing
the same result again replaces the document instead of adding one.
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

__all__ = ["PART_CONTRIBUTION", "TRAINING_DOC_INDEXES", "TRAINING_KEY", "TrainingDoc"]

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
)
"""Indexes of the training store for TrainingDocs (stores.TRAINING_INDEXES plus part, code,
candidate_id)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
