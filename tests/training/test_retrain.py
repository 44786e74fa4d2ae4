"""Retraining: no-op without new data, promote when better, register-not-promote when worse,
the ``--if-new`` threshold and the cron lock (embedded stores in tmp_path, tiny model)."""

from __future__ import annotations

import pytest
import torch
from jobflow import run_locally
from tests.feedback_docs import feedback_doc
from tests.tiny_model import TINY
from typer.testing import CliRunner

from atomate2_gmt.cli.app import app
from atomate2_gmt.cli.retrain import retrain_lock
from atomate2_gmt.jobs.feedback import write_training_docs
from atomate2_gmt.jobs.retrain import GMTRetrainMaker, count_new_documents, heldout_set, retrain
from atomate2_gmt.model.checkpoint import save_checkpoint
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.gmtnet import GMTNet
from atomate2_gmt.registry import SEED_REASON, ModelRegistry
from atomate2_gmt.settings import GMTSettings
from atomate2_gmt.stores import training_store

TASK = "dielectric"
QUICK = {"task": TASK, "batch_size": 16, "device": "cpu", "warmup_epochs": 0, "base_limit": 96}


@pytest.fixture
def settings(tmp_path, monkeypatch) -> GMTSettings:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(tmp_path / "project"))
    monkeypatch.delenv("ATOMATE2_GMT_MONGO_URI", raising=False)
    return GMTSettings()


@pytest.fixture(scope="module")
def splits():
    return heldout_set(TASK)


def _add_docs(settings, records) -> None:
    store = training_store(settings)
    store.connect()
    try:
        write_training_docs(store, [feedback_doc(r, TASK) for r in records])
    finally:
        store.close()


def _promote_tiny(settings, tmp_path) -> str:
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "tiny.pt", GMTNet(GMTNetConfig(task=TASK, **TINY)))
    with ModelRegistry(settings=settings) as reg:
        doc = reg.register(path, TASK, metrics_set="untrained")
        reg.promote(doc.model_id, "test: an untrained tiny model")
    return doc.model_id


def test_no_new_data_is_a_noop_and_seeds_the_registry(settings):
    out = retrain(GMTRetrainMaker(**QUICK), settings)
    assert out["model_id"] is None
    assert out["promoted"] is False
    assert (
        out["reason"]
        == "no-op: 0 new dielectric training document(s) since dielectric-v1, 1 needed"
    )
    with ModelRegistry(settings=settings) as reg:
        seeded = reg.promoted(TASK)
        assert seeded.promotion_history[-1].reason == SEED_REASON
        assert len(reg.list_versions(TASK)) == 1


def test_retrain_promotes_when_better_and_registers_worse_without_promoting(
    settings, tmp_path, splits
):
    train, _val, heldout, metrics_set = splits
    v1 = _promote_tiny(settings, tmp_path)
    _add_docs(settings, [*train[-5:], heldout[0]])  # a held-out structure is never trained on
    counts = count_new_documents(TASK, settings)
    assert (counts["n_new"], counts["promoted"]) == (5, "dielectric-v1")

    # fine-tune the untrained model through jobflow (custodian subprocess): better → promoted
    maker = GMTRetrainMaker(**QUICK, epochs=2, lr=0.1)
    job = maker.make()
    assert job.name == "gmt_retrain"
    out = run_locally(job, ensure_success=True)[job.uuid][1].output
    assert out["promoted"] is True
    assert (out["n_new"], out["n_heldout_overlap"], out["parent"]) == (5, 1, v1)
    assert out["metrics_after"]["fnorm"] < out["metrics_before"]["fnorm"]
    assert out["metrics_after"]["n"] == len(heldout) == 90
    assert "is not worse than" in out["reason"]
    with ModelRegistry(settings=settings) as reg:
        v2 = reg.promoted(TASK)
        assert v2.model_id == out["model_id"]
        assert v2.version == "dielectric-v2"
        assert v2.parent == v1
        assert v2.metrics_set == metrics_set == out["metrics_set"]
        assert v2.training_data_size == 96 + 5
        assert v2.created_by.job_uuid == str(job.uuid)
        assert v2.promotion_history[-1].reason == out["reason"]
        assert v2.metrics["fnorm"] == pytest.approx(out["metrics_after"]["fnorm"])

    # the promoted model saw every document: nothing new
    again = retrain(maker, settings)
    assert again["reason"].startswith(
        "no-op: 0 new dielectric training document(s) since dielectric-v2"
    )

    # new documents, but a far too large learning rate: a worse model, registered, not promoted
    _add_docs(settings, train[-8:-5])
    bad = GMTRetrainMaker(**QUICK, epochs=1, lr=30.0, use_custodian=False)
    out3 = retrain(bad, settings)
    assert out3["promoted"] is False
    assert out3["n_new"] == 3
    assert out3["metrics_after"]["fnorm"] > out3["metrics_before"]["fnorm"]
    assert out3["reason"].startswith("not promoted: retrain (finetune, 3 new documents)")
    assert "is worse than" in out3["reason"]
    with ModelRegistry(settings=settings) as reg:
        assert reg.promoted(TASK).version == "dielectric-v2"
        v3 = reg.get(out3["model_id"])
        assert (v3.version, v3.promoted, v3.parent) == ("dielectric-v3", False, v2.model_id)
        assert v3.notes == out3["reason"]
        assert v3.promotion_history == []

    # the same data again: not retrained a second time
    dup = retrain(bad, settings)
    assert dup["model_id"] is None
    assert "dielectric-v3 was already trained on exactly this data" in dup["reason"]


def test_cli_if_new_threshold_and_lock(settings, splits):
    _add_docs(settings, splits[0][:4])
    runner = CliRunner()
    res = runner.invoke(app, ["retrain", "--task", TASK, "--if-new", "20"])
    assert res.exit_code == 0, res.output
    assert "dielectric: 4 new training document(s) since dielectric-v1, 20 needed" in res.output
    res = runner.invoke(app, ["retrain", "--task", TASK, "--if-new", "4", "--submit", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "4 new training document(s) since dielectric-v1 (≥ 4 needed)" in res.output
    assert "retraining" not in res.output
    assert "would submit flow gmt_retrain (1 job), not submitted" in res.output
    with retrain_lock(settings.PROJECT_DIR, TASK) as held:
        assert held
        res = runner.invoke(app, ["retrain", "--task", TASK, "--if-new", "1"])
    assert res.exit_code == 0
    assert "another retrain of dielectric is running (lock held); nothing done" in res.output


def test_fine_tuning_needs_a_model(settings, monkeypatch):
    # as for a task without a shipped checkpoint
    monkeypatch.setattr("atomate2_gmt.pretrained.available", lambda: ["dielectric", "piezo"])
    with pytest.raises(
        ValueError, match="no promoted 'elastic' model to fine-tune and none shipped"
    ):
        retrain(GMTRetrainMaker(task="elastic"), settings)
