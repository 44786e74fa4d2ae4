"""``retrain`` and the registry: a no-op says that it registered the shipped model, and the
held-out set has one name, so ``models promote --compare-on`` works after a retrain."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from atomate2_gmt.cli.app import app
from atomate2_gmt.cli.retrain import outcome_line
from atomate2_gmt.jobs.feedback import write_training_docs
from atomate2_gmt.jobs.retrain import GMTRetrainMaker, retrain
from atomate2_gmt.registry import ModelRegistry, seed_from_pretrained
from atomate2_gmt.settings import GMTSettings
from atomate2_gmt.stores import training_store
from atomate2_gmt.training.heldout import heldout_set, heldout_set_name, shipped_metrics_set
from tests.feedback_docs import feedback_doc

TASK = "dielectric"
runner = CliRunner()


@pytest.fixture
def settings(tmp_path, monkeypatch) -> GMTSettings:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(tmp_path / "project"))
    for name in ("ATOMATE2_GMT_MONGO_URI", "ATOMATE2_GMT_REGISTRY_STORE"):
        monkeypatch.delenv(name, raising=False)
    return GMTSettings()


def test_noop_retrain_says_it_registered_the_shipped_model(settings) -> None:
    res = runner.invoke(app, ["retrain", "--task", TASK, "--if-new", "20"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith(f"{TASK}: the registry (sqlite://")
    assert lines[0].endswith(
        f"had no promoted {TASK} model: registered the shipped checkpoint as {TASK}-v1 and "
        "promoted it"
    )
    assert lines[1] == (
        f"{TASK}: 0 new training document(s) since {TASK}-v1, 20 needed; nothing to do"
    )
    assert "retraining" not in res.output
    again = runner.invoke(app, ["retrain", "--task", TASK, "--if-new", "20"])
    assert again.exit_code == 0, again.output
    assert "registered the shipped checkpoint" not in again.output  # only the first time
    assert again.output.startswith(f"{TASK}: 0 new training document(s) since {TASK}-v1")


@pytest.mark.parametrize("task", ["dielectric", "piezo"])
def test_seeded_version_carries_the_heldout_set_name(settings, task) -> None:
    with ModelRegistry(settings=settings) as registry:
        [doc] = seed_from_pretrained(registry, tasks=[task])
    name = heldout_set(task)[3]
    assert doc.metrics_set == name
    assert name.startswith(f"mp_legacy {task} seed-32 test split (n=")


def test_shipped_metrics_on_other_data_keep_a_name_of_their_own() -> None:
    train, _val, test, name = heldout_set(TASK)
    assert heldout_set_name(TASK, "mp", test) == name
    assert heldout_set_name(TASK, "mp", train) != name  # the name depends on the records
    other = {"training_data_hash": "0" * 64, "split_sizes": {"test": len(test)},
             "data": {"source": "mp_legacy (somewhere else)"}}  # fmt: skip
    assert shipped_metrics_set(TASK, other) == "shipped test split (mp_legacy (somewhere else))"


def test_outcome_line() -> None:
    noop = {"task": TASK, "version": None, "reason": "no-op: 0 new documents"}
    assert outcome_line(noop) == f"{TASK}: nothing retrained (no-op: 0 new documents)"
    done = {"task": TASK, "version": f"{TASK}-v2", "promoted": False, "reason": "worse"}
    assert outcome_line(done) == f"{TASK}: retrained → {TASK}-v2, registered, not promoted: worse"


def test_promote_compare_on_works_after_a_retrain(settings) -> None:
    train = heldout_set(TASK)[0]
    store = training_store(settings)
    store.connect()
    try:
        write_training_docs(store, [feedback_doc(r, TASK) for r in train[-4:]])
    finally:
        store.close()
    maker = GMTRetrainMaker(task=TASK, epochs=1, lr=1e-4, batch_size=16, device="cpu",
                            warmup_epochs=0, base_limit=24, use_custodian=False)  # fmt: skip
    out = retrain(maker, settings)
    assert out["seeded"] is not None  # the shipped model became v1 for the comparison
    assert out["version"] == f"{TASK}-v2"
    with ModelRegistry(settings=settings) as registry:
        v1, v2 = registry.get(f"{TASK}-v1"), registry.get(f"{TASK}-v2")
        promoted = registry.promoted(TASK)
    assert v1.metrics_set == v2.metrics_set == out["metrics_set"]
    assert promoted is not None
    other = v1 if promoted.version == v2.version else v2
    res = runner.invoke(
        app, ["models", "promote", other.version, "--compare-on", "fnorm", "--reason", "test"]
    )
    assert "different held-out sets" not in res.output
    if other.metrics["fnorm"] <= promoted.metrics["fnorm"]:
        assert res.exit_code == 0, res.output
        assert res.output.startswith(f"promoted {other.version}")
    else:
        assert res.exit_code != 0
        assert f"refused: {other.version} has fnorm = " in res.output
        assert f"worse than the promoted {promoted.version}" in res.output
