"""GMTCampaignMaker: the round's jobs and their order, the registry model per round, the
recursion stopping at n_rounds, and two real rounds under run_locally (embedded stores, tiny
registered models, a DFPT maker whose calculations die, a retrain that promotes a new model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from jobflow import Flow, Job, Maker, Response, job, run_locally

from atomate2_gmt.data.mp import load_mp
from atomate2_gmt.flows.campaign import GMTCampaignMaker, campaign_advance
from atomate2_gmt.flows.discovery import GMTDiscoveryMaker
from atomate2_gmt.flows.screen import GMTScreenMaker
from atomate2_gmt.jobs import retrain as retrain_module
from atomate2_gmt.jobs.predict import GMTPredictMaker
from atomate2_gmt.jobs.retrain import GMTRetrainMaker
from atomate2_gmt.jobs.select import SelectionPolicy
from atomate2_gmt.model.checkpoint import save_checkpoint
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.gmtnet import GMTNet
from atomate2_gmt.registry import ModelRegistry
from atomate2_gmt.settings import GMTSettings
from atomate2_gmt.stores import candidate_store

TINY = {
    "node_dim": 16, "rbf_bins": 16, "n_invariant_layers": 1, "n_equivariant_layers": 1,
    "scalar_mul": 8, "vector_mul": 2, "out_mul": 2, "radial_hidden": 8, "k_neighbors": 4,
}  # fmt: skip


@job(name="fake_dfpt")
def dying_dfpt(structure: dict[str, Any], candidate_id: str | None = None) -> None:
    """A DFPT calculation that produces no result (the feedback marks the candidate failed)."""
    return None


@dataclass
class DyingDFPTMaker(Maker):
    """DFPT maker of the tests: no cost, no result."""

    name: str = "fake_dfpt"
    code: str = "abinit"

    def make(self, structure: Any, candidate_id: str | None = None) -> Job:
        return dying_dfpt(structure.as_dict(), candidate_id=candidate_id)


def _maker(n_rounds: int, top_k: int = 2) -> GMTCampaignMaker:
    predict = GMTPredictMaker(tasks=("piezo",), device="cpu", workers=0, batch_size=8)
    discovery = GMTDiscoveryMaker(
        screen_maker=GMTScreenMaker(predict_maker=predict, chunk_size=50, check_store=False),
        policy=SelectionPolicy(query="piezo", top_k=top_k, max_per_chemsys=5),
        dfpt_maker=DyingDFPTMaker(),
    )
    return GMTCampaignMaker(
        discovery_maker=discovery, retrain_maker=GMTRetrainMaker(task="piezo"), n_rounds=n_rounds
    )


@pytest.fixture(scope="module")
def structures() -> list[Any]:
    return [r.structure for r in load_mp("piezo").records[:6]]


def test_round_jobs_order_and_registry_model(structures) -> None:  # type: ignore[no-untyped-def]
    flow = _maker(3).make(structures)
    assert flow.name == "gmt_campaign_round_1"
    screen, select, retrain, advance = flow.jobs
    assert isinstance(screen, Flow)
    assert screen.name == "gmt_screen"
    assert [j.name for j in (select, retrain, advance)] == [
        "gmt_select_r1", "gmt_retrain_r1", "gmt_campaign_advance_r1",
    ]  # fmt: skip
    # every prediction job reads the task's model from the registry when it runs
    predict_jobs = [j for j in screen.jobs if j.name.startswith("gmt_predict")]
    assert predict_jobs
    for j in predict_jobs:
        assert j.function.__self__.models == {"piezo": "registry"}
    # order: select waits for the screen, retrain for the selection (and its DFPT detour),
    # advance for the retrain
    assert screen.jobs[-1].uuid in {r.uuid for r in select.input_references}
    assert select.uuid in {r.uuid for r in retrain.input_references}
    assert retrain.uuid in {r.uuid for r in advance.input_references}
    assert flow.output.uuid == advance.uuid


def test_recursion_adds_rounds_until_n_rounds(structures) -> None:  # type: ignore[no-untyped-def]
    maker = _maker(3)
    for k in (1, 2):
        response = campaign_advance.original(maker, structures, k, {"selected": []}, {})
        assert isinstance(response, Response)
        assert response.output["next_round"] == k + 1
        assert isinstance(response.addition, Flow)
        assert response.addition.name == f"gmt_campaign_round_{k + 1}"
        assert response.addition.jobs[-1].name == f"gmt_campaign_advance_r{k + 1}"
    last = campaign_advance.original(maker, structures, 3, {"selected": []}, {})
    assert last.addition is None
    assert last.output["next_round"] is None
    with pytest.raises(ValueError, match="round_index"):
        maker.make(structures, round_index=4)
    with pytest.raises(ValueError, match="n_rounds"):
        GMTCampaignMaker(discovery_maker=maker.discovery_maker, n_rounds=0).make(structures)
    with pytest.raises(ValueError, match="task"):
        GMTCampaignMaker(
            discovery_maker=maker.discovery_maker, retrain_maker=GMTRetrainMaker(task="elastic")
        ).make(structures)


@pytest.fixture
def settings(tmp_path, monkeypatch) -> GMTSettings:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(tmp_path / "project"))
    monkeypatch.delenv("ATOMATE2_GMT_MONGO_URI", raising=False)
    return GMTSettings()


def _register_tiny(settings: GMTSettings, path: Any, seed: int, versioned: bool) -> str:
    torch.manual_seed(seed)
    meta = {"version": f"tiny-{seed}"} if versioned else {}
    ckpt = save_checkpoint(path, GMTNet(GMTNetConfig(task="piezo", **TINY)), meta)
    with ModelRegistry(settings=settings) as reg:
        doc = reg.register(ckpt, "piezo", metrics_set="untrained")
        reg.promote(doc.model_id, f"test: tiny model, seed {seed}")
    return doc.model_id


@pytest.mark.parametrize("versioned", [True, False])
def test_two_rounds_run_locally(settings, structures, tmp_path, monkeypatch, versioned) -> None:  # type: ignore[no-untyped-def]
    """versioned: each promoted model has its own version label (documents per round);
    unversioned: round 2 re-writes the same documents (marks gone), and still never re-picks."""
    _register_tiny(settings, tmp_path / "m0.pt", 0, versioned)
    retrains: list[str] = []

    def fake_retrain(maker: GMTRetrainMaker) -> dict[str, Any]:
        n = len(retrains) + 1
        model_id = _register_tiny(settings, tmp_path / f"m{n}.pt", n, versioned)
        retrains.append(model_id)
        return {"task": maker.task, "model_id": model_id, "promoted": True}

    monkeypatch.setattr(retrain_module, "retrain", fake_retrain)  # what gmt_retrain runs
    flow = _maker(2).make(structures)
    responses = run_locally(flow, ensure_success=True)
    outputs = {r[1].output.get("round"): r[1].output for r in responses.values()
               if isinstance(r[1].output, dict) and "round" in r[1].output}  # fmt: skip
    assert sorted(outputs) == [1, 2]
    assert len(retrains) == 2
    assert outputs[1]["next_round"] == 2
    assert outputs[2]["next_round"] is None
    assert outputs[1]["retrain"]["model_id"] == retrains[0]
    picked = [[s["prediction_id"] for s in outputs[k]["selected"]] for k in (1, 2)]
    assert len(picked[0]) == 2
    assert len(picked[1]) == 2

    store = candidate_store(settings)
    store.connect()
    docs = list(store.query({}))
    store.close()
    by_id = {d["prediction_id"]: d for d in docs}
    # documents carry the registry's version label of the promoted model (whatever label the
    # checkpoint itself has): round 2 screened with the newly promoted model and selected from it
    versions = sorted({d["model_version"] for d in docs})
    assert versions == ["piezo-v1", "piezo-v2"]
    assert [by_id[p[0]]["model_version"] for p in picked] == versions
    keys = [set(outputs[k]["selected_keys"]) for k in (1, 2)]
    assert len(keys[0]) == 2
    assert not keys[0] & keys[1]
    assert set(outputs[2]["done_keys"]) == keys[0] | keys[1]
    for p in picked[1]:
        assert by_id[p]["dfpt"]["state"] == "failed"  # the dead DFPT was fed back


@pytest.mark.slow
def test_one_real_round_abinit_alp(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One real round: the shipped piezo model (seeded into the registry) screens AlP, ABINIT
    (LDA smoke preset) computes its piezo tensor, the feedback refuses it as training data (not
    production quality), and the retrain is a no-op that says so."""
    import shutil

    from atomate2_gmt.dfpt.abinit import AbinitDFPTMaker, smoke_settings
    from atomate2_gmt.registry import seed_from_pretrained
    from atomate2_gmt.stores import training_store

    if shutil.which("abinit") is None:
        pytest.skip("ABINIT is not installed")
    alp = next(r.structure for r in load_mp("piezo").records if r.id == "mp-1550")
    with ModelRegistry(settings=settings) as reg:
        seed_from_pretrained(reg, tasks=["piezo"])
    predict = GMTPredictMaker(tasks=("piezo",), device="cpu", workers=0)
    maker = GMTCampaignMaker(
        discovery_maker=GMTDiscoveryMaker(
            screen_maker=GMTScreenMaker(predict_maker=predict),
            policy=SelectionPolicy(query="piezo", top_k=1),
            dfpt_maker=AbinitDFPTMaker(
                properties=("piezo",), settings=smoke_settings(functional="LDA")
            ),
        ),
        retrain_maker=GMTRetrainMaker(
            task="piezo",
            epochs=1,
            base_limit=16,
            batch_size=16,
            device="cpu",
            warmup_epochs=0,
            use_custodian=False,
            tolerance=1e9,
        ),
        n_rounds=1,
    )
    flow = maker.make([alp])
    responses = run_locally(flow, root_dir=tmp_path / "run", create_folders=True, log=False)
    out = responses[flow.output.uuid][1].output
    assert out["round"] == 1
    assert out["next_round"] is None
    assert [s["formula"] for s in out["selected"]] == ["AlP"]
    assert out["retrain"]["n_new"] == 0
    assert out["retrain"]["promoted"] is False
    assert out["retrain"]["reason"].startswith("no-op: 0 new piezo training document(s)")
    store = training_store(settings)
    store.connect()
    assert store.count({"task": "piezo"}) == 0
    store.close()
