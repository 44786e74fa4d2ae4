"""DFPT results built from the real VASP reference runs (tests/dfpt/data/vasp), and stores."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymatgen.core import Structure

from atomate2_gmt.dfpt.vasp import read_outcar_lepsilon
from atomate2_gmt.schemas.dfpt import DFPTResultDoc
from atomate2_gmt.stores import EmbeddedStore
from atomate2_gmt.tensors.symmetry.analysis import structure_key
from tests.feedback_docs import VASP_SETTINGS

VASP_DATA = Path(__file__).parents[1] / "dfpt" / "data" / "vasp"


def vasp_dfpt_doc(case: str, **update: Any) -> DFPTResultDoc:
    """The DFPTResultDoc of a reference run: OUTCAR tensors, input POSCAR, VASP provenance."""
    folder = VASP_DATA / case / "inputs"
    poscar = folder / "POSCAR.gz" if (folder / "POSCAR.gz").exists() else folder / "POSCAR"
    structure = Structure.from_file(poscar)
    outcar = VASP_DATA / case / "outputs" / "OUTCAR.gz"
    parsed = read_outcar_lepsilon(outcar, nsites=len(structure))
    fields: dict[str, Any] = {
        "structure": structure.as_dict(),
        "structure_key": structure_key(structure),
        "formula_pretty": structure.composition.reduced_formula,
        "code": "vasp",
        "code_version": "6.2.1",
        "functional": "PBE",
        # production settings (the reference runs themselves were cheaper test runs)
        "settings": VASP_SETTINGS,
        "tensors": {k: v.tolist() for k, v in parsed["tensors"].items()},
        "dir_name": str(outcar.parent),
        "job_uuid": f"uuid-{case}",
    }
    fields.update(update)
    return DFPTResultDoc(**fields)


def candidate_doc(dfpt: DFPTResultDoc, model_version: str = "v1") -> dict[str, Any]:
    """A prediction document (the fields feedback must keep) for the DFPT result's structure."""
    return {
        "prediction_id": f"{dfpt.structure_key}:{model_version}",
        "structure_key": dfpt.structure_key,
        "model_version": model_version,
        "formula_pretty": dfpt.formula_pretty,
        "source": "test",
        "state": "successful",
        "tasks": ["dielectric"],
        "predictions": {"dielectric": {"task": "dielectric", "state": "successful"}},
        "dielectric_mean": 3.0,
        "structure": json.loads(json.dumps(dfpt.structure)),
    }


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[EmbeddedStore, EmbeddedStore]]:
    """(training store, candidate store) in one embedded SQLite file, connected."""
    path = str(tmp_path / "stores.sqlite")
    training = EmbeddedStore(path, "gmt_training", key="record_id")
    candidates = EmbeddedStore(path, "gmt_predictions", key="prediction_id")
    training.connect()
    candidates.connect()
    yield training, candidates
    training.close()
    candidates.close()
