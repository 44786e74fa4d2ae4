"""Transfer learning between tasks: which weights move, which stay, and that the result is
still a symmetric, equivariant model of the new task."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.gmtnet import GMTNet
from atomate2_gmt.training.transfer import load_state, transfer_weights

SMALL = {
    "node_dim": 16, "rbf_bins": 16, "n_invariant_layers": 1, "n_equivariant_layers": 2,
    "scalar_mul": 8, "vector_mul": 2, "out_mul": 2, "radial_hidden": 8, "k_neighbors": 4,
}  # fmt: skip


def _net(task: str, seed: int) -> GMTNet:
    torch.manual_seed(seed)
    return GMTNet(GMTNetConfig(task=task, **SMALL))


def test_shared_layers_move_and_the_head_stays() -> None:
    source, target = _net("dielectric_total", 0), _net("piezo", 1)
    head_before = {k: v.clone() for k, v in target.named_parameters() if k.startswith("head.")}
    offset_before = target.target_offset.clone()
    report = transfer_weights(target, source.state_dict())
    src = dict(source.named_parameters())
    for name in report.copied:
        assert torch.equal(dict(target.named_parameters())[name], src[name])
    assert "atom_embedding.linear.weight" in report.copied
    assert any(k.startswith("invariant_layers.") for k in report.copied)
    # the head has the piezo shapes: never copied, still as initialised
    assert all(k in report.kept for k in head_before)
    for name, value in head_before.items():
        assert torch.equal(dict(target.named_parameters())[name], value)
    assert torch.equal(target.target_offset, offset_before)  # buffers are never copied
    assert 0.3 < report.fraction < 1.0
    assert report.n_copied == sum(
        p.numel() for n, p in target.named_parameters() if n in src and n in report.copied
    )
    assert "transferred" in report.summary()


def test_unrelated_state_is_refused() -> None:
    with pytest.raises(ValueError, match="no parameter of the state matches"):
        transfer_weights(_net("piezo", 0), {"weight": torch.zeros(3)})


def test_transferred_model_predicts_symmetric_tensors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """After transfer the piezo model still gives exactly zero for a centrosymmetric crystal
    (the symmetry module is part of the architecture, not of the weights)."""
    from pymatgen.core import Lattice, Structure

    from atomate2_gmt.model.checkpoint import save_checkpoint
    from atomate2_gmt.model.predict import predict

    source = _net("dielectric", 0)
    path = tmp_path / "dielectric.pt"
    save_checkpoint(path, source)
    target = _net("piezo", 1)
    transfer_weights(target, load_state(path))
    rocksalt = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    wurtzite = Structure.from_spacegroup(
        "P6_3mc",
        Lattice.hexagonal(3.25, 5.21),
        ["Zn", "O"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]],
    )
    out = predict([rocksalt, wurtzite], "piezo", model=target)
    assert all(r["state"] == "successful" for r in out)
    assert max(abs(x) for row in out[0]["voigt"] for x in row) == 0.0
    assert max(abs(x) for row in out[1]["voigt"] for x in row) > 0.0


def test_train_task_pretraining_route(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``train_task(exclude_materials_of=…)`` leaves out the other task's validation and test
    materials; ``init_from`` starts the model from a checkpoint of another task."""
    from atomate2_gmt.data.records import split_records
    from atomate2_gmt.model.checkpoint import load_checkpoint, save_checkpoint
    from atomate2_gmt.training import run
    from atomate2_gmt.training.trainer import TrainConfig

    real = run.load_records

    def few(task: str, data: str = "mp", settings=None):  # type: ignore[no-untyped-def]
        records, info = real(task, data, settings)
        return records[:60], info

    monkeypatch.setattr(run, "load_records", few)
    piezo, _ = few("piezo")
    dt, _ = few("dielectric_total")
    cfg = TrainConfig(epochs=1, batch_size=16, seed=5, device="cpu")
    _, p_val, p_test = split_records(piezo, (0.8, 0.1, 0.1), seed=5)
    held = {r.id for r in [*p_val, *p_test]}
    report = run.train_task(
        "dielectric_total", tmp_path / "pre", train_cfg=cfg, model_overrides=SMALL,
        resume=False, progress=False, exclude_materials_of="piezo",
    )  # fmt: skip
    n_excluded = sum(r.id in held for r in dt)
    assert report["data"]["n_excluded_materials"] == n_excluded
    assert sum(report["split_sizes"].values()) == len(dt) - n_excluded

    source, _ = load_checkpoint(tmp_path / "pre" / "best.pt")
    save_checkpoint(tmp_path / "source.pt", source)
    report = run.train_task(
        "piezo", tmp_path / "piezo", train_cfg=cfg, model_overrides=SMALL,
        resume=False, progress=False, init_from=tmp_path / "source.pt",
    )  # fmt: skip
    assert report["transfer"]["copied"] > 0
    assert 0 < report["transfer"]["fraction"] < 1

    # an ensemble member: another init seed on the same split
    member = run.train_task(
        "piezo", tmp_path / "member", train_cfg=replace(cfg, seed=9), model_overrides=SMALL,
        resume=False, progress=False, split_seed=5,
    )  # fmt: skip
    ids = {r.id for r in split_records(piezo, (0.8, 0.1, 0.1), seed=5)[2]}
    meta = load_checkpoint(tmp_path / "member" / "best.pt")[1]
    assert meta["split"]["seed"] == 5
    assert meta["split"]["init_seed"] == 9
    assert member["split_sizes"]["test"] == len(ids)


def test_train_cli_passes_the_transfer_options(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from atomate2_gmt.cli.app import app
    from atomate2_gmt.training import run

    seen: dict = {}

    def fake_train_task(task, out_dir, **kwargs):  # type: ignore[no-untyped-def]
        seen.update(task=task, **kwargs)
        overall = {"fnorm": 1.0, "ewt25": 0.5, "zero_success": 1.0, "equality_success": 1.0}
        return {"overall": {**overall, "n": 3}}

    monkeypatch.setattr(run, "train_task", fake_train_task)
    ckpt = tmp_path / "dt.pt"
    args = ["train", "--task", "piezo", "--epochs", "1", "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(
        app,
        [
            *args,
            "--init-from",
            str(ckpt),
            "--exclude-materials-of",
            "dielectric",
            "--split-seed",
            "32",
        ],
    )
    assert res.exit_code == 0, res.output
    assert seen["task"] == "piezo"
    assert seen["init_from"] == ckpt
    assert seen["exclude_materials_of"] == "dielectric"
    assert seen["split_seed"] == 32
