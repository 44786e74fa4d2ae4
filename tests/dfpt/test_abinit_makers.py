"""The jobflow interface of the ABINIT backend (no ABINIT process needed)."""

from __future__ import annotations

from jobflow import run_locally
from pymatgen.core import Lattice, Structure

from atomate2_gmt.dfpt.abinit import (
    AbinitDFPTMaker,
    AbinitDielectricMaker,
    AbinitPiezoElasticMaker,
    smoke_settings,
)
from atomate2_gmt.schemas.dfpt import DFPTResultDoc


def test_maker_defaults_and_serialisation():
    assert AbinitDielectricMaker().properties == ("dielectric_total",)
    assert AbinitPiezoElasticMaker().properties == ("piezo", "elastic")
    maker = AbinitDFPTMaker(settings=smoke_settings())
    again = AbinitDFPTMaker.from_dict(maker.as_dict())
    assert again.settings == maker.settings


def test_failure_is_a_failed_document_not_an_exception(tmp_path):
    """A material without pseudopotentials: the job succeeds and records state="failed"."""
    cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    job = AbinitDFPTMaker(settings=smoke_settings()).make(cscl, candidate_id="cand-1")
    responses = run_locally(job, root_dir=tmp_path, create_folders=True, log=False)
    doc = responses[job.uuid][1].output
    assert isinstance(doc, DFPTResultDoc)
    assert doc.state == "failed"
    assert "Cs" in doc.error
    assert doc.candidate_id == "cand-1"
    assert doc.job_uuid == job.uuid
