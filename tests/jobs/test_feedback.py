"""DFPT feedback: validation → TrainingDocs (deduplicated) → candidate annotations; builder."""

from __future__ import annotations

import numpy as np
import pytest
from jobflow import run_locally
from maggma.stores import MemoryStore

from atomate2_gmt.jobs.builders import DFPTFeedbackBuilder
from atomate2_gmt.jobs.feedback import apply_feedback, feedback_job
from atomate2_gmt.schemas.training import TrainingDoc
from atomate2_gmt.stores import EmbeddedStore
from atomate2_gmt.tensors.conventions import full_to_voigt
from tests.jobs.conftest import candidate_doc, vasp_dfpt_doc


def _run_job(doc, training, candidates):  # type: ignore[no-untyped-def]
    job = feedback_job(doc, training_store=training, candidate_store=candidates)
    return run_locally(job, ensure_success=True)[job.uuid][1].output


def test_accepted_result_becomes_training_data_once(stores, tmp_path) -> None:  # type: ignore[no-untyped-def]
    training, candidates = stores
    nacl = vasp_dfpt_doc("NaCl_phonons_dielectric")
    cand = candidate_doc(nacl)
    candidates.update([cand])
    nacl = nacl.model_copy(update={"candidate_id": cand["prediction_id"]})
    # the job gets its own (serialised) copies of the stores, as under a workflow manager
    spec_t = EmbeddedStore(training.path, "gmt_training", key="record_id")
    spec_c = EmbeddedStore(candidates.path, "gmt_predictions", key="prediction_id")
    out = _run_job(nacl, spec_t, spec_c)
    key = nacl.structure_key
    ids = [
        f"{key}:dielectric:vasp:dielectric_electronic",
        f"{key}:dielectric_total:vasp:dielectric_total",
        f"{key}:piezo:vasp:piezo_total",  # centrosymmetric: e = 0, a valid training target
    ]
    assert out == {
        "state": "accepted",
        "reasons": [],
        "training_record_ids": ids,
        "training_conflicts": [],
        "candidates_updated": [cand["prediction_id"]],
    }
    docs = {d["record_id"]: d for d in training.query()}
    assert sorted(docs) == sorted(ids)
    total = docs[ids[1]]
    assert total["task"] == "dielectric_total"
    assert total["part"] == "dielectric_total"
    assert total["contribution"] == "total"
    assert total["units"] == "dimensionless"
    np.testing.assert_allclose(total["tensor"], 6.73138 * np.eye(3), atol=1e-5)
    np.testing.assert_allclose(total["voigt"], total["tensor"])
    assert total["code"] == "vasp"
    assert total["job_uuid"] == "uuid-NaCl_phonons_dielectric"
    assert total["candidate_id"] == cand["prediction_id"]
    assert total["source"] == "dfpt_vasp"
    # every key field is indexed
    names = " ".join(training.index_names())
    for field in ("record_id", "structure_key", "task", "part", "code", "candidate_id"):
        assert field in names
    # the candidate keeps every field and gains dfpt
    got = next(candidates.query({"prediction_id": cand["prediction_id"]}))
    for k, v in cand.items():
        assert got[k] == v
    assert got["dfpt"]["state"] == "accepted"
    assert got["dfpt"]["training_record_ids"] == ids
    np.testing.assert_allclose(got["dfpt"]["tensors"]["dielectric"], 2.524485 * np.eye(3))
    assert set(got["dfpt"]["tensors"]) == {"dielectric", "dielectric_total", "piezo"}
    np.testing.assert_array_equal(docs[ids[2]]["tensor"], np.zeros((3, 3, 3)))
    # re-running writes no duplicates and keeps created_at
    created = {d["record_id"]: d["created_at"] for d in training.query()}
    _run_job(nacl, spec_t, spec_c)
    assert training.count() == 3
    assert {d["record_id"]: d["created_at"] for d in training.query()} == created
    assert candidates.count() == 1


def test_rejected_result_is_recorded_on_the_candidate_only(stores) -> None:  # type: ignore[no-untyped-def]
    training, candidates = stores
    good = vasp_dfpt_doc("NaCl_phonons_dielectric")
    eps = good.tensor("dielectric_electronic")
    bad = vasp_dfpt_doc(
        "NaCl_phonons_dielectric",
        tensors={**good.tensors, "dielectric_electronic": (0.3 * eps).tolist()},
    )
    candidates.update([candidate_doc(bad, "v1"), candidate_doc(bad, "v2")])
    out = apply_feedback(bad, training, candidates)  # no candidate_id: found by structure_key
    assert out["state"] == "rejected"
    assert out["reasons"] == [
        "dielectric_electronic: smallest eigenvalue 0.7573 < 1 (a permittivity is at least 1)",
        "dielectric_total is not dielectric_electronic + dielectric_ionic (relative difference "
        "0.263 > 0.01)",
    ]
    assert out["training_record_ids"] == []
    assert sorted(out["candidates_updated"]) == [
        f"{bad.structure_key}:v1",
        f"{bad.structure_key}:v2",
    ]
    assert training.count() == 0
    for cand in candidates.query():
        assert cand["dfpt"]["state"] == "rejected"
        assert cand["dfpt"]["reasons"] == out["reasons"]
        assert cand["dielectric_mean"] == 3.0


