"""Hostile checkpoints: each is refused with a clear reason before anything is built, allocated
or written, by ``load_checkpoint`` (what a load checks), ``model.validate.load_validated`` (and
the outputs), ``models register`` and ``promote`` alike."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from atomate2_gmt.model.checkpoint import load_checkpoint, read_checkpoint
from atomate2_gmt.model.validate import load_validated
from atomate2_gmt.registry import ModelRegistry
from atomate2_gmt.stores import LocalBlobStore


def _rewrite(source: Path, dest: Path, edit) -> Path:
    """A copy of checkpoint ``source`` with ``edit(payload)`` applied (a plain torch.save)."""
    payload = read_checkpoint(source)
    edit(payload)
    torch.save(payload, dest)
    return dest


def _billion_laughs(levels: int = 30, width: int = 10) -> dict:
    """30 levels of 10 references to one shared dict: 10³⁰ values when walked or copied."""
    node: dict = {"lol": "lol"}
    for _ in range(levels):
        node = {f"k{i}": node for i in range(width)}
    return node


def _blobs(registry: ModelRegistry) -> int:
    blobs = registry.blob_store
    assert isinstance(blobs, LocalBlobStore)
    return blobs.count({})


@pytest.fixture
def embedded_registry(tmp_path):
    from registry_helpers import embedded_settings

    reg = ModelRegistry(settings=embedded_settings(tmp_path))
    try:
        yield reg.connect()
    finally:
        reg.close()


@pytest.mark.timeout(60)
def test_a_billion_laughs_config_is_refused_and_register_writes_no_blob(
    embedded_registry, make_checkpoint, tmp_path
):
    def laughs(p):
        p["config"]["options"] = _billion_laughs()

    path = _rewrite(make_checkpoint("piezo", 0), tmp_path / "laughs.pt", laughs)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="config options are nested deeper than 8"):
        load_checkpoint(path, task="piezo")
    with pytest.raises(ValueError, match="config options are nested deeper than 8"):
        embedded_registry.register(path, "piezo")

    def wide(p):
        p["config"]["options"] = _billion_laughs(levels=5, width=20)  # 3.2 million, 6 deep

    path = _rewrite(make_checkpoint("piezo", 0), tmp_path / "wide.pt", wide)
    with pytest.raises(ValueError, match="config options hold more than 1000 values"):
        embedded_registry.register(path, "piezo")
    assert time.perf_counter() - t0 < 20
    assert _blobs(embedded_registry) == 0  # no orphan weights
    assert embedded_registry.list_versions("piezo") == []


@pytest.mark.timeout(60)
def test_a_huge_size_in_the_config_is_refused_before_the_model_is_built(make_checkpoint, tmp_path):
    def huge(p):
        p["config"]["node_dim"] = 10**9

    path = _rewrite(make_checkpoint("piezo", 0), tmp_path / "huge.pt", huge)
    with pytest.raises(ValueError, match=r"'node_dim' = 1000000000 is outside \[1, 1024\]"):
        load_checkpoint(path, task="piezo")

    def wrong_type(p):
        p["config"]["node_dim"] = "16"

    path = _rewrite(make_checkpoint("piezo", 0), tmp_path / "type.pt", wrong_type)
    with pytest.raises(ValueError, match="config field 'node_dim' must be a int, got str"):
        load_checkpoint(path, task="piezo")


def test_weights_that_do_not_fit_the_built_model_are_refused(make_checkpoint, tmp_path):
    def shrink(p):
        p["config"]["node_dim"] = 24  # the weights are for node_dim 16

    path = _rewrite(make_checkpoint("piezo", 0), tmp_path / "shape.pt", shrink)
    with pytest.raises(ValueError, match=r"weights do not match the config: .*wrong shape"):
        load_checkpoint(path, task="piezo")


@pytest.mark.parametrize(
    ("scale", "message"),
    [
        ("abc", r"every weight must be a tensor; refused: target_scale \(str\)"),
        (1.5, r"every weight must be a tensor; refused: target_scale \(float\)"),
        (torch.tensor(float("nan"), dtype=torch.float64), "is not a finite positive number"),
        (torch.tensor(float("inf"), dtype=torch.float64), "is not a finite positive number"),
    ],
)
def test_a_non_tensor_or_non_finite_scale_is_refused_with_a_clear_error(
    make_checkpoint, tmp_path, scale, message
):
    def set_scale(p):
        p["state_dict"]["target_scale"] = scale

    path = _rewrite(make_checkpoint("piezo", 0), tmp_path / "scale.pt", set_scale)
    with pytest.raises(ValueError, match=message):
        load_validated(path, task="piezo")


def test_an_output_scale_that_makes_every_prediction_round_off_is_refused(
    embedded_registry, make_checkpoint, tmp_path
):
    def tiny(p):
        p["state_dict"]["target_scale"] = p["state_dict"]["target_scale"] * 1e-30

    good = make_checkpoint("piezo", 0)
    load_validated(good, task="piezo")  # the unscaled model passes
    path = _rewrite(good, tmp_path / "tiny.pt", tiny)
    load_checkpoint(path, task="piezo")  # loading only loads: the outputs are validated apart
    with pytest.raises(ValueError, match="round-off"):
        load_validated(path, task="piezo")
    with pytest.raises(ValueError, match="round-off"):
        embedded_registry.register(path, "piezo")
    assert _blobs(embedded_registry) == 0
    # elastic: the prediction is the bare isotropic offset, still round-off beyond it
    elastic = make_checkpoint("elastic", 0)

    def offset_only(p):
        p["state_dict"]["target_scale"] = p["state_dict"]["target_scale"] * 1e-30
        eye = torch.eye(3, dtype=torch.float64)
        p["state_dict"]["target_offset"] = 100.0 * torch.einsum("ij,kl->ijkl", eye, eye)

    path = _rewrite(elastic, tmp_path / "offset.pt", offset_only)
    with pytest.raises(ValueError, match="round-off"):
        load_validated(path, task="elastic")


def test_a_promotion_refused_for_nan_weights_names_the_model_version(
    embedded_registry, make_checkpoint, tmp_path, monkeypatch
):
    import atomate2_gmt.model.validate as validate

    def nan(p):
        name = next(k for k, v in p["state_dict"].items() if v.is_floating_point() and v.numel())
        p["state_dict"][name] = torch.full_like(p["state_dict"][name], float("nan"))

    path = _rewrite(make_checkpoint("piezo", 0), tmp_path / "nan.pt", nan)
    with pytest.raises(ValueError, match=r"nan\.pt"):
        embedded_registry.register(path, "piezo")  # refused at registration, naming the file
    # a version registered before that check existed is refused at promotion, by its name
    real = validate.load_validated
    monkeypatch.setattr(validate, "load_validated", lambda *a, **k: None)
    doc = embedded_registry.register(path, "piezo")
    monkeypatch.setattr(validate, "load_validated", real)
    with pytest.raises(Exception, match=rf"refused: {doc.version} \({doc.model_id}\): ") as info:
        embedded_registry.promote(doc.model_id, "try", force=True)
    assert ".part" not in str(info.value)
    assert "/tmp" not in str(info.value)
