"""Documents of an older schema: left out of queries, migrated in place by the next screening
of the same structures with the same model (derived fields recomputed, DFPT results kept)."""

from __future__ import annotations

import numpy as np
import pytest

from atomate2_gmt.candidates import Candidate
from atomate2_gmt.engine import _already_predicted
from atomate2_gmt.query import query_candidates
from atomate2_gmt.schemas.fields import PREDICTION_SCHEMA_VERSION
from atomate2_gmt.stores import EmbeddedStore, upsert_predictions
from atomate2_gmt.tensors.conventions import full_to_voigt
from tests.stores.gmt_store_docs import STRUCTURES, make_doc


def _version_1(doc) -> dict:
    """The stored form a version-1 document had: no schema_version, e_ij_max the largest
    |e_iJ| of the structure-frame Voigt matrix, no frame-free piezo fields."""
    d = doc.to_store_dict()
    d.pop("schema_version")
    d.pop("content_hash")  # documents carry their hash from schema 3 on
    e = np.asarray(d["predictions"]["piezo"]["tensor"])
    d["e_ij_max"] = float(np.abs(full_to_voigt(e, "piezo")).max())
    d.pop("e_long_max")
    d.pop("e_norm")
    d["dfpt"] = {"state": "accepted", "code": "abinit", "tensors": {}}
    return d


def test_an_old_document_is_migrated_in_place_and_keeps_its_dfpt_result(tmp_path):
    store = EmbeddedStore(str(tmp_path / "p.sqlite"), "preds", key="prediction_id")
    store.connect()
    current = make_doc("ZnO", e_max=1.0)
    old = _version_1(current)
    assert old["e_ij_max"] != pytest.approx(current.e_ij_max)
    store.update([old], key="prediction_id")
    assert query_candidates(store, "piezo") == []  # never mixed with current documents

    candidate = Candidate(source="ZnO.cif", structure=STRUCTURES["ZnO"])
    done, replaced = _already_predicted(
        store, [(candidate, {"structure_key": old["structure_key"]})], "v1"
    )
    assert replaced == []
    assert done == {id(candidate): old["prediction_id"]}  # no model run needed
    migrated = store.query_one({"prediction_id": old["prediction_id"]})
    assert migrated["schema_version"] == PREDICTION_SCHEMA_VERSION
    assert migrated["e_ij_max"] == pytest.approx(current.e_ij_max)
    assert migrated["e_long_max"] == pytest.approx(current.e_long_max)
    assert migrated["e_norm"] == pytest.approx(current.e_norm)
    assert migrated["dfpt"]["code"] == "abinit"
    [row] = query_candidates(store, "piezo")
    assert row["e_ij_max"] == pytest.approx(1.0)


def test_current_documents_are_left_alone(tmp_path):
    store = EmbeddedStore(str(tmp_path / "p.sqlite"), "preds", key="prediction_id")
    store.connect()
    doc = make_doc("CdS", e_max=0.4)
    upsert_predictions(store, [doc])
    before = store.query_one({"prediction_id": doc.prediction_id})
    candidate = Candidate(source="CdS.cif", structure=STRUCTURES["CdS"])
    done, _ = _already_predicted(store, [(candidate, {"structure_key": doc.structure_key})], "v1")
    assert done == {id(candidate): doc.prediction_id}
    after = store.query_one({"prediction_id": doc.prediction_id})
    assert after["last_updated"] == before["last_updated"]
