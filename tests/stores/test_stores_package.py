"""The stores package: the standalone SQL translator, the composed local blob store, the public
module path of its classes, and maggma's MontyStore through the write helpers."""

from __future__ import annotations

import logging
import pickle
import sqlite3
from pathlib import Path

import orjson
import pytest

import atomate2_gmt.stores as stores
from atomate2_gmt.stores import (
    EmbeddedStore,
    LocalBlobStore,
    StoreConnectionError,
    StoreWriteError,
    check_store,
    ensure_indexes,
    store_from_spec,
    upsert_predictions,
)
from atomate2_gmt.stores.sql import MongoSQLTranslator, UntranslatableError


def _table(rows: list[dict]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (rid INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO t (body) VALUES (?)", [(orjson.dumps(r).decode(),) for r in rows])
    return conn


def test_translator_works_on_any_json_column_without_a_store():
    rows = [
        {"name": "a", "n": 3, "tags": ["x", "y"]},
        {"name": "b", "n": 1, "tags": ["y"]},
        {"name": "c", "n": 2, "tags": []},
        {"name": "d"},
    ]
    conn = _table(rows)
    sql = MongoSQLTranslator(column="body", id_column="rid", array_paths={"tags"})

    def names(criteria: dict, sort: dict | None = None) -> list[str]:
        where, params = sql.where(criteria)
        order = sql.order_by(sort)
        query = f"SELECT json_extract(body, '$.name') FROM t WHERE {where} ORDER BY {order}"
        return [r[0] for r in conn.execute(query, params)]

    assert names({"n": {"$gte": 2}}, {"n": -1}) == ["a", "c"]
    assert names({"tags": "y"}, {"n": 1}) == ["b", "a"]  # any element of an array
    assert names({"tags": {"$nin": ["x"]}}) == ["b", "c", "d"]
    assert names({"n": {"$exists": False}}) == ["d"]
    assert names({"$or": [{"name": "d"}, {"n": 1}]}) == ["b", "d"]
    assert sql.order_by(None) == "rid"


def test_translator_keeps_user_text_out_of_the_sql():
    sql = MongoSQLTranslator()
    hostile = "x'); DROP TABLE t; --"
    where, params = sql.where({"name": hostile, "n": {"$in": [hostile, 2]}})
    assert hostile not in where
    assert params.count(hostile) == 2
    for criteria in ({"name": {"$regex": "^a"}}, {"a b": 1}, {"name": {"x": 1}}):
        with pytest.raises(UntranslatableError):
            sql.where(criteria)
    with pytest.raises(ValueError, match=r"\$or needs a non-empty list"):
        sql.where({"$or": []})
    with pytest.raises(ValueError, match="must be letters"):
        MongoSQLTranslator(column="doc; DROP TABLE t")


def test_public_classes_keep_the_package_path_in_specs_and_pickles(tmp_path):
    store = EmbeddedStore(str(tmp_path / "s.sqlite"), "preds", key="prediction_id")
    blobs = LocalBlobStore(str(tmp_path / "blobs"), timeout_s=5.0)
    for obj in (store, blobs):
        spec = obj.as_dict()
        assert spec["@module"] == "atomate2_gmt.stores"
        assert store_from_spec(spec) == obj
    assert pickle.loads(pickle.dumps(blobs)).index.timeout_s == 5.0
    err = pickle.loads(pickle.dumps(StoreWriteError("wrote 3 of 5")))
    assert type(err) is stores.StoreWriteError
    assert f"{type(err).__module__}.{type(err).__name__}" == "atomate2_gmt.stores.StoreWriteError"


def test_local_blob_store_answers_the_store_api_from_its_index(tmp_path):
    blobs = LocalBlobStore(str(tmp_path / "blobs"))
    assert blobs.path == str(tmp_path / "blobs" / "index.sqlite")
    check_store(blobs)  # connects, like an embedded store
    blobs.put_bytes("a", b"one", {"task": "piezo"})
    blobs.put_bytes("b", b"one", {"task": "elastic"})  # same content, one file
    assert ensure_indexes(blobs, [(("metadata.task", "sha256"), False)]) == 1
    assert any("metadata_task_sha256" in n for n in blobs.index.index_names())
    assert sorted(blobs.distinct("metadata.task")) == ["elastic", "piezo"]
    assert [d["blob_id"] for d in blobs.query(sort={"blob_id": -1})] == ["b", "a"]
    assert len(list(Path(blobs.directory).glob("*.bin"))) == 1
    blobs.remove_blob("a")
    assert blobs.get_bytes("b") == b"one"  # the shared file stays for the other blob
    blobs.close()
    with pytest.raises(ValueError, match="blob data must be bytes"):
        blobs.put_bytes("c", "text")  # type: ignore[arg-type]


def test_check_store_on_a_blob_folder_that_is_a_file(tmp_path):
    (tmp_path / "blobs").write_text("not a folder")
    with pytest.raises(StoreConnectionError, match="cannot open the embedded store blobs://"):
        check_store(LocalBlobStore(str(tmp_path / "blobs")))


def test_monty_store_upserts_without_duplicates(tmp_path, screening_docs, caplog):
    pytest.importorskip("montydb")
    from maggma.stores import MontyStore

    store = MontyStore("preds", database_path=str(tmp_path / "monty"), key="prediction_id")
    with caplog.at_level(logging.WARNING):
        assert upsert_predictions(store, screening_docs) == len(screening_docs)
    assert "has no indexes (montydb)" in caplog.text
    assert upsert_predictions(store, screening_docs) == len(screening_docs)
    assert store.count() == len(screening_docs)
    assert ensure_indexes(store, [(("prediction_id",), True)]) == 0
