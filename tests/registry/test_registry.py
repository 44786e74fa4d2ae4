"""ModelRegistry on the embedded store and on a real MongoDB server (GridFS weights)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from atomate2_gmt.model.checkpoint import file_sha256, load_checkpoint
from atomate2_gmt.registry import (
    MODEL_REGISTRY_INDEXES,
    CreatedBy,
    ModelRegistry,
    NoPromotedModelError,
    PromotionRefusedError,
    WeightsIntegrityError,
)
from atomate2_gmt.stores import LocalBlobStore
from atomate2_gmt.stores.gridfs import GridFSBlobStore


def _blob_count(registry: ModelRegistry, model_id: str) -> int:
    blobs = registry.blob_store
    if isinstance(blobs, LocalBlobStore):
        return blobs.count({"metadata.model_id": model_id})
    assert isinstance(blobs, GridFSBlobStore)
    return blobs._files_collection.count_documents({"metadata.metadata.model_id": model_id})


def test_register_records_everything(registry, make_checkpoint):
    path = make_checkpoint("piezo", 0)
    who = CreatedBy(user="alice", host="node7", job_uuid="1234", command="train --task piezo")
    doc = registry.register(
        path, "piezo", metrics={"fnorm": 1.5, "ewt25": 0.2}, created_by=who, metrics_set="test-A"
    )
    assert doc.version == "piezo-v1"
    assert doc.version_number == 1
    assert doc.model_id == f"gmtnet-piezo-{file_sha256(path)[:16]}"
    assert doc.weights_sha256 == file_sha256(path)
    assert doc.weights_size == path.stat().st_size
    assert doc.training_data_hash == "hash-0"  # from the checkpoint metadata
    assert doc.training_data_size == 10
    assert doc.config["task"] == "piezo"
    assert doc.config["node_dim"] == 16
    assert doc.created_by.user == "alice"
    assert doc.created_by.job_uuid == "1234"
    assert doc.promoted is False
    assert doc.promotion_history == []
    again = registry.get(doc.model_id)
    assert again.model_dump(exclude={"created_at", "last_updated"}) == doc.model_dump(
        exclude={"created_at", "last_updated"}
    )
    assert registry.get("piezo-v1").model_id == doc.model_id  # by version name too


def test_versions_are_monotonic_per_task_and_parent_checked(registry, make_checkpoint):
    v1 = registry.register(make_checkpoint("piezo", 0), "piezo", {"fnorm": 2.0})
    v2 = registry.register(make_checkpoint("piezo", 1), "piezo", {"fnorm": 1.0}, parent="piezo-v1")
    d1 = registry.register(make_checkpoint("dielectric", 0), "dielectric", {"fnorm": 3.0})
    assert (v1.version, v2.version, d1.version) == ("piezo-v1", "piezo-v2", "dielectric-v1")
    assert v2.parent == v1.model_id  # a version name is stored as the parent's model_id
    assert [d.version for d in registry.list_versions("piezo")] == ["piezo-v1", "piezo-v2"]
    assert len(registry.list_versions()) == 3
    assert registry.latest("piezo").version == "piezo-v2"
    with pytest.raises(ValueError, match="parent 'dielectric-v1' is a 'dielectric' model"):
        registry.register(make_checkpoint("piezo", 2), "piezo", parent="dielectric-v1")
    with pytest.raises(KeyError, match="no model 'piezo-v9'"):
        registry.register(make_checkpoint("piezo", 2), "piezo", parent="piezo-v9")


def test_register_refuses_wrong_task_and_non_checkpoints(registry, make_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="checkpoint is for task 'piezo', not 'dielectric'"):
        registry.register(make_checkpoint("piezo", 0), "dielectric")
    with pytest.raises(ValueError, match="unknown task 'magnetism'"):
        registry.register(make_checkpoint("piezo", 0), "magnetism")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError) as info:  # not a checkpoint: never called malicious
        registry.register(junk, "piezo")
    assert str(info.value) == (
        f"{junk}: corrupt or truncated checkpoint, or not a checkpoint at all (not a torch.save "
        "zip archive)"
    )
    evil = tmp_path / "evil.pt"
    torch.save({"format": "atomate2-gmt-checkpoint", "run": print}, evil)
    with pytest.raises(ValueError, match=r"evil.pt: refused: the checkpoint asks for objects"):
        registry.register(evil, "piezo")
    assert registry.list_versions() == []


def test_reregister_is_idempotent(registry, make_checkpoint):
    path = make_checkpoint("piezo", 0)
    first = registry.register(path, "piezo", {"fnorm": 1.0})
    second = registry.register(path, "piezo", {"fnorm": 99.0})
    assert second.model_id == first.model_id
    assert second.metrics == {"fnorm": 1.0}  # the registered version is not rewritten
    assert len(registry.list_versions("piezo")) == 1
    assert _blob_count(registry, first.model_id) == 1


def test_concurrent_registration(settings, make_checkpoint):
    """Same weights from 4 workers: one document, one blob. Different weights: v1..v4."""
    same = make_checkpoint("piezo", 0)
    others = [make_checkpoint("dielectric", s) for s in range(4)]

    def register(path: Path, task: str) -> str:
        reg = ModelRegistry(settings=settings)  # own connection, as a separate job would have
        try:
            return reg.register(path, task, {"fnorm": 1.0}).model_id
        finally:
            reg.close()

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda _: register(same, "piezo"), range(4)))
        other_ids = list(pool.map(lambda p: register(p, "dielectric"), others))
    assert len(set(ids)) == 1
    with ModelRegistry(settings=settings) as reg:
        assert [d.version for d in reg.list_versions("piezo")] == ["piezo-v1"]
        assert _blob_count(reg, ids[0]) == 1  # losers removed their blobs
        versions = reg.list_versions("dielectric")
        assert sorted(d.version_number for d in versions) == [1, 2, 3, 4]
        assert {d.model_id for d in versions} == set(other_ids)


def test_promote_policy_and_history(registry, make_checkpoint):
    v1 = registry.register(make_checkpoint("piezo", 0), "piezo", {"fnorm": 2.0}, metrics_set="A")
    v2 = registry.register(make_checkpoint("piezo", 1), "piezo", {"fnorm": 1.0}, metrics_set="A")
    v3 = registry.register(make_checkpoint("piezo", 2), "piezo", {"fnorm": 3.0}, metrics_set="A")
    v4 = registry.register(make_checkpoint("piezo", 3), "piezo", {"fnorm": 0.5}, metrics_set="B")
    assert registry.promoted("piezo") is None
    with pytest.raises(ValueError, match="needs a reason"):
        registry.promote(v1.model_id, "  ")
    registry.promote(v1.model_id, "baseline", by="alice")
    registry.promote("piezo-v2", "lower Fnorm on test-A", compare_on="fnorm", by="bob")
    assert registry.promoted("piezo").model_id == v2.model_id
    old = registry.get(v1.model_id)
    assert old.promoted is False
    assert [e.action for e in old.promotion_history] == ["promote", "demote"]
    assert old.promotion_history[1].reason == (
        f"superseded by piezo-v2 ({v2.model_id}): lower Fnorm on test-A"
    )
    assert old.promotion_history[1].superseded == v2.model_id
    new = registry.get(v2.model_id)
    assert new.promotion_history[-1].reason == "lower Fnorm on test-A"
    assert new.promotion_history[-1].by == "bob"
    assert new.promotion_history[-1].superseded == v1.model_id
    # worse metric: refused with the numbers, nothing changes
    with pytest.raises(PromotionRefusedError, match=r"fnorm = 3, worse than the promoted piezo-v2"):
        registry.promote(v3.model_id, "try", compare_on="fnorm")
    # different held-out sets cannot be compared
    with pytest.raises(PromotionRefusedError, match="different held-out sets"):
        registry.promote(v4.model_id, "try", compare_on="fnorm")
    assert registry.promoted("piezo").model_id == v2.model_id
    registry.promote(v3.model_id, "roll forward for a test", compare_on="fnorm", force=True)
    promoted = [d.version for d in registry.list_versions("piezo") if d.promoted]
    assert promoted == ["piezo-v3"]  # exactly one promoted per task
    again = registry.promote(v3.model_id, "again")  # no-op
    assert len(again.promotion_history) == 1
    demoted = registry.demote(v3.model_id, "regression found in production")
    assert demoted.promotion_history[-1].action == "demote"
    assert registry.promoted("piezo") is None


def test_fetch_weights_verified_cached_and_loadable(registry, make_checkpoint, tmp_path):
    path = make_checkpoint("piezo", 0)
    doc = registry.register(path, "piezo", {"fnorm": 1.0})
    dest = tmp_path / "dest"
    got = registry.fetch_weights(doc.model_id, dest)
    assert got == dest / f"{doc.weights_sha256}.pt"
    assert got.read_bytes() == path.read_bytes()
    _model, meta = load_checkpoint(got, task="piezo")
    assert meta["checkpoint_sha256"] == doc.weights_sha256
    mtime = got.stat().st_mtime_ns
    assert registry.fetch_weights(doc.model_id, dest).stat().st_mtime_ns == mtime  # cache hit
    got.write_bytes(b"edited on disk")  # a damaged cache file is replaced from the store
    assert file_sha256(registry.fetch_weights(doc.model_id, dest)) == doc.weights_sha256


def test_tampered_blob_is_refused(registry, make_checkpoint, tmp_path):
    doc = registry.register(make_checkpoint("piezo", 0), "piezo", {"fnorm": 1.0})
    registry.promote(doc.model_id, "only one")
    blobs = registry.blob_store
    if isinstance(blobs, LocalBlobStore):  # edit the weights file in the project folder
        record = blobs.query_one({"blob_id": doc.blob_id})
        file = Path(blobs.directory) / record["file"]
        data = bytearray(file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        file.write_bytes(bytes(data))
    else:  # edit a GridFS chunk in the database
        chunks = blobs._files_collection.database[f"{blobs.collection_name}.chunks"]
        chunk = chunks.find_one({}, sort=[("n", 1)])
        data = bytearray(chunk["data"])
        data[10] ^= 0xFF
        chunks.update_one({"_id": chunk["_id"]}, {"$set": {"data": bytes(data)}})
    dest = tmp_path / "dest"
    with pytest.raises(WeightsIntegrityError, match=r"refused the weights of piezo-v1 .*corrupt"):
        registry.fetch_weights(doc.model_id, dest)
    assert not list(dest.glob("*.pt")) if dest.exists() else True
    with pytest.raises(WeightsIntegrityError):
        registry.resolve("piezo")


def test_replaced_blob_is_refused(registry, make_checkpoint, tmp_path):
    """Someone overwrites the blob (with a consistent store-level hash): the registry refuses."""
    doc = registry.register(make_checkpoint("piezo", 0), "piezo", {"fnorm": 1.0})
    other = make_checkpoint("piezo", 5).read_bytes()
    registry.blob_store.put_bytes(doc.blob_id, other)
    with pytest.raises(
        WeightsIntegrityError, match=rf"has sha256 [0-9a-f]{{64}}, but {doc.weights_sha256}"
    ):
        registry.fetch_weights(doc.model_id, tmp_path / "dest")


def test_resolve(registry, make_checkpoint):
    with pytest.raises(NoPromotedModelError, match=r"no promoted 'piezo' model .*models seed"):
        registry.resolve("piezo")
    doc = registry.register(make_checkpoint("piezo", 0), "piezo", {"fnorm": 1.0})
    with pytest.raises(NoPromotedModelError, match=r"registered versions: piezo-v1; promote one"):
        registry.resolve("piezo")
    registry.promote(doc.model_id, "first")
    path, meta = registry.resolve("piezo")
    assert file_sha256(path) == doc.weights_sha256
    assert meta["model_id"] == doc.model_id
    assert meta["version"] == "piezo-v1"
    assert meta["metrics"] == {"fnorm": 1.0}


def test_every_key_field_is_indexed(registry):
    fields = {f for spec, _ in MODEL_REGISTRY_INDEXES for f in spec}
    assert {"model_id", "task", "version", "version_number", "promoted", "parent"} <= fields
    assert {"weights_sha256", "training_data_hash", "created_at", "blob_id"} <= fields
    store = registry.store
    if hasattr(store, "index_names"):
        names = store.index_names()
    else:
        names = list(store._collection.index_information())
    assert len(names) >= len(MODEL_REGISTRY_INDEXES)


def test_register_and_fetch_a_shipped_size_checkpoint(registry, tmp_path):
    """A 2.7 MB shipped checkpoint goes in and comes back byte for byte (its speed is measured
    by benchmarks, not here)."""
    from atomate2_gmt.model.checkpoint import file_sha256
    from atomate2_gmt.pretrained import pretrained_path

    path = pretrained_path("dielectric")
    doc = registry.register(path, "dielectric", {"fnorm": 3.3})
    fetched = registry.fetch_weights(doc.model_id, tmp_path / "dest")
    assert fetched.parent == tmp_path / "dest"
    assert file_sha256(fetched) == file_sha256(path)


def test_promotion_refuses_a_model_that_does_not_rotate_with_the_crystal(registry, tmp_path):
    """The invariant-Voigt baseline predicts the same numbers in every frame, so it is not
    equivariant: it can be registered, never promoted (no --force either)."""
    import torch
    from tests.tiny_model import TINY

    from atomate2_gmt.model.baselines import INVARIANT_ARCH
    from atomate2_gmt.model.checkpoint import save_checkpoint
    from atomate2_gmt.model.config import GMTNetConfig
    from atomate2_gmt.model.factory import build_model

    torch.manual_seed(0)
    model = build_model(GMTNetConfig(task="dielectric", **TINY), INVARIANT_ARCH)
    path = save_checkpoint(tmp_path / "invariant.pt", model)
    doc = registry.register(path, "dielectric", {"fnorm": 0.1})
    with pytest.raises(PromotionRefusedError, match="not rotation-equivariant: relative error"):
        registry.promote(doc.model_id, "looks great", force=True)
    assert registry.promoted("dielectric") is None
