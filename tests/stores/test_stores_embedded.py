"""The embedded (SQLite) store: persistence, MongoDB query semantics, indexes, atomicity."""

from __future__ import annotations

import random
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from maggma.stores import MemoryStore

from atomate2_gmt.stores import (
    EmbeddedStore,
    LocalBlobStore,
    StoreConnectionError,
    check_store,
)


def _docs(n: int = 120, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    systems = ["Cubic", "Hexagonal", "Tetragonal", None]
    docs = []
    for i in range(n):
        doc = {
            "pid": f"p{i:03d}",
            "value": rng.choice([rng.uniform(-5, 5), rng.randint(-3, 3)]),
            "label": rng.choice(["a", "b", "c"]),
            "elements": sorted(rng.sample(["Zn", "O", "Pb", "Cd", "S", "Ti"], rng.randint(1, 3))),
            "flag": rng.choice([True, False]),
            "symmetry": {"crystal_system": rng.choice(systems), "number": rng.randint(1, 230)},
            "last_updated": datetime(2024, 1, 1 + i % 28, 12, i % 60),
        }
        if i % 7 == 0:
            del doc["value"]
        if i % 11 == 0:
            doc["value"] = None
        docs.append(doc)
    return docs


QUERIES: list[dict] = [
    {},
    {"label": "a"},
    {"value": {"$gt": 1.5}},
    {"value": {"$gte": -1, "$lt": 2}},
    {"value": None},
    {"value": {"$ne": None}},
    {"value": {"$exists": False}},
    {"value": {"$in": [1, 2, 3]}},
    {"value": {"$nin": [0, 1, None]}},
    {"label": {"$ne": "b"}},
    {"elements": "Pb"},
    {"elements": {"$nin": ["Pb", "Cd"]}},
    {"elements": {"$in": ["S", "Ti"]}},
    {"elements": {"$all": ["Zn", "O"]}},
    {"elements": {"$ne": "O"}},
    {"flag": True},
    {"flag": {"$ne": False}},
    {"symmetry.crystal_system": "Hexagonal"},
    {"symmetry.crystal_system": None},
    {"symmetry.number": {"$lte": 100}, "label": {"$in": ["a", "c"]}},
    {"$or": [{"label": "a"}, {"value": {"$lt": -2}}]},
    {"$and": [{"flag": True}, {"elements": "Zn"}]},
    {"$nor": [{"label": "a"}, {"flag": True}]},
    {"last_updated": {"$gte": datetime(2024, 1, 20)}},
    {"pid": {"$regex": "^p01"}},  # not translated: answered by the Python fallback
]


@pytest.fixture
def filled(tmp_path: Path) -> tuple[EmbeddedStore, MemoryStore]:
    """The same documents in an EmbeddedStore and in maggma's MemoryStore (mongomock)."""
    docs = _docs()
    emb = EmbeddedStore(str(tmp_path / "s.sqlite"), "docs", key="pid")
    mem = MemoryStore("docs", key="pid")
    emb.connect()
    mem.connect()
    emb.update([dict(d) for d in docs])
    mem.update([dict(d) for d in docs])
    return emb, mem


@pytest.mark.parametrize("criteria", QUERIES, ids=[str(q) for q in QUERIES])
def test_queries_match_mongodb_semantics(filled, criteria):
    emb, mem = filled
    got = sorted(d["pid"] for d in emb.query(criteria, properties=["pid"]))
    expected = sorted(d["pid"] for d in mem.query(criteria, properties=["pid"]))
    assert got == expected
    assert emb.count(criteria) == len(expected)


@pytest.mark.parametrize("direction", [1, -1])
def test_sort_skip_limit_match_mongodb(filled, direction):
    emb, mem = filled
    crit = {"value": {"$ne": None}}
    sort = {"value": direction, "pid": 1}
    got = [d["pid"] for d in emb.query(crit, sort=sort, skip=3, limit=10)]
    expected = [d["pid"] for d in mem.query(crit, sort=sort, skip=3, limit=10)]
    assert got == expected
    values = [d["value"] for d in emb.query(crit, properties=["value"], sort=sort)]
    assert values == sorted(values, reverse=direction < 0)


def test_projection_distinct_groupby(filled):
    emb, mem = filled
    doc = next(emb.query({"pid": "p001"}, properties=["pid", "symmetry.number"]))
    assert set(doc) == {"pid", "symmetry"}
    assert set(doc["symmetry"]) == {"number"}
    excluded = next(emb.query({"pid": "p001"}, properties={"elements": 0, "symmetry": 0}))
    assert "elements" not in excluded
    assert "symmetry" not in excluded
    assert excluded["label"]
    assert sorted(emb.distinct("label")) == sorted(mem.distinct("label"))
    assert sorted(emb.distinct("elements")) == sorted(mem.distinct("elements"))
    groups = {g["label"]: len(items) for g, items in emb.groupby("label")}
    assert groups == {g["label"]: len(items) for g, items in mem.groupby("label")}


def test_persists_across_connections_and_upserts_in_place(tmp_path):
    path = str(tmp_path / "project" / "stores.sqlite")
    store = EmbeddedStore(path, "docs", key="pid")
    store.connect()
    store.update([{"pid": "a", "x": 1}, {"pid": "b", "x": 2}])
    store.update({"pid": "a", "x": 10})  # upsert replaces, never duplicates
    store.close()
    again = EmbeddedStore(path, "docs", key="pid")
    again.connect()
    assert again.count() == 2
    assert again.query_one({"pid": "a"})["x"] == 10
    other = EmbeddedStore(path, "other", key="pid")  # another collection in the same file
    other.connect()
    assert other.count() == 0


def test_two_writers_do_not_clobber_each_other(tmp_path):
    path = str(tmp_path / "s.sqlite")
    one, two = EmbeddedStore(path, "docs", key="pid"), EmbeddedStore(path, "docs", key="pid")
    one.connect()
    two.connect()
    one.update([{"pid": f"a{i}"} for i in range(50)])
    two.update([{"pid": f"b{i}"} for i in range(50)])
    one.update([{"pid": f"a{i}", "again": True} for i in range(50)])
    assert one.count() == two.count() == 100
    assert two.count({"again": True}) == 50


def test_failed_update_writes_nothing(tmp_path):
    store = EmbeddedStore(str(tmp_path / "s.sqlite"), "docs", key="pid")
    store.connect()
    store.ensure_index("pid", unique=True)
    store.update({"pid": "keep", "x": 1})
    with pytest.raises(ValueError, match="lacks the key"):
        store.update([{"pid": "new1"}, {"x": 2}])
    with pytest.raises(ValueError, match="document 1 cannot be stored as JSON"):
        store.update([{"pid": "new2"}, {"pid": "bad", "obj": object()}])
    assert store.ensure_index("x", unique=True)
    with pytest.raises(sqlite3.IntegrityError):  # second row breaks the unique index mid-write
        store.update([{"pid": "new3", "x": 5}, {"pid": "new4", "x": 5}])
    assert sorted(store.distinct("pid")) == ["keep"]


def test_indexes_are_used_and_unique_enforced(tmp_path):
    store = EmbeddedStore(str(tmp_path / "s.sqlite"), "docs", key="pid")
    store.connect()
    store.update([{"pid": f"p{i}", "score": i % 5} for i in range(20)])
    assert store.ensure_index("score")
    assert store.ensure_compound_index(["pid", "score"], unique=True)
    assert not store.ensure_index("score", unique=True)  # duplicates: cannot be unique
    names = store.index_names()
    assert any("_score_n_" in n for n in names)
    assert any("pid_score_u" in n for n in names)
    where, params = store._where({"score": 3})
    plan = store._collection.execute(
        f"EXPLAIN QUERY PLAN SELECT id FROM docs WHERE {where}", params
    ).fetchall()
    assert "USING INDEX" in " ".join(str(r) for r in plan)


def test_last_updated_round_trips_as_datetime(tmp_path):
    store = EmbeddedStore(str(tmp_path / "s.sqlite"), "docs", key="pid")
    store.connect()
    stamps = [datetime(2024, 5, 1, 8), datetime(2024, 6, 2, 9, 30, 15, 250)]
    store.update([{"pid": str(i), "last_updated": t} for i, t in enumerate(stamps)])
    assert store.last_updated == stamps[1]
    assert store.query_one({"pid": "0"})["last_updated"] == stamps[0]


def test_store_serialises_and_rebuilds(tmp_path):
    store = EmbeddedStore(str(tmp_path / "s.sqlite"), "preds", key="prediction_id")
    rebuilt = EmbeddedStore.from_dict(store.as_dict())
    assert rebuilt == store
    assert rebuilt.key == "prediction_id"
    with pytest.raises(ValueError, match="collection_name"):
        EmbeddedStore(str(tmp_path / "s.sqlite"), "bad name; drop")


def test_check_store_reports_a_corrupt_file(tmp_path):
    bad = tmp_path / "broken.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreConnectionError, match=r"broken\.sqlite"):
        check_store(EmbeddedStore(str(bad), "docs"))
    good = EmbeddedStore(str(tmp_path / "new" / "ok.sqlite"), "docs")
    check_store(good)
    assert Path(good.path).exists()


def test_local_blob_store_round_trip_and_corruption(tmp_path):
    blobs = LocalBlobStore(str(tmp_path / "blobs"))
    blobs.connect()
    payload = bytes(range(256)) * 4000
    digest = blobs.put_bytes("piezo-v1", payload, {"task": "piezo"})
    assert blobs.get_bytes("piezo-v1") == payload
    assert blobs.query_one({"blob_id": "piezo-v1"})["metadata"] == {"task": "piezo"}
    blobs.put_bytes("piezo-v1", b"v2 weights")  # replaces the old version
    assert blobs.get_bytes("piezo-v1") == b"v2 weights"
    assert blobs.count() == 1
    with pytest.raises(KeyError, match="no blob 'missing'"):
        blobs.get_bytes("missing")
    file = tmp_path / "blobs" / blobs.query_one({"blob_id": "piezo-v1"})["file"]
    file.write_bytes(b"tampered")
    with pytest.raises(ValueError, match="does not match its sha256"):
        blobs.get_bytes("piezo-v1")
    blobs.remove_blob("piezo-v1")
    assert blobs.count() == 0
    assert not file.exists()
    assert digest != blobs.put_bytes("other", b"x")


def test_sqlite_error_is_not_swallowed(tmp_path):
    store = EmbeddedStore(str(tmp_path / "s.sqlite"), "docs", key="pid")
    store.connect()
    store._collection.execute("DROP TABLE docs")
    with pytest.raises(sqlite3.OperationalError):
        store.update({"pid": "x"})


def test_a_corrupt_sqlite_file_is_named_once_with_the_reason(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from atomate2_gmt.cli.app import app

    project = tmp_path / "proj"
    (project / "stores").mkdir(parents=True)
    path = project / "stores" / "gmt_stores.sqlite"
    path.write_bytes(random.Random(5).randbytes(8192))
    store = EmbeddedStore(str(path), "gmt_predictions", key="prediction_id")
    with pytest.raises(StoreConnectionError) as info:
        check_store(store)
    message = str(info.value)
    assert message == (
        f"cannot open the embedded store sqlite://{path}/gmt_predictions: file is not a "
        "database (the file is damaged or is not an SQLite database)"
    )
    for name in ("ATOMATE2_GMT_MONGO_URI", "ATOMATE2_GMT_CANDIDATE_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(project))
    result = CliRunner().invoke(app, ["query", "-p", "piezo"])
    assert result.exit_code == 1
    assert result.output.count("cannot open the embedded store") == 1
    assert f"Error: {message}" in result.output
