"""Simulated campaign on 40 real piezo records (tiny model, 1 epoch): the bookkeeping (no label
before it is revealed, picks never repeated, found counts), the random baseline, the
no-retraining ranking, determinism, and the CLI end to end."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from atomate2_gmt.active_learning import simulate
from atomate2_gmt.active_learning.policies import (
    compress_targets,
    expand_targets,
    hypergeometric_mean,
    objective_field,
    objective_values,
    pick_random,
    pick_top,
)
from atomate2_gmt.active_learning.simulate import CampaignConfig, run_campaign, summarize
from atomate2_gmt.cli.app import app
from atomate2_gmt.data.mp import load_mp
from atomate2_gmt.jobs.select import SelectionPolicy, rank_candidates
from atomate2_gmt.schemas.derived import derived_quantities
from atomate2_gmt.tensors.conventions import rotate
from atomate2_gmt.tensors.properties import piezo_max_eij

TINY = {
    "node_dim": 16, "rbf_bins": 16, "n_invariant_layers": 1, "n_equivariant_layers": 1,
    "scalar_mul": 8, "vector_mul": 2, "out_mul": 2, "radial_hidden": 8, "k_neighbors": 4,
}  # fmt: skip
CFG = CampaignConfig(
    rounds=2, per_round=4, seed_size=10, heldout_size=6, top=5, seed=3, ensemble=2,
    random_repeats=20, init_epochs=1, finetune_epochs=1, batch_size=8, model_overrides=TINY,
)  # fmt: skip


@pytest.fixture(scope="module")
def records() -> list[Any]:
    return load_mp("piezo").records[:40]


@pytest.fixture(scope="module")
def result(records) -> simulate.CampaignResult:  # type: ignore[no-untyped-def]
    return run_campaign(CFG, records)


def test_policies() -> None:
    scores = np.array([0.5, 2.0, 2.0, np.nan, 1.0])
    assert pick_top(scores, [0, 1, 2, 4], 3) == [1, 2, 4]  # ties: lower index first
    assert pick_top(scores, [2, 0], 5) == [2, 0]
    picks = pick_random(np.random.default_rng(0), range(10), 4)
    assert len(set(picks)) == 4
    assert set(picks) <= set(range(10))
    assert hypergeometric_mean(100, 50, 500) == pytest.approx(10.0)
    assert hypergeometric_mean(600, 50, 500) == pytest.approx(50.0)


def test_objective_is_the_field_production_selects_on() -> None:
    """The campaign's value is emmet's e_ij_max (IEEE frame), as the documents store it: the
    same for the tensor of a rotated crystal, unlike the frame-dependent max |e_iJ|."""
    assert objective_field("piezo") == "e_ij_max"
    assert objective_field("elastic") == "K_VRH"
    e = np.zeros((3, 3, 3))
    e[2, 0, 0] = e[2, 1, 1] = -1.5  # e_31 = e_32 = -1.5 C/m²: singular value 1.5·√2
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    turned = rotate(e, q)  # the same crystal in another frame; its IEEE rotation undoes q
    values = objective_values(np.array([e, turned, e]), [np.eye(3), q.T, None], "piezo")
    assert values[:2] == pytest.approx([1.5 * np.sqrt(2)] * 2)
    assert np.isnan(values[2])  # no IEEE frame: no e_ij_max, never selectable
    assert piezo_max_eij(turned)[0] != pytest.approx(values[0])  # the structure-frame value
    assert values[0] == derived_quantities("piezo", e, np.eye(3))["e_ij_max"]
    with pytest.raises(ValueError, match="IEEE rotations"):
        objective_values(np.array([e]), [], "piezo")


def test_no_label_before_it_is_revealed(records, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    oracles: list[simulate.Oracle] = []
    original_init = simulate.Oracle.__init__

    def init(self, data, pool):  # type: ignore[no-untyped-def]
        original_init(self, data, pool)
        oracles.append(self)

    trained: list[tuple[set[str], set[str], set[str]]] = []
    original_train = simulate.train_model

    def train(train_set, val, cfg, seed, init=None, body=None):  # type: ignore[no-untyped-def]
        # the labels revealed so far by the oracle of the running strategy (none before it)
        revealed = (
            {oracles[-1]._data.records[i].id for i in oracles[-1].revealed} if oracles else set()
        )
        trained.append(({r.id for r in train_set.records}, {r.id for r in val.records}, revealed))
        return original_train(train_set, val, cfg, seed, init, body)

    predicted: list[int] = []
    original_predict = simulate.predict_prepared

    def predict(model, data, batch_size=64, device="cpu"):  # type: ignore[no-untyped-def]
        assert data.records == []  # the policies' predictions come from structures only
        assert not data.targets.any()
        predicted.append(len(data.crystals))
        return original_predict(model, data, batch_size, device)

    monkeypatch.setattr(simulate.Oracle, "__init__", init)
    monkeypatch.setattr(simulate, "train_model", train)
    monkeypatch.setattr(simulate, "predict_prepared", predict)
    res = run_campaign(CFG, records)
    seed_ids = set(res.seed_ids)
    assert trained
    assert predicted
    for train_ids, val_ids, revealed in trained:
        assert val_ids <= seed_ids
        assert train_ids <= seed_ids | revealed  # only seed labels and those revealed so far
        assert not train_ids & val_ids
    # exploit + ucb fine-tune once per round per member: 1 + 2 members, 2 rounds
    n_initial = CFG.ensemble  # member 0 is shared with ranking/exploit
    assert len(trained) == n_initial + CFG.rounds * (1 + CFG.ensemble)


def test_bookkeeping(result) -> None:  # type: ignore[no-untyped-def]
    pool, top = set(result.pool_ids), set(result.top_ids)
    assert len(result.pool_ids) == 40 - CFG.seed_size - CFG.heldout_size
    assert not pool & set(result.seed_ids)
    assert not pool & set(result.heldout_ids)
    assert len(top) == CFG.top
    assert top <= pool
    assert set(result.strategies) == set(CFG.strategies)
    for name, trace in result.strategies.items():
        assert trace.oracle_calls == [0, 4, 8]
        flat = [i for r in trace.selected for i in r]
        assert len(flat) == len(set(flat)) == CFG.rounds * CFG.per_round  # never twice
        assert set(flat) <= pool
        assert all(b >= a for a, b in zip(trace.found, trace.found[1:], strict=False))
        if name != "random":  # random: found is the mean over the draws
            cumulative = [len(top & {i for p in trace.selected[:r] for i in p}) for r in range(3)]
            assert trace.found == cumulative
            assert all(f is not None and f > 0 for f in trace.heldout_fnorm)
    assert (
        result.strategies["ranking"].heldout_fnorm
        == [result.strategies["ranking"].heldout_fnorm[0]] * 3
    )  # never retrained
    assert (
        result.strategies["exploit"].heldout_fnorm[0]
        == (result.strategies["ranking"].heldout_fnorm[0])
    )  # same initial model


def test_random_baseline_math(records) -> None:  # type: ignore[no-untyped-def]
    cfg = replace(CFG, strategies=("random",), random_repeats=3000)
    res = run_campaign(cfg, records)
    n_pool = len(res.pool_ids)
    assert res.random_expectation == pytest.approx([r * 4 * 5 / n_pool for r in range(3)])
    trace = res.strategies["random"]
    assert trace.found_std is not None
    for mean, exp, std in zip(trace.found, res.random_expectation, trace.found_std, strict=True):
        assert abs(mean - exp) <= 4 * std / np.sqrt(3000) + 1e-12
    assert trace.heldout_fnorm == [None, None, None]
    summary = summarize([res])
    assert summary["strategies"]["random"]["ratio_to_random"] == pytest.approx(
        trace.found[-1] / res.random_expectation[-1]
    )


def test_ranking_is_the_production_policy_on_the_initial_model(result, records) -> None:  # type: ignore[no-untyped-def]
    """Each round of ``ranking`` is SelectionPolicy's pick (e_ij_max, one per chemical system)
    from the initial model's documents of the records not yet picked."""
    c = simulate._Campaign(CFG, records)
    model = c.initial_model(CFG.seed)
    tensors = c.predict(model, c.pool_idx)
    values = objective_values(tensors, [c.ieee[i] for i in c.pool_idx], "piezo")
    docs = [
        {"prediction_id": c.data.records[i].id, "e_ij_max": v, "chemsys": c.chemsys[i],
         "structure_key": c.keys[i]}
        for i, v in zip(c.pool_idx, values, strict=True)
    ]  # fmt: skip
    policy = SelectionPolicy(query="piezo", top_k=CFG.per_round)
    picked: list[str] = []
    for got in result.strategies["ranking"].selected:
        left = [d for d in docs if d["prediction_id"] not in picked]
        expected = [d["prediction_id"] for d in rank_candidates(left, policy)]
        assert got == expected
        picked.extend(got)
    chemsys = {r.id: c.chemsys[k] for k, r in enumerate(c.data.records)}
    for name, trace in result.strategies.items():  # the production cap: one per chemical system
        for ids in trace.selected if name != "random" else []:
            assert len({chemsys[i] for i in ids}) == len(ids)


