"""A jobflow-remote prediction job that dies: the candidate store stays consistent and the
re-run predicts only what is missing (Runner, local worker, the real MongoDB server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_jobflow_remote import _errors, _run_all, _states
from tests.feedback_docs import feedback_doc

pytestmark = pytest.mark.slow

N_STRUCTURES = 7
CHUNK_SIZE = 5  # chunk 0: structures 0-4 (parts of 2, 2, 1), chunk 1: structures 5-6
PART_SIZE = 2


def _store_docs() -> list[dict]:
    from atomate2_gmt.stores import candidate_store

    store = candidate_store()
    store.connect()
    try:
        return list(store.query({}))
    finally:
        store.close()


def test_prediction_job_that_dies_is_resumed_by_a_rerun(jf_project, tmp_path):
    """Chunk 0 dies (os._exit) after upserting its first part; ``rerun_job`` + the Runner then
    complete the flow, predicting only chunk 0's missing structures."""
    pytest.importorskip("atomate2_gmt.flows.screen")
    import torch
    from jobflow_remote import submit_flow
    from pymatgen.core import Lattice, Structure
    from remote_jobs import DiesOncePredictMaker
    from tests.tiny_model import TINY

    from atomate2_gmt.flows.screen import GMTScreenMaker
    from atomate2_gmt.model.checkpoint import save_checkpoint
    from atomate2_gmt.model.config import GMTNetConfig
    from atomate2_gmt.model.gmtnet import GMTNet
    from atomate2_gmt.schemas.run import PredictionRunDoc

    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", GMTNet(GMTNetConfig(task="piezo", **TINY)))
    structures = [
        Structure.from_spacegroup("F-43m", Lattice.cubic(a), ["Zn", "S"], [[0] * 3, [0.25] * 3])
        for a in (5.2, 5.3, 5.4, 5.5, 5.6, 5.7, 5.8)
    ]
    assert len(structures) == N_STRUCTURES
    marker = tmp_path / "crashed.json"
    maker = GMTScreenMaker(
        predict_maker=DiesOncePredictMaker(
            tasks=("piezo",),
            models={"piezo": str(checkpoint)},
            part_size=PART_SIZE,
            workers=0,
            crash_marker=str(marker),
        ),
        chunk_size=CHUNK_SIZE,
        top=N_STRUCTURES,
    )
    flow = maker.make(structures)
    chunk0, chunk1, rank = flow.jobs
    assert (chunk0.name, chunk1.name) == ("gmt_predict_0", "gmt_predict_1")
    submit_flow(flow, worker="local", project=jf_project.name)

    # 1. the first run: chunk 0 dies after its first part is in the store
    seconds = _run_all(jf_project, max_seconds=480)
    states = _states(jf_project)
    print(f"first run: {seconds:.1f} s, states {states}")
    crash = json.loads(marker.read_text())
    assert crash["written"] == PART_SIZE
    assert states[chunk1.name] == "COMPLETED", _errors(jf_project)
    assert states[chunk0.name] in {"FAILED", "REMOTE_ERROR"}, states
    assert states[rank.name] == "WAITING"
    jc = jf_project.get_job_controller()
    info = jc.get_job_info(job_id=chunk0.uuid)
    print(f"chunk 0 after the crash: {info.state.value}: {info.remote.error or info.error}")
    docs = _store_docs()
    print(f"store after the crash: {len(docs)} documents")
    first_part = {f"structure-{i}" for i in range(PART_SIZE)}
    chunk1_sources = {f"structure-{i}" for i in range(CHUNK_SIZE, N_STRUCTURES)}
    assert sorted(d["source"] for d in docs) == sorted(first_part | chunk1_sources)
    assert len({d["structure_key"] for d in docs}) == len(docs)  # one document per structure
    assert len({d["prediction_id"] for d in docs}) == len(docs)
    assert all(d["state"] == "successful" for d in docs)
    kept = {d["source"]: (d["_id"], d["last_updated"]) for d in docs if d["source"] in first_part}
    job_store = jf_project.get_jobstore()
    job_store.connect()
    try:
        assert job_store.query_one({"uuid": chunk0.uuid}) is None  # no output of the dead job
    finally:
        job_store.close()

    # 2. re-run the dead job the way a user does (jf job rerun), run the Runner again
    modified = jc.rerun_job(job_id=chunk0.uuid)
    print(f"rerun_job modified {modified}")
    assert jc.get_job_info(job_id=chunk0.uuid).state.value == "READY"
    seconds = _run_all(jf_project, max_seconds=480)
    states = _states(jf_project)
    print(f"re-run: {seconds:.1f} s, states {states}")
    assert set(states.values()) == {"COMPLETED"}, _errors(jf_project)

    docs = _store_docs()
    print(f"store after the re-run: {len(docs)} documents")
    assert sorted(d["source"] for d in docs) == sorted(f"structure-{i}" for i in range(7))
    assert len({d["structure_key"] for d in docs}) == N_STRUCTURES
    assert len({d["prediction_id"] for d in docs}) == N_STRUCTURES
    assert all(d["state"] == "successful" for d in docs)
    # the first part was not predicted or written again: same documents, same timestamps
    again = {d["source"]: (d["_id"], d["last_updated"]) for d in docs if d["source"] in first_part}
    assert again == kept
    job_store = jf_project.get_jobstore()
    job_store.connect()
    try:
        summary = PredictionRunDoc.model_validate(job_store.get_output(chunk0.uuid, load=True))
        ranking = job_store.get_output(flow.output.uuid, load=True)
    finally:
        job_store.close()
    print(f"chunk 0 re-run summary: n={summary.n} skipped={summary.n_skipped} "
          f"written={summary.written}")  # fmt: skip
    assert summary.n == CHUNK_SIZE
    assert summary.n_skipped == PART_SIZE  # already in the store: not predicted again
    assert summary.written == CHUNK_SIZE - PART_SIZE
    assert summary.n_successful == CHUNK_SIZE
    assert len(set(summary.all_prediction_ids())) == CHUNK_SIZE
    assert ranking["n"] == N_STRUCTURES
    assert ranking["n_successful"] == N_STRUCTURES
    assert len(ranking["ranking"]["piezo"]) == N_STRUCTURES


