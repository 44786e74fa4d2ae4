"""Stores against a real MongoDB wire-protocol server (SecantusDB, see tests/conftest.py)."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from maggma.stores import MongoStore
from pymatgen.core import Structure
from pymongo.collection import Collection

from atomate2_gmt.query import CandidateQuery, missing_values, query_candidates
from atomate2_gmt.schemas.prediction import GMTPredictionDoc
from atomate2_gmt.schemas.stored import expand_prediction_dict
from atomate2_gmt.settings import GMTSettings
from atomate2_gmt.stores import (
    EmbeddedStore,
    StoreConnectionError,
    StoreWriteError,
    candidate_store,
    check_store,
    registry_blob_store,
    upsert_predictions,
)
from atomate2_gmt.stores.gridfs import GridFSBlobStore

pytestmark = pytest.mark.slow


def _settings(uri: str, tmp_path: Path, timeout_s: float = 2.0) -> GMTSettings:
    return GMTSettings(
        MONGO_URI=uri,
        MONGO_DATABASE=f"gmt_{uuid.uuid4().hex[:8]}",
        STORE_TIMEOUT_S=timeout_s,
        PROJECT_DIR=tmp_path,
        CONFIG_FILE=str(tmp_path / "none.yaml"),
    )


@pytest.fixture
def settings(mongo_server, tmp_path, recwarn) -> GMTSettings:
    return _settings(mongo_server.uri, tmp_path)


def _many(doc: GMTPredictionDoc, n: int) -> list[dict]:
    """``n`` distinct store documents with the content of a real prediction document."""
    base = doc.to_store_dict()
    out = []
    for i in range(n):
        d = dict(base)
        d["structure_key"] = f"sk1-test{i:06d}"
        d["prediction_id"] = f"sk1-test{i:06d}:{d['model_version']}"
        d["e_ij_max"] = float(i)
        out.append(d)
    return out


def test_round_trip_indexes_and_idempotent_upsert(settings, screening_docs):
    store = candidate_store(settings)
    assert isinstance(store, MongoStore)
    check_store(store)
    assert upsert_predictions(store, screening_docs) == 6
    assert upsert_predictions(store, screening_docs) == 6  # again: replaced, not duplicated
    assert store.count() == 6
    zno = next(d for d in screening_docs if d.formula_pretty == "ZnO")
    back = store.query_one({"prediction_id": zno.prediction_id})
    assert "tensor" not in back["predictions"]["piezo"]  # stored compact
    rebuilt = GMTPredictionDoc.model_validate(expand_prediction_dict(back))  # read form
    compared = {"last_updated", "structure", "predictions"}
    assert rebuilt.model_dump(exclude=compared) == zno.model_dump(exclude=compared)
    assert Structure.from_dict(rebuilt.structure) == Structure.from_dict(zno.structure)
    for task, pred in zno.predictions.items():
        again = rebuilt.predictions[task]
        for form in ("tensor", "voigt", "voigt_ieee"):
            assert np.allclose(getattr(again, form), getattr(pred, form), rtol=1e-12, atol=1e-12)
        assert again.model == pred.model
    assert (
        abs(
            rebuilt.last_updated.replace(tzinfo=None) - zno.last_updated.replace(tzinfo=None)
        ).total_seconds()
        < 0.01
    )
    info = store._collection.index_information()
    assert info["prediction_id_1"]["unique"] is True
    for name in ("structure_key_1_model_version_1", "e_ij_max_1_prediction_id_1", "state_1",
                 "model_version_1", "symmetry.crystal_system_1",
                 "AU_1_prediction_id_1", "dielectric_total_eig_max_1_prediction_id_1"):  # fmt: skip
        assert name in info, name
    changed = zno.model_copy(update={"e_ij_max": 9.9})
    upsert_predictions(store, [changed])
    assert store.count() == 6
    assert store.query_one({"prediction_id": zno.prediction_id})["e_ij_max"] == 9.9


def test_queries_agree_with_the_embedded_store(settings, screening_docs, tmp_path):
    mongo = candidate_store(settings)
    embedded = EmbeddedStore(str(tmp_path / "e.sqlite"), "preds", key="prediction_id")
    for store in (mongo, embedded):
        upsert_predictions(store, screening_docs)
    cases = [
        {"prop": "piezo", "sort": "e_ij_max", "exclude_elements": "Pb"},
        {"prop": "elastic", "sort": "K_VRH", "stable_only": True},
        {"prop": "dielectric", "sort": "eig_max", "ascending": True, "crystal_system": "cubic"},
        {"prop": "piezo", "sort": None, "non_centrosymmetric": True, "include_elements": ["O"]},
        {"preset": "riebesell-dielectric"},  # the Φ ranking: none has a band gap here
        {"prop": "dielectric", "max_e_above_hull": 0.1},
    ]
    for case in cases:
        query = CandidateQuery.build(**case)
        a = query_candidates(mongo, query)
        b = query_candidates(embedded, query)
        assert missing_values(mongo, query) == missing_values(embedded, query)
        assert [r["prediction_id"] for r in a] == [r["prediction_id"] for r in b], case
        assert a == b


def test_gridfs_blob_round_trip(settings):
    blobs = registry_blob_store(settings)
    assert isinstance(blobs, GridFSBlobStore)
    blobs.connect()
    weights = bytes(range(256)) * 12_000  # ~3 MB: several GridFS chunks
    blobs.put_bytes("piezo-v1", weights, {"task": "piezo"})
    assert blobs.get_bytes("piezo-v1") == weights
    blobs.put_bytes("piezo-v1", b"retrained")
    assert blobs.get_bytes("piezo-v1") == b"retrained"
    assert blobs._files_collection.count_documents({"metadata.blob_id": "piezo-v1"}) == 1
    with pytest.raises(KeyError, match="no blob 'elastic-v9'"):
        blobs.get_bytes("elastic-v9")
    file_id = blobs._files_collection.find_one({"metadata.blob_id": "piezo-v1"})["_id"]
    blobs._chunks_collection.update_one(
        {"files_id": file_id, "n": 0}, {"$set": {"data": b"retrainex"}}
    )
    with pytest.raises(ValueError, match="does not match its sha256"):
        blobs.get_bytes("piezo-v1")
    blobs.remove_blob("piezo-v1")
    assert blobs._files_collection.count_documents({}) == 0


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_server_lost_mid_upsert_then_rerun_completes(
    how, mongo_server_factory, tmp_path, screening_docs, monkeypatch, recwarn
):
    server = mongo_server_factory()
    settings = _settings(server.uri, tmp_path, timeout_s=1.0)
    docs = _many(screening_docs[0], 300)
    store = candidate_store(settings)
    original = Collection.insert_many
    calls = {"n": 0}

    def write_then_lose_the_server(self, documents, *args, **kwargs):
        result = original(self, documents, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            server.stop() if how == "stop" else server.kill()
        return result

    monkeypatch.setattr(Collection, "insert_many", write_then_lose_the_server)
    start = time.monotonic()
    with pytest.raises(StoreWriteError, match=r"wrote 100 of 300 documents") as err:
        upsert_predictions(store, docs, batch_size=100)
    assert time.monotonic() - start < 15
    assert "re-run the same call" in str(err.value)
    assert f"127.0.0.1:{server.port}" in str(err.value)
    monkeypatch.setattr(Collection, "insert_many", original)

    server.start()
    fresh = candidate_store(settings)  # as a re-run in a new process would
    check_store(fresh)
    assert fresh.count() <= 100  # what survived the crash, never more
    assert upsert_predictions(fresh, docs, batch_size=100) == 300
    assert fresh.count() == 300
    assert len(fresh.distinct("prediction_id")) == 300
    assert fresh.count({"e_ij_max": {"$lt": 100}}) == 100  # the first batch, once each


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_fails_fast_without_the_password(tmp_path, screening_docs, recwarn):
    port = _closed_port()
    settings = _settings(f"mongodb://alice:Sup3rS3cret@127.0.0.1:{port}/", tmp_path, timeout_s=1.0)
    store = candidate_store(settings)
    start = time.monotonic()
    with pytest.raises(StoreConnectionError) as err:
        check_store(store, timeout_s=1.0)
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message
    assert "Sup3rS3cret" not in message
    assert "alice:***@" in message
    with pytest.raises(StoreWriteError, match="wrote 0 of 6") as err:
        upsert_predictions(store, screening_docs)
    assert "Sup3rS3cret" not in str(err.value)
