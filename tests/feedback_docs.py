"""Test helper shared by the retraining tests: training documents as DFPT feedback writes them."""

from __future__ import annotations

from atomate2_gmt.data.records import TensorRecord
from atomate2_gmt.schemas.training import TrainingDoc, training_record_id
from atomate2_gmt.tensors.symmetry.analysis import structure_key

VASP_SETTINGS = {"IBRION": 8, "LEPSILON": True, "ENCUT": 680, "EDIFF": 1e-5, "KSPACING": 0.22}
"""The accuracy settings atomate2's DielectricMaker writes (ENCUT 680 eV and EDIFF 1e-5 from
MPScanRelaxSet, k-points ≈ 0.22 1/Å): what a production VASP DFPT result records."""


def feedback_doc(record: TensorRecord, task: str) -> TrainingDoc:
    """A TrainingDoc as DFPT feedback writes it (electronic dielectric part of a VASP run), from
    a real shipped MP record."""
    key = structure_key(record.structure)
    rid = training_record_id(key, task, "vasp", "dielectric_electronic")
    return TrainingDoc(
        record_id=rid, id=rid, source="dfpt_vasp", structure_key=key,
        structure=record.structure.as_dict(), task=task, part="dielectric_electronic",
        contribution="electronic", units=record.units, tensor=record.tensor.tolist(),
        voigt=record.voigt.tolist(), code="vasp",
    )  # fmt: skip