RETRAIN = {"task": "dielectric", "batch_size": 16, "device": "cpu", "warmup_epochs": 0}


def test_retrain_job_that_dies_resumes_and_registers_one_version(jf_project, tmp_path):
    """gmt_retrain dies (os._exit) after epoch 1's state.pt: no version is registered; the
    re-run resumes state.pt at epoch 1 and registers (and promotes) exactly one version."""
    pytest.importorskip("atomate2_gmt.jobs.retrain")
    import torch
    from jobflow_remote import submit_flow
    from remote_jobs import DiesOnceRetrainMaker
    from tests.tiny_model import TINY

    from atomate2_gmt.jobs.feedback import write_training_docs
    from atomate2_gmt.jobs.retrain import heldout_set
    from atomate2_gmt.model.checkpoint import save_checkpoint
    from atomate2_gmt.model.config import GMTNetConfig
    from atomate2_gmt.model.gmtnet import GMTNet
    from atomate2_gmt.registry import ModelRegistry
    from atomate2_gmt.stores import registry_blob_store, training_store

    task = RETRAIN["task"]
    torch.manual_seed(0)
    tiny = save_checkpoint(tmp_path / "tiny.pt", GMTNet(GMTNetConfig(task=task, **TINY)))
    with ModelRegistry() as registry:
        v1 = registry.register(tiny, task, metrics_set="untrained")
        registry.promote(v1.model_id, "test: an untrained tiny model")
    train = heldout_set(task)[0]
    store = training_store()
    store.connect()
    try:
        write_training_docs(store, [feedback_doc(r, task) for r in train[-5:]])
    finally:
        store.close()

    def registry_state() -> tuple[list[str], str, int]:
        with ModelRegistry() as registry:
            versions = [v.version for v in registry.list_versions(task)]
            promoted = registry.promoted(task).version
        blobs = registry_blob_store()
        blobs.connect()
        try:
            return versions, promoted, blobs.count()
        finally:
            blobs.close()

    epochs = 3
    marker = tmp_path / "retrain_crashed.json"
    job = DiesOnceRetrainMaker(
        **RETRAIN, epochs=epochs, lr=0.1, base_limit=32, crash_marker=str(marker)
    ).make()
    submit_flow(job, worker="local", project=jf_project.name)

    # 1. the first run dies after epoch 1: nothing registered, state.pt of epoch 1 kept
    seconds = _run_all(jf_project, max_seconds=600)
    states = _states(jf_project)
    print(f"retrain first run: {seconds:.1f} s, states {states}")
    assert json.loads(marker.read_text())["epoch"] == 1
    assert states == {"gmt_retrain": "FAILED"}, _errors(jf_project)
    assert registry_state() == (["dielectric-v1"], "dielectric-v1", 1)
    (run_dir,) = (tmp_path / "gmt_project" / "retrain").iterdir()
    state = torch.load(run_dir / "state.pt", weights_only=True)
    assert state["epoch"] == 1
    assert not Path(f"{marker}.resumed").exists()

    # 2. jf job rerun + the Runner: resumes at epoch 1, registers exactly one version
    jc = jf_project.get_job_controller()
    jc.rerun_job(job_id=job.uuid)
    seconds = _run_all(jf_project, max_seconds=600)
    states = _states(jf_project)
    print(f"retrain re-run: {seconds:.1f} s, states {states}")
    assert states == {"gmt_retrain": "COMPLETED"}, _errors(jf_project)
    assert Path(f"{marker}.resumed").read_text().split() == ["1"]  # resumed, not restarted
    history = json.loads((run_dir / "log.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))
    job_store = jf_project.get_jobstore()
    job_store.connect()
    try:
        out = job_store.get_output(job.uuid, load=True)
    finally:
        job_store.close()
    print(f"retrain output: {out['version']} promoted={out['promoted']} {out['reason']}")
    assert out["version"] == "dielectric-v2"
    assert out["run_dir"] == str(run_dir)
    versions, promoted, n_blobs = registry_state()
    assert versions == ["dielectric-v1", "dielectric-v2"]
    assert n_blobs == 2  # one weights blob per version, no orphan
    assert promoted == ("dielectric-v2" if out["promoted"] else "dielectric-v1")
