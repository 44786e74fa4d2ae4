"""Trainer: learning, determinism, resuming, best checkpoint, reports (small model, small data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from atomate2_gmt.data.mp import load_mp
from atomate2_gmt.data.records import split_records
from atomate2_gmt.model.checkpoint import load_checkpoint
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.gmtnet import GMTNet
from atomate2_gmt.training.evaluate import evaluate_prepared
from atomate2_gmt.training.report import report_markdown
from atomate2_gmt.training.trainer import TrainConfig, Trainer, prepare_records

SMALL = {
    "node_dim": 32,
    "rbf_bins": 64,
    "scalar_mul": 8,
    "vector_mul": 2,
    "out_mul": 4,
    "radial_hidden": 16,
}


@pytest.fixture(scope="module")
def sets():
    records = load_mp("dielectric").records
    train, val, test = split_records(records[:80], seed=32)
    cfg = GMTNetConfig(task="dielectric", **SMALL)
    return cfg, prepare_records(train, cfg), prepare_records(val, cfg), prepare_records(test, cfg)


def _trainer(sets, out, epochs):
    cfg, train, val, _ = sets
    tcfg = TrainConfig(epochs=epochs, batch_size=16, seed=3, device="cpu", warmup_epochs=0)
    torch.manual_seed(tcfg.seed)  # initial weights, as train_task does
    return Trainer(GMTNet(cfg), train, val, out, tcfg)


def test_loss_decreases_and_best_checkpoint_loads(sets, tmp_path):
    trainer = _trainer(sets, tmp_path, epochs=4)
    best = trainer.fit(progress=False)
    losses = [row["train_loss"] for row in trainer.history]
    assert losses[-1] < losses[0]
    model, meta = load_checkpoint(trainer.best_path, task="dielectric")
    assert meta["best_epoch"] == best["epoch"]
    assert meta["training_data_hash"]
    assert meta["n_train"] == len(sets[1].records)
    assert model.target_scale.item() == pytest.approx(trainer.model.target_scale.item())
    assert (tmp_path / "log.csv").read_text().count("\n") == 5  # header + 4 epochs


def test_same_seed_same_run(sets, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bitwise reproducible; with more threads ~1e-8 (reduction order)
    try:
        a = _trainer(sets, tmp_path / "a", epochs=2)
        a.fit(progress=False)
        b = _trainer(sets, tmp_path / "b", epochs=2)
        b.fit(progress=False)
    finally:
        torch.set_num_threads(threads)
    la, lb = [r["train_loss"] for r in a.history], [r["train_loss"] for r in b.history]
    assert la == lb


def test_resume_continues_from_saved_state(sets, tmp_path):
    straight = _trainer(sets, tmp_path / "straight", epochs=3)
    straight.fit(progress=False)
    first = _trainer(sets, tmp_path / "resumed", epochs=3)
    # run 2 of 3 epochs, as if the job died there, then resume in a fresh Trainer
    for _ in range(2):
        first.train_epoch()
        first.epoch += 1
        first.history.append({"epoch": first.epoch})
        first.save_state()
    resumed = _trainer(sets, tmp_path / "resumed", epochs=3)
    assert resumed.load_state()
    assert resumed.epoch == 2
    resumed.fit(progress=False)
    assert resumed.epoch == 3
    final_straight = straight.history[-1]["train_loss"]
    assert resumed.history[-1]["train_loss"] == pytest.approx(final_straight, rel=1e-6)


def test_resume_refuses_a_different_model(sets, tmp_path):
    _trainer(sets, tmp_path, epochs=1).fit(progress=False)
    _cfg, train, val, _ = sets
    other = Trainer(
        GMTNet(GMTNetConfig(task="dielectric", **{**SMALL, "out_mul": 6})),
        train,
        val,
        tmp_path,
        TrainConfig(epochs=2, device="cpu"),
    )
    with pytest.raises(ValueError, match="config differs"):
        other.load_state()


def test_report_markdown_and_parity_plot(sets, tmp_path):
    _cfg, _train, _val, test = sets
    trainer = _trainer(sets, tmp_path, epochs=1)
    trainer.fit(progress=False)
    png = tmp_path / "parity.png"
    report = evaluate_prepared(trainer.model, test, batch_size=8, parity_png=str(png))
    assert png.stat().st_size > 5000
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert report["overall"]["n"] == len(test.records)
    assert report["overall"]["zero_success"] == 1.0
    assert report["overall"]["equality_success"] == 1.0
    assert 0.0 <= report["overall"]["ewt25"] <= 1.0
    assert sum(m["n"] for m in report["per_crystal_system"].values()) == len(test.records)
    # the same crystals by what symmetry leaves free: cubic ε has one free component
    by_dim = report["per_free_parameters"]
    assert sum(m["n"] for m in by_dim.values()) == len(test.records)
    cubic = [i for i, c in enumerate(test.crystals) if c.crystal_system == "cubic"]
    assert cubic
    assert by_dim["1"]["n"] >= len(cubic)
    assert set(map(int, by_dim)) <= set(range(1, 7))  # a symmetric 3x3 tensor has <= 6
    assert 0.0 <= report["overall"]["aligned"] <= 1.0
    md = report_markdown({**report, "task": "dielectric"})
    header = next(line for line in md.splitlines() if line.startswith("| free components"))
    assert header.count("|") == 8  # seven cells: no unescaped pipe inside a header
    assert "| free components | n | EwT25 | median cos θ |" in md
    assert "| all |" in md
    assert "EwT25" in md
    json.dumps(report)  # JSON-safe
    assert np.isfinite(report["overall"]["fnorm"])


def test_filter_max_abs_drops_only_the_tail():
    from atomate2_gmt.training.run import filter_max_abs

    records = load_mp("dielectric").records
    kept, dropped = filter_max_abs(records, 100.0)
    assert dropped == len(records) - len(kept) > 0
    assert all(np.abs(r.tensor).max() <= 100.0 for r in kept)
    assert max(np.abs(r.tensor).max() for r in records) > 100.0
    assert filter_max_abs(records, float("inf")) == (records, 0)


def test_relative_loss_term_is_scale_free_and_floored():
    from atomate2_gmt.training.trainer import relative_huber

    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.normal(size=(5, 3, 3)) + 4 * np.eye(3))
    scale = torch.tensor(1.0, dtype=torch.float64)
    assert relative_huber(target, target, scale).item() == 0.0
    # pred = 2·true: relative error 1 per crystal → Huber(1, delta 0.1) = 0.1·(1 - 0.05)
    assert relative_huber(2 * target, target, scale).item() == pytest.approx(0.095)
    # scale-free: the same relative errors at 100x the magnitude (and 100x the scale)
    big = relative_huber(200 * target, 100 * target, 100 * scale).item()
    assert big == pytest.approx(0.095)
    # a zero target is measured against 0.1·scale, not zero: finite
    zero = torch.zeros(1, 3, 3, dtype=torch.float64)
    assert np.isfinite(relative_huber(zero + 0.01, zero, scale).item())


def test_relative_loss_weight_trains(sets, tmp_path):
    cfg, train, val, _ = sets
    tcfg = TrainConfig(
        epochs=3, batch_size=16, seed=3, device="cpu", warmup_epochs=0, relative_loss_weight=3.0
    )
    torch.manual_seed(tcfg.seed)
    trainer = Trainer(GMTNet(cfg), train, val, tmp_path, tcfg)
    trainer.fit(progress=False)
    losses = [row["train_loss"] for row in trainer.history]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]


def test_log_magnitude_term_punishes_shrinking_like_inflating():
    from atomate2_gmt.training.trainer import log_magnitude_huber

    rng = np.random.default_rng(1)
    target = torch.from_numpy(rng.normal(size=(6, 3, 3, 3)))
    scale = torch.tensor(1e-6, dtype=torch.float64)  # floor negligible
    assert log_magnitude_huber(target, target, scale).item() == pytest.approx(0.0, abs=1e-9)
    shrunk = log_magnitude_huber(target / 5, target, scale).item()
    inflated = log_magnitude_huber(target * 5, target, scale).item()
    assert shrunk == pytest.approx(inflated, rel=1e-6)
    # the all-zero prediction is far from free (a relative error alone scores it only 1)
    assert log_magnitude_huber(0 * target, target, torch.tensor(1.0)).item() > 0.5


def test_target_scale_statistics():
    from atomate2_gmt.training.trainer import _target_scale

    t = torch.zeros(5, 3, 3, dtype=torch.float64)
    for i, norm in enumerate([1.0, 2.0, 3.0, 4.0, 100.0]):  # one heavy-tail tensor
        t[i, 0, 0] = norm
    assert _target_scale(t, "median_norm") == pytest.approx(3.0)
    assert _target_scale(t, "rms") == pytest.approx(float(t.pow(2).mean().sqrt()))
    with pytest.raises(ValueError, match="scale_statistic must be 'rms' or 'median_norm'"):
        _target_scale(t, "mean")


def test_learning_curves_and_selection_on_ewt25(sets, tmp_path):
    cfg, train, val, _ = sets
    tcfg = TrainConfig(
        epochs=3, batch_size=16, seed=3, device="cpu", warmup_epochs=0,
        select_on="val_ewt25", train_metrics_size=20, scale_statistic="median_norm",
        log_magnitude_loss_weight=1.0,
    )  # fmt: skip
    torch.manual_seed(tcfg.seed)
    trainer = Trainer(GMTNet(cfg), train, val, tmp_path, tcfg)
    best = trainer.fit(progress=False)
    for row in trainer.history:
        for key in ("fnorm", "ewt25", "ewt50", "median_rel", "median_ratio"):
            assert np.isfinite(row[f"val_{key}"])
            assert np.isfinite(row[f"train_{key}"])
    top = max(row["val_ewt25"] for row in trainer.history)
    first = next(row for row in trainer.history if row["val_ewt25"] == top)
    assert best["epoch"] == first["epoch"]
    assert best["val_ewt25"] == top
    with pytest.raises(ValueError, match="select_on must be one of val_fnorm, val_ewt25"):
        Trainer(GMTNet(cfg), train, val, tmp_path / "x", TrainConfig(select_on="val_loss"))


def test_selection_on_validation_spearman(sets, tmp_path):
    from atomate2_gmt.tensors.metrics import ranking_metrics
    from atomate2_gmt.training.trainer import predict_prepared

    cfg, train, val, _ = sets
    tcfg = TrainConfig(
        epochs=3, batch_size=16, seed=3, device="cpu", warmup_epochs=0, select_on="val_spearman"
    )
    torch.manual_seed(tcfg.seed)
    trainer = Trainer(GMTNet(cfg), train, val, tmp_path, tcfg)
    best = trainer.fit(progress=False)
    rhos = [row["val_spearman"] for row in trainer.history]
    assert all(-1.0 <= r <= 1.0 for r in rhos)
    assert all(0.0 <= row["val_top10_recall"] <= 1.0 for row in trainer.history)
    assert best["val_spearman"] == max(rhos)
    assert best["epoch"] == rhos.index(max(rhos)) + 1
    # the last epoch's figure is the ranking of the model as it stands
    pred = predict_prepared(trainer.model, val, 16, "cpu")
    expected = ranking_metrics(pred, val.targets.numpy())["spearman_norm"]
    assert rhos[-1] == pytest.approx(expected, abs=1e-9)


def test_spearman_selection_keeps_a_checkpoint_when_the_ranking_is_undefined(sets, tmp_path):
    cfg, train, val, _ = sets
    one = val.subset(lambda r: r.id == val.records[0].id)  # Spearman of one crystal: NaN
    tcfg = TrainConfig(
        epochs=2, batch_size=16, seed=3, device="cpu", warmup_epochs=0, select_on="val_spearman"
    )
    trainer = Trainer(GMTNet(cfg), train, one, tmp_path, tcfg)
    best = trainer.fit(progress=False)
    assert np.isnan(trainer.history[0]["val_spearman"])
    assert trainer.best_path.is_file()
    # undefined every epoch: the validation Fnorm decides, not the first epoch by default
    fnorms = [row["val_fnorm"] for row in trainer.history]
    assert best["epoch"] == fnorms.index(min(fnorms)) + 1


def test_a_defined_ranking_replaces_an_undefined_one_and_never_the_reverse(sets, tmp_path):
    cfg, train, val, _ = sets
    tcfg = TrainConfig(epochs=1, batch_size=16, seed=3, device="cpu", select_on="val_spearman")
    trainer = Trainer(GMTNet(cfg), train, val, tmp_path, tcfg)
    trainer.best = {"epoch": 1, "val_fnorm": 0.1, "val_spearman": float("nan")}
    assert trainer._improved({"val_fnorm": 9.0, "val_spearman": -0.5})
    trainer.best = {"epoch": 1, "val_fnorm": 9.0, "val_spearman": -0.5}
    assert not trainer._improved({"val_fnorm": 0.1, "val_spearman": float("nan")})
    assert trainer._improved({"val_fnorm": 9.0, "val_spearman": -0.4})


def test_resume_refuses_another_selection_criterion(sets, tmp_path):
    cfg, train, val, _ = sets
    tcfg = TrainConfig(epochs=1, batch_size=16, seed=3, device="cpu", warmup_epochs=0)
    Trainer(GMTNet(cfg), train, val, tmp_path, tcfg).fit(progress=False)
    other = TrainConfig(
        epochs=2, batch_size=16, seed=3, device="cpu", warmup_epochs=0, select_on="val_spearman"
    )
    with pytest.raises(ValueError, match="chosen on val_fnorm, this run chooses on val_spearman"):
        Trainer(GMTNet(cfg), train, val, tmp_path, other).fit(progress=False)
