"""GMTSettings (env, YAML, masking) and the stores built from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from maggma.stores import MemoryStore, MongoStore
from pymatgen.core import Lattice

from atomate2_gmt.data.records import TASKS
from atomate2_gmt.settings import GMTSettings, mask_secrets, mask_uri
from atomate2_gmt.stores import (
    EmbeddedStore,
    LocalBlobStore,
    candidate_store,
    describe_store,
    embedded_store_path,
    registry_blob_store,
    registry_store,
    store_from_spec,
    training_store,
)
from atomate2_gmt.stores.gridfs import GridFSBlobStore


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No user config or ATOMATE2_GMT_* variables leak into these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("ATOMATE2_GMT_"):
            monkeypatch.delenv(name)
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    monkeypatch.setenv("ATOMATE2_GMT_CONFIG_FILE", str(empty))


def test_defaults(recwarn):
    s = GMTSettings()
    assert dict.fromkeys(TASKS, "pretrained") == s.MODELS
    assert (s.DEVICE, s.BATCH_SIZE, s.SYMPREC) == ("auto", 64, 0.01)
    assert Path("gmt_project") == s.PROJECT_DIR
    assert s.MONGO_URI is None


def test_env_yaml_and_kwargs_precedence(monkeypatch, tmp_path):
    config = tmp_path / "gmt.yaml"
    config.write_text(
        "DEVICE: cuda:1\nBATCH_SIZE: 16\nMODELS:\n  piezo: /models/piezo.pt\n"
        f"PROJECT_DIR: {tmp_path / 'from_yaml'}\n"
    )
    monkeypatch.setenv("ATOMATE2_GMT_CONFIG_FILE", str(config))
    monkeypatch.setenv("ATOMATE2_GMT_BATCH_SIZE", "32")
    s = GMTSettings()
    assert s.DEVICE == "cuda:1"  # from YAML
    assert s.BATCH_SIZE == 32  # env beats YAML
    assert s.MODELS["piezo"] == "/models/piezo.pt"
    assert s.MODELS["elastic"] == "pretrained"
    assert tmp_path / "from_yaml" == s.PROJECT_DIR
    assert GMTSettings(BATCH_SIZE=8).BATCH_SIZE == 8  # keyword beats env
    monkeypatch.setenv("ATOMATE2_GMT_MODELS", '{"elastic": "registry"}')
    assert GMTSettings().model_for("elastic") == "registry"


def test_missing_config_file_warns(monkeypatch, tmp_path):
    monkeypatch.setenv("ATOMATE2_GMT_CONFIG_FILE", str(tmp_path / "nope.yaml"))
    with pytest.warns(UserWarning, match="does not exist"):
        GMTSettings()


def test_unparsable_config_file_is_a_clear_error(monkeypatch, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("- just\n- a list\n")
    monkeypatch.setenv("ATOMATE2_GMT_CONFIG_FILE", str(config))
    with pytest.raises(ValueError, match="must hold a mapping"):
        GMTSettings()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"DEVICE": "gpu"}, "DEVICE must be"),
        ({"BATCH_SIZE": 0}, "greater than 0"),
        ({"SYMPREC": -1}, "greater than 0"),
        ({"MODELS": {"bandgap": "pretrained"}}, "unknown tasks"),
        ({"MODELS": {"piezo": ""}}, "must be 'pretrained', 'registry' or a checkpoint path"),
        ({"CANDIDATE_COLLECTION": "x y"}, "letters, digits and underscores"),
        ({"CANDIDATE_STORE": {"host": "h"}}, "'@module' and '@class'"),
        ({"UNKNOWN_SETTING": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_raise_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GMTSettings(**kwargs)


def test_model_for_unknown_task():
    with pytest.raises(ValueError, match="unknown task 'bandgap'"):
        GMTSettings().model_for("bandgap")


def test_credentials_are_masked_everywhere():
    s = GMTSettings(
        MONGO_URI="mongodb://alice:s3cr3t-pw@db.example.org:27017/gmt",
        CANDIDATE_STORE={
            "@module": "maggma.stores.mongolike",
            "@class": "MongoStore",
            "database": "gmt",
            "collection_name": "preds",
            "host": "db.example.org",
            "username": "bob",
            "password": "hunter2-pw",
        },
    )
    for text in (repr(s), str(s), s.model_dump_json()):
        assert "s3cr3t-pw" not in text
        assert "hunter2-pw" not in text
    assert "db.example.org" in repr(s)
    assert s.mongo_uri == "mongodb://alice:s3cr3t-pw@db.example.org:27017/gmt"
    assert mask_uri("mongodb+srv://u:p@w@h/db") == "mongodb+srv://u:***@h/db"
    assert mask_secrets({"nested": [{"password": "x", "uri": "mongodb://a:b@h"}]}) == {
        "nested": [{"password": "***", "uri": "mongodb://a:***@h"}]
    }


def test_default_stores_are_embedded_in_the_project(tmp_path):
    s = GMTSettings(PROJECT_DIR=tmp_path / "proj")
    stores = [candidate_store(s), training_store(s), registry_store(s)]
    assert all(isinstance(st, EmbeddedStore) for st in stores)
    assert {st.path for st in stores} == {str(embedded_store_path(s))}
    assert [st.key for st in stores] == ["prediction_id", "record_id", "model_id"]
    assert [st.collection_name for st in stores] == [
        "gmt_predictions",
        "gmt_training",
        "gmt_models",
    ]
    blobs = registry_blob_store(s)
    assert isinstance(blobs, LocalBlobStore)
    assert Path(blobs.directory) == tmp_path / "proj" / "stores" / "gmt_model_blobs"
    assert not (tmp_path / "proj").exists()  # building a store does not touch the disk


def test_mongo_uri_gives_mongo_stores_with_masked_names():
    s = GMTSettings(
        MONGO_URI="mongodb://alice:pw-123@db.example.org:27017/",
        MONGO_DATABASE="screen",
        STORE_TIMEOUT_S=2.0,
    )
    store = candidate_store(s)
    assert isinstance(store, MongoStore)
    assert store.database == "screen"
    assert store.collection_name == "gmt_predictions"
    assert store.key == "prediction_id"
    assert store.mongoclient_kwargs["serverSelectionTimeoutMS"] == 2000
    text = describe_store(store)
    assert "db.example.org:27017" in text
    assert "pw-123" not in text
    blobs = registry_blob_store(s)
    assert isinstance(blobs, GridFSBlobStore)
    assert blobs.key == "blob_id"


def test_store_specs_override(tmp_path):
    spec = MemoryStore("custom", key="prediction_id").as_dict()
    s = GMTSettings(CANDIDATE_STORE=spec, PROJECT_DIR=tmp_path)
    store = candidate_store(s)
    assert isinstance(store, MemoryStore)
    assert store.collection_name == "custom"
    assert isinstance(training_store(s), EmbeddedStore)
    emb = EmbeddedStore(str(tmp_path / "x.sqlite"), "c", key="k")
    assert store_from_spec(emb.as_dict()) == emb
    with pytest.raises(ValueError, match="does not describe a maggma Store"):
        store_from_spec(Lattice.cubic(3.0).as_dict())
    with pytest.raises(ValueError, match=r"cannot build a store from the spec maggma\.stores"):
        store_from_spec({"@module": "maggma.stores", "@class": "NoSuchStore"})
