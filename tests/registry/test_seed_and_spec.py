"""seed_from_pretrained (the shipped checkpoints) and resolve_model_spec (settings → model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from registry_helpers import embedded_settings

from atomate2_gmt.model.checkpoint import file_sha256
from atomate2_gmt.pretrained import available, pretrained_path
from atomate2_gmt.registry import (
    SEED_REASON,
    ModelRegistry,
    NoPromotedModelError,
    resolve_model_spec,
    seed_from_pretrained,
)
from atomate2_gmt.settings import GMTSettings


def test_seed_registers_and_promotes_the_shipped_models(registry):
    docs = seed_from_pretrained(registry)
    assert [d.task for d in docs] == available()
    for doc in docs:
        info = json.loads(pretrained_path(doc.task).with_suffix(".json").read_text())
        assert doc.version == f"{doc.task}-v1"
        assert doc.promoted
        assert doc.promotion_history[0].reason == SEED_REASON
        assert doc.weights_sha256 == file_sha256(pretrained_path(doc.task))
        assert doc.metrics == info["overall"]
        assert doc.training_data_hash == info["training_data_hash"]
        assert doc.training_data_size == info["split_sizes"]["train"]
        assert registry.promoted(doc.task).model_id == doc.model_id
    again = seed_from_pretrained(registry)  # idempotent
    assert [d.model_id for d in again] == [d.model_id for d in docs]
    assert len(registry.list_versions()) == len(docs)
    assert all(len(d.promotion_history) == 1 for d in registry.list_versions())


def test_seed_keeps_an_existing_promotion(registry, make_checkpoint, monkeypatch):
    mine = registry.register(make_checkpoint("piezo", 0), "piezo", {"fnorm": 0.1})
    registry.promote(mine.model_id, "ours is better")
    seed_from_pretrained(registry, tasks=["piezo"])
    assert registry.promoted("piezo").model_id == mine.model_id
    assert [d.version for d in registry.list_versions("piezo")] == ["piezo-v1", "piezo-v2"]
    # a task without a shipped checkpoint is refused by name
    monkeypatch.setattr("atomate2_gmt.pretrained.available", lambda: ["dielectric", "piezo"])
    with pytest.raises(ValueError, match=r"no shipped pretrained checkpoint for \['elastic'\]"):
        seed_from_pretrained(registry, tasks=["elastic"])


def test_resolve_model_spec(tmp_path, recwarn):
    base = embedded_settings(tmp_path)
    assert resolve_model_spec("piezo", base) is None  # 'pretrained' → the shipped weights
    ck = pretrained_path("piezo")
    as_path = GMTSettings(**{**_kw(base), "MODELS": {"piezo": str(ck)}})
    assert resolve_model_spec("piezo", as_path) == ck
    missing = GMTSettings(**{**_kw(base), "MODELS": {"piezo": str(tmp_path / "nope.pt")}})
    with pytest.raises(FileNotFoundError, match=r"MODELS\['piezo'\] = .*nope.pt.*no checkpoint"):
        resolve_model_spec("piezo", missing)
    reg_settings = GMTSettings(**{**_kw(base), "MODELS": {"piezo": "registry"}})
    with pytest.raises(NoPromotedModelError, match="no promoted 'piezo' model"):
        resolve_model_spec("piezo", reg_settings)
    with ModelRegistry(settings=reg_settings) as reg:
        seed_from_pretrained(reg, tasks=["piezo"])
    path = resolve_model_spec("piezo", reg_settings)
    assert file_sha256(path) == file_sha256(ck)
    assert path.parent == tmp_path / "project" / "models" / "cache"
    assert resolve_model_spec("piezo", base, spec="registry") == path  # a maker's own spec
    assert resolve_model_spec("piezo", reg_settings, spec="pretrained") is None
    with pytest.raises(ValueError, match="unknown task 'foo'"):
        resolve_model_spec("foo", base)


@pytest.mark.slow
def test_registry_model_predicts(tmp_path, recwarn):
    """The resolved path is what atomate2_gmt.predict takes."""
    from pymatgen.core import Lattice, Structure

    from atomate2_gmt import predict

    settings = GMTSettings(**{**_kw(embedded_settings(tmp_path)), "MODELS": {"piezo": "registry"}})
    with ModelRegistry(settings=settings) as reg:
        seed_from_pretrained(reg, tasks=["piezo"])
    coords = [[0, 0, 0], [0.25, 0.25, 0.25]]
    zns = Structure.from_spacegroup("F-43m", Lattice.cubic(5.41), ["Zn", "S"], coords)
    ours = predict([zns], "piezo", model=resolve_model_spec("piezo", settings))
    shipped = predict([zns], "piezo", model=None)
    assert ours[0]["state"] == "successful"
    assert np.allclose(ours[0]["voigt"], shipped[0]["voigt"])
    assert abs(ours[0]["voigt"][0][3]) > 0  # e14 of zinc blende: a real, non-zero prediction


def _kw(settings: GMTSettings) -> dict:
    return {"PROJECT_DIR": settings.PROJECT_DIR, "CONFIG_FILE": settings.CONFIG_FILE}