def test_deterministic(result, records) -> None:  # type: ignore[no-untyped-def]
    again = run_campaign(CFG, records).as_dict()
    first = result.as_dict()
    for d in (again, first):
        d.pop("seconds"), d.pop("initial_seconds")
        for t in d["strategies"].values():
            t.pop("seconds")
    assert again == first


def test_cli_end_to_end(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out, png = tmp_path / "c.json", tmp_path / "c.png"
    args = [
        "campaign", "simulate", "--limit", "40", "--seed-size", "10", "--heldout-size", "6",
        "--top", "5", "--rounds", "2", "--per-round", "4", "--init-epochs", "1",
        "--finetune-epochs", "1", "--ensemble", "2", "--random-repeats", "10",
        "--batch-size", "8", "--model-overrides", json.dumps(TINY), "--replicates", "2",
        "--retrain", "scratch", "--out", str(out), "--plot", str(png), "--quiet",
    ]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "| exploit |" in res.output
    assert "target ≥ 3× random after 8 oracle calls" in res.output
    payload = json.loads(out.read_text())
    assert payload["summary"]["replicates"] == 2
    assert all(r["config"]["retrain"] == "scratch" for r in payload["replicates"])
    assert [r["config"]["seed"] for r in payload["replicates"]] == [0, 1]
    assert png.stat().st_size > 1000
    bad = CliRunner().invoke(app, ["campaign", "simulate", "--strategies", "greedy", "--quiet"])
    assert bad.exit_code != 0
    assert "unknown or no strategies" in bad.output
    bad = CliRunner().invoke(app, ["campaign", "simulate", "--retrain", "warm", "--quiet"])
    assert bad.exit_code != 0
    assert "unknown retrain 'warm'" in bad.output
    bad = CliRunner().invoke(app, ["campaign", "simulate", "--pretrain-task", "piezo", "--quiet"])
    assert bad.exit_code != 0
    assert "pretrain_task must be another task" in bad.output


def test_target_transform_roundtrip_and_symmetry() -> None:
    rng = np.random.default_rng(0)
    tensors = rng.normal(scale=3.0, size=(5, 3, 3, 3))
    tensors[0] = 0.0
    small = compress_targets(tensors, "asinh", 1.0)
    norms = np.linalg.norm(tensors.reshape(5, -1), axis=1)
    assert np.linalg.norm(small.reshape(5, -1), axis=1) == pytest.approx(np.arcsinh(norms))
    # a rescaling per tensor: the direction (hence the crystal's symmetry) is kept
    for t, s in zip(tensors[1:], small[1:], strict=True):
        assert np.allclose(s / np.linalg.norm(s), t / np.linalg.norm(t))
    # the norm is rotation invariant, so compressing commutes with rotating (O(3) equivariance)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = np.einsum("ia,jb,kc,nabc->nijk", q, q, q, tensors)
    assert np.allclose(
        compress_targets(rot, "asinh", 1.0), np.einsum("ia,jb,kc,nabc->nijk", q, q, q, small)
    )
    assert np.allclose(expand_targets(small, "asinh", 1.0), tensors)
    assert np.array_equal(compress_targets(tensors, "none"), tensors)
    with pytest.raises(ValueError, match="unknown target transform"):
        compress_targets(tensors, "log")
    with pytest.raises(ValueError, match="unknown target_transform"):
        CampaignConfig(target_transform="log")
    with pytest.raises(ValueError, match="unknown retrain"):
        CampaignConfig(retrain="warm")
    with pytest.raises(ValueError, match="huber_delta must be positive"):
        CampaignConfig(huber_delta=0.0)


def test_loss_options_reach_the_trainer(records, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[float, float]] = []
    original_fit = simulate.Trainer.fit

    def fit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((self.cfg.huber_delta, self.cfg.relative_loss_weight))
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(simulate.Trainer, "fit", fit)
    cfg = replace(CFG, strategies=("ranking",), huber_delta=10.0, relative_loss=3.0)
    run_campaign(cfg, records)
    assert seen == [(10.0, 3.0)]
    with pytest.raises(ValueError, match="relative_loss must be >= 0"):
        CampaignConfig(relative_loss=-1.0)


def test_scratch_retraining_and_transform(records, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls: list[tuple[bool, int, float]] = []
    original_train = simulate.train_model

    def train(train_set, val, cfg, seed, init=None, body=None):  # type: ignore[no-untyped-def]
        calls.append((init is None, len(train_set.records), float(train_set.targets.abs().max())))
        return original_train(train_set, val, cfg, seed, init, body)

    monkeypatch.setattr(simulate, "train_model", train)
    cfg = replace(CFG, strategies=("exploit",), retrain="scratch", target_transform="asinh")
    res = run_campaign(cfg, records)
    n_train = CFG.seed_size - CFG.n_val
    # initial model, then one new model from scratch per round on seed + revealed labels
    assert [(fresh, n) for fresh, n, _ in calls] == [
        (True, n_train + r * CFG.per_round) for r in range(CFG.rounds + 1)
    ]
    c = simulate._Campaign(cfg, records)
    idx = c.base_train_idx
    compressed = float(np.abs(compress_targets(c.data.targets[idx].numpy(), "asinh")).max())
    assert calls[0][2] == pytest.approx(compressed)  # the models see compressed labels
    assert calls[0][2] < float(c.data.targets[idx].abs().max())
    assert all(f is not None and f > 0 for f in res.strategies["exploit"].heldout_fnorm)


def test_select_last_trains_on_the_whole_seed_set(records, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[set[str], set[str]]] = []
    original_train = simulate.train_model

    def train(train_set, val, cfg, seed, init=None, body=None):  # type: ignore[no-untyped-def]
        seen.append(({r.id for r in train_set.records}, {r.id for r in val.records}))
        return original_train(train_set, val, cfg, seed, init, body)

    monkeypatch.setattr(simulate, "train_model", train)
    res = run_campaign(replace(CFG, strategies=("ranking",), select="last"), records)
    assert len(seen) == 1
    train_ids, val_ids = seen[0]
    assert train_ids == set(res.seed_ids)  # the validation records are trained on
    assert val_ids < train_ids
    with pytest.raises(ValueError, match="unknown select"):
        CampaignConfig(select="first")


def test_pretraining_sees_no_pool_or_heldout_material(records, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Transfer learning: the pretraining task's records of the campaign's pool and held-out
    materials are removed, and every model trained from scratch starts from its weights."""
    pretrained: list[set[str]] = []
    original_prepare = simulate.prepare_records

    def prepare(recs, config):  # type: ignore[no-untyped-def]
        if config.task == "dielectric_total":
            pretrained.append({r.id for r in recs})
        return original_prepare(recs, config)

    bodies: list[bool] = []
    original_train = simulate.train_model

    def train(train_set, val, cfg, seed, init=None, body=None):  # type: ignore[no-untyped-def]
        bodies.append(body is not None)
        return original_train(train_set, val, cfg, seed, init, body)

    monkeypatch.setattr(simulate, "prepare_records", prepare)
    monkeypatch.setattr(simulate, "train_model", train)
    cfg = replace(
        CFG, strategies=("exploit",), retrain="scratch", pretrain_task="dielectric_total",
        pretrain_epochs=1,
    )  # fmt: skip
    res = run_campaign(cfg, records)
    assert len(pretrained) == 1  # one pretraining per replicate, shared by every model
    hidden = set(res.pool_ids) | set(res.heldout_ids)
    assert not pretrained[0] & hidden
    all_dt = {r.id for r in load_mp("dielectric_total").records}
    assert res.pretrain is not None
    assert res.pretrain["n_excluded"] == len(all_dt & hidden) > 0
    assert res.pretrain["n_train"] + res.pretrain["n_val"] == len(pretrained[0])
    assert bodies == [True] * (CFG.rounds + 1)  # initial model + one per round, all transferred


def test_pretrain_task_validation() -> None:
    with pytest.raises(ValueError, match="another task"):
        CampaignConfig(task="piezo", pretrain_task="piezo")
    with pytest.raises(ValueError, match="pretrain_epochs"):
        CampaignConfig(pretrain_task="dielectric", pretrain_epochs=0)
    with pytest.raises(ValueError, match="task"):
        CampaignConfig(pretrain_task="bandgap")


def test_select_on_reaches_the_trainer(records, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    original_fit = simulate.Trainer.fit

    def fit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(self.cfg.select_on)
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(simulate.Trainer, "fit", fit)
    cfg = replace(CFG, strategies=("ranking",), select_on="val_spearman", seed_size=20)
    run_campaign(cfg, records)
    assert seen == ["val_spearman"]
    with pytest.raises(ValueError, match="unknown select_on 'val_typo'; valid: val_fnorm"):
        CampaignConfig(select_on="val_typo")


def test_curated_campaign_never_labels_or_offers_an_implausible_record(records) -> None:  # type: ignore[no-untyped-def]
    """``curate``: the records the curation rule names (|e|_F > 30 C/m²) are neither seed
    labels, held-out records nor pool candidates, also when the caller passes the records."""
    from atomate2_gmt.data.curation import curate

    raw = simulate.campaign_records(CampaignConfig())
    _, removed = curate(raw)
    assert set(removed) == {"mp-33319", "mp-557873"}  # Pr3NF6 and a P1 SiO2 cell
    kept = simulate.curated_records(CampaignConfig(curate=True), raw)
    assert len(kept) == len(raw) - 2
    assert not {r.id for r in kept} & set(removed)
    bad = [r for r in raw if r.id in removed]
    c = simulate._Campaign(replace(CFG, curate=True), [*records[:30], *bad])
    assert len(c.data.records) == 30
    assert not {r.id for r in c.data.records} & set(removed)
    with pytest.raises(ValueError, match="needs >= 3 validation records"):
        CampaignConfig(select_on="val_spearman", seed_size=10)
