"""Checkpoints: round trip, metadata, and refusal of corrupt, mismatched or unsafe files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from atomate2_gmt.model.checkpoint import load_checkpoint, save_checkpoint
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.gmtnet import GMTNet
from tests.model.conftest import calibrated_model, predict_one, prototypes


def test_round_trip_keeps_predictions_and_metadata(tmp_path):
    model = calibrated_model("piezo", "float32")
    path = save_checkpoint(tmp_path / "m.pt", model, {"version": "7", "training_data_hash": "abc"})
    loaded, meta = load_checkpoint(path, task="piezo")
    s = prototypes()["wurtzite_ZnO"]
    assert np.allclose(predict_one(loaded, s), predict_one(model, s), rtol=1e-6, atol=1e-9)
    assert loaded.target_scale.item() == pytest.approx(model.target_scale.item())
    assert meta["version"] == "7"
    assert meta["training_data_hash"] == "abc"
    assert len(meta["checkpoint_sha256"]) == 64


def test_task_mismatch_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", GMTNet(GMTNetConfig(task="dielectric")))
    with pytest.raises(ValueError, match=r"m.pt.*task 'dielectric', not 'elastic'"):
        load_checkpoint(path, task="elastic")


def test_config_mismatch_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", GMTNet(GMTNetConfig(task="dielectric")))
    with pytest.raises(ValueError, match=r"config mismatch.*k_neighbors"):
        load_checkpoint(path, config=GMTNetConfig(task="dielectric", k_neighbors=12))


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", GMTNet(GMTNetConfig(task="dielectric")))
    payload = torch.load(path, weights_only=True)
    payload["config"]["node_dim"] = 64
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"weights do not match the config"):
        load_checkpoint(path)


def test_truncated_and_garbage_files_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", GMTNet(GMTNetConfig(task="dielectric")))
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.pt: corrupt or truncated"):
        load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=r"junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match=r"nothere.pt"):
        load_checkpoint(tmp_path / "nothere.pt")


class _Payload:
    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (Path.touch, (Path(self.sentinel),))


@pytest.mark.parametrize("via", ["torch", "pickle"])
def test_a_pickle_that_runs_code_is_never_executed(tmp_path, via):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if via == "torch":
        torch.save({"format": "atomate2-gmt-checkpoint", "x": _Payload(str(sentinel))}, path)
    else:
        path.write_bytes(pickle.dumps(_Payload(str(sentinel))))
    with pytest.raises(ValueError, match=r"evil.pt"):
        load_checkpoint(path)
    assert not sentinel.exists()


def test_checkpoint_written_before_hidden_lmax_loads_with_the_head_order(tmp_path):
    """Configs saved before ``hidden_lmax`` existed meant hidden features up to the head's l."""
    model = GMTNet(GMTNetConfig(task="piezo"))
    path = save_checkpoint(tmp_path / "m.pt", model)
    payload = torch.load(path, weights_only=True)
    del payload["config"]["hidden_lmax"]
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    loaded = loaded[0] if isinstance(loaded, tuple) else loaded
    assert loaded.config.hidden_lmax == 3 == loaded.config.head_lmax


def _assert_no_torch_advice(message: str) -> None:
    """torch's advice to retry with weights_only=False (which runs the file's code) never
    reaches the user."""
    for phrase in ("weights_only", "trust", "add_safe_globals", "\x1b["):
        assert phrase not in message


def test_random_bytes_are_not_a_checkpoint_not_a_malicious_one(tmp_path):
    import random

    path = tmp_path / "random.pt"
    path.write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message == (
        f"{path}: corrupt or truncated checkpoint, or not a checkpoint at all (not a torch.save "
        "zip archive)"
    )
    assert "refused" not in message


def test_a_damaged_archive_is_corrupt_and_torch_advice_is_dropped(tmp_path):
    import random
    import zipfile

    good = save_checkpoint(tmp_path / "m.pt", GMTNet(GMTNetConfig(task="dielectric")))
    damaged = tmp_path / "damaged.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(damaged, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("data.pkl"):  # the pickle torch reads first
                data = random.Random(1).randbytes(len(data))
            dst.writestr(item, data)
    with pytest.raises(ValueError) as info:
        load_checkpoint(damaged)
    message = str(info.value)
    assert message.startswith(f"{damaged}: corrupt checkpoint (")
    assert "refused" not in message
    _assert_no_torch_advice(message)


@pytest.mark.parametrize("payload", ["path_touch", "os_system"])
def test_disallowed_objects_are_refused_with_the_reason_and_no_advice(tmp_path, payload):
    import os

    sentinel = tmp_path / "pwned"

    class _System:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    obj = _Payload(str(sentinel)) if payload == "path_touch" else _System()
    path = tmp_path / "evil.pt"
    torch.save({"format": "atomate2-gmt-checkpoint", "x": obj}, path)
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(
        f"{path}: refused: the checkpoint asks for objects that are not plain weights ("
    )
    assert "GLOBAL" in message
    _assert_no_torch_advice(message)
    assert not sentinel.exists()
