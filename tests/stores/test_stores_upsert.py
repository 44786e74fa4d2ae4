"""upsert_predictions: idempotent bulk writes, loud partial failures, re-runs that complete."""

from __future__ import annotations

import sqlite3

import pytest
from maggma.stores import MemoryStore

from atomate2_gmt.stores import EmbeddedStore, StoreWriteError, upsert_predictions


def _store(tmp_path) -> EmbeddedStore:
    return EmbeddedStore(str(tmp_path / "p.sqlite"), "preds", key="prediction_id")


def _variants(doc, n):
    base = doc.to_store_dict()
    out = []
    for i in range(n):
        d = dict(base)
        d["prediction_id"] = f"k{i:04d}:{d['model_version']}"
        d["structure_key"] = f"k{i:04d}"
        out.append(d)
    return out


def test_idempotent_and_last_duplicate_wins(tmp_path, screening_docs):
    store = _store(tmp_path)
    assert upsert_predictions(store, screening_docs) == 6
    assert upsert_predictions(store, screening_docs) == 6
    assert store.count() == 6
    zno = next(d for d in screening_docs if d.formula_pretty == "ZnO")
    first = zno.model_copy(update={"e_ij_max": 1.5})
    second = zno.model_copy(update={"e_ij_max": 2.5})
    assert upsert_predictions(store, [first, second]) == 1  # same key twice: one write
    assert store.query_one({"prediction_id": zno.prediction_id})["e_ij_max"] == 2.5
    assert store.count() == 6
    assert any("prediction_id" in name and "_u_" in name for name in store.index_names())


def test_indexes_created_on_a_mongo_like_store(screening_docs):
    store = MemoryStore("preds", key="prediction_id")
    upsert_predictions(store, screening_docs)
    info = store._collection.index_information()
    assert info["prediction_id_1"]["unique"] is True
    assert "structure_key_1_model_version_1" in info
    assert "e_ij_max_1_prediction_id_1" in info


def test_failure_part_way_is_loud_and_a_rerun_completes(tmp_path, screening_docs, monkeypatch):
    store = _store(tmp_path)
    docs = _variants(screening_docs[0], 250)
    real_update = EmbeddedStore.update
    calls = {"n": 0}

    def flaky_update(self, batch, key=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise sqlite3.OperationalError("disk I/O error")
        return real_update(self, batch, key=key)

    monkeypatch.setattr(EmbeddedStore, "update", flaky_update)
    with pytest.raises(StoreWriteError, match=r"wrote 200 of 250 documents .* disk I/O error"):
        upsert_predictions(store, docs, batch_size=100)
    assert store.count() == 200
    monkeypatch.setattr(EmbeddedStore, "update", real_update)
    assert upsert_predictions(store, docs, batch_size=100) == 250
    assert store.count() == 250
    assert len(store.distinct("prediction_id")) == 250


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        ([{"structure_key": "x"}], "document 0 has no 'prediction_id'"),
        ([object()], "document 0 is a object"),
    ],
)
def test_bad_documents_are_value_errors(tmp_path, docs, message):
    with pytest.raises(ValueError, match=message):
        upsert_predictions(_store(tmp_path), docs)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        upsert_predictions(_store(tmp_path), [], batch_size=0)


def test_nothing_to_write(tmp_path):
    assert upsert_predictions(_store(tmp_path), []) == 0


def test_ensure_indexes_for_other_stores_and_impossible_ones(tmp_path):
    from maggma.core import StoreError

    from atomate2_gmt.schemas.training import TRAINING_DOC_INDEXES
    from atomate2_gmt.stores import REGISTRY_INDEXES, ensure_indexes

    training = EmbeddedStore(str(tmp_path / "t.sqlite"), "gmt_training", key="record_id")
    training.connect()
    assert ensure_indexes(training, TRAINING_DOC_INDEXES) == len(TRAINING_DOC_INDEXES)
    training.update([{"record_id": "r1", "task": "piezo"}, {"record_id": "r2", "task": "piezo"}])
    with pytest.raises(sqlite3.IntegrityError):  # unique record_id: no second "r1"
        training.update({"record_id": "r1", "other": 2}, key="other")
    assert training.count() == 2
    registry = MemoryStore("gmt_models", key="model_id")
    registry.connect()
    assert ensure_indexes(registry, REGISTRY_INDEXES) == len(REGISTRY_INDEXES)
    assert registry._collection.index_information()["model_id_1"]["unique"] is True
    with pytest.raises(StoreError, match=r"cannot create index \['task'\] \(unique=True\)"):
        ensure_indexes(training, [(("task",), True)])