def test_failed_calculation_is_recorded_as_failed(stores) -> None:  # type: ignore[no-untyped-def]
    training, candidates = stores
    failed = vasp_dfpt_doc("Si_dielectric", state="failed", error="VASP: ZBRENT failed", tensors={})
    candidates.update([candidate_doc(failed)])
    out = apply_feedback(failed, training, candidates)
    assert out["state"] == "failed"
    assert out["reasons"] == ["state is 'failed': VASP: ZBRENT failed"]
    cand = next(candidates.query())
    assert cand["dfpt"]["state"] == "failed"
    assert cand["dfpt"]["dfpt_state"] == "failed"
    assert training.count() == 0


def test_electronic_only_run_gives_only_the_dielectric_record(stores) -> None:  # type: ignore[no-untyped-def]
    """Zn3P2S8 (IBRION=-1): ε∞ and clamped-ion e only → one 'dielectric' record, no piezo."""
    training, candidates = stores
    zps = vasp_dfpt_doc("Zn3P2S8_lepsilon_aiida-vasp")
    out = apply_feedback(zps, training, candidates)
    assert out["state"] == "accepted"
    assert out["training_record_ids"] == [
        f"{zps.structure_key}:dielectric:vasp:dielectric_electronic"
    ]
    assert out["candidates_updated"] == []  # no candidate for it: nothing to annotate


def test_training_doc_to_tensor_record() -> None:
    zps = vasp_dfpt_doc("Zn3P2S8_lepsilon_aiida-vasp")
    (doc,) = TrainingDoc.from_dfpt(zps)
    rec = doc.to_tensor_record()
    assert rec.task == "dielectric"
    assert rec.id == doc.record_id
    assert rec.source == "dfpt_vasp"
    np.testing.assert_allclose(rec.tensor, zps.tensor("dielectric_electronic"))
    np.testing.assert_allclose(rec.voigt, full_to_voigt(rec.tensor, "dielectric"))
    assert rec.structure == zps.get_structure()
    assert rec.provenance["code"] == "vasp"
    assert rec.provenance["part"] == "dielectric_electronic"
    with pytest.raises(ValueError, match="DFPT result is 'failed'"):
        TrainingDoc.from_dfpt(zps.model_copy(update={"state": "failed", "error": "x"}))


@pytest.mark.slow
def test_feedback_on_a_real_mongo_server(mongo_server) -> None:  # type: ignore[no-untyped-def]
    from maggma.stores import MongoStore

    kw = {"database": "gmt_feedback_test", "host": mongo_server.host, "port": mongo_server.port}
    training = MongoStore(collection_name="training", key="record_id", **kw)
    candidates = MongoStore(collection_name="predictions", key="prediction_id", **kw)
    training.connect()
    candidates.connect()
    training._collection.delete_many({})
    candidates._collection.delete_many({})
    si = vasp_dfpt_doc("Si_dielectric")
    cand = candidate_doc(si)
    candidates.update([cand])
    si = si.model_copy(update={"candidate_id": cand["prediction_id"]})
    for _ in range(2):
        out = _run_job(si, training, candidates)
    assert out["state"] == "accepted"
    training.connect()
    candidates.connect()
    assert training.count() == 3
    rec = next(training.query({"task": "dielectric"}))
    np.testing.assert_allclose(rec["tensor"], 11.4154 * np.eye(3), atol=1e-4)
    index_keys = {
        tuple(k for k, _ in v["key"]) for v in training._collection.index_information().values()
    }
    assert ("record_id",) in index_keys
    assert ("part",) in index_keys
    got = next(candidates.query({"prediction_id": cand["prediction_id"]}))
    assert got["dfpt"]["state"] == "accepted"
    assert got["dielectric_mean"] == 3.0
    training.close()
    candidates.close()


def test_builder_bulk_feedback(stores) -> None:  # type: ignore[no-untyped-def]
    training, candidates = stores
    good = [vasp_dfpt_doc(c) for c in ("Si_dielectric", "NaCl_phonons_dielectric")]
    eps = good[1].tensor("dielectric_ionic")
    broken = vasp_dfpt_doc(
        "NaCl_phonons_dielectric",
        job_uuid="broken",
        tensors={**good[1].tensors, "dielectric_ionic": (-eps).tolist()},
    )
    failed = vasp_dfpt_doc(
        "Zn3P2S8_lepsilon_aiida-vasp", state="failed", error="timeout", tensors={}
    )
    source = MemoryStore(key="job_uuid")
    source.connect()
    source.update([d.model_dump() for d in (*good, broken, failed)])
    candidates.update([candidate_doc(good[0])])
    builder = DFPTFeedbackBuilder(source=source, target=training, candidates=candidates)
    builder.run()
    assert builder.summary == {"accepted": 2, "rejected": 1, "failed": 1}
    training.connect()
    assert training.count() == 6  # Si and NaCl: dielectric, dielectric_total, piezo each
    builder.run()  # idempotent
    training.connect()
    assert training.count() == 6
    candidates.connect()
    si = next(candidates.query())
    assert si["dfpt"]["state"] == "accepted"
    assert si["dfpt"]["job_uuid"] == "uuid-Si_dielectric"
    np.testing.assert_allclose(si["dfpt"]["tensors"]["dielectric"], 11.4154 * np.eye(3), atol=1e-4)
