"""Flows run by jobflow-remote's Runner (local worker) against the real MongoDB server."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.slow


def _run_all(project, max_seconds: int) -> float:
    from jobflow_remote.jobs.runner import Runner

    runner = Runner(project_name=project.name)
    t0 = time.perf_counter()
    try:
        runner.run_all_jobs(max_seconds=max_seconds)
    finally:
        runner.cleanup()
    return time.perf_counter() - t0


def _states(project) -> dict[str, str]:
    jc = project.get_job_controller()
    return {info.name: info.state.value for info in jc.get_jobs_info()}


def _errors(project) -> str:
    jc = project.get_job_controller()
    out = []
    for info in jc.get_jobs_info():
        if info.state.value != "COMPLETED":
            job = jc.get_job_doc(db_id=info.db_id)
            out.append(f"{info.name}: {info.state.value} {info.error or ''} {job.remote.error}")
    return "\n".join(out)


def test_two_job_flow_completes_with_gridfs_data(jf_project):
    from jobflow import Flow
    from jobflow_remote import submit_flow
    from remote_jobs import add, table

    first = add(1, 2)
    second = table(first.output, 0.5)
    ids = submit_flow(Flow([first, second]), worker="local", project=jf_project.name)
    assert len(ids) == 2
    seconds = _run_all(jf_project, max_seconds=240)
    print(f"2-job flow ran in {seconds:.1f} s")
    assert _states(jf_project) == {"add": "COMPLETED", "table": "COMPLETED"}, _errors(jf_project)
    store = jf_project.get_jobstore()
    store.connect()
    try:
        assert store.get_output(first.uuid) == 3
        out = store.get_output(second.uuid, load=True)
        assert out["n"] == 3
        assert out["values"] == [0.0, 0.5, 1.0]
        raw = store.query_one({"uuid": second.uuid})
        assert "@class" in str(raw["output"]["values"])  # a reference, not the data itself
        assert store.additional_stores["data"].count() == 1  # the values live in GridFS
    finally:
        store.close()


def test_screening_flow_with_registry_model(jf_project, tmp_path, monkeypatch):
    """3 structures → 2 gmt_predict jobs (a registry model fetched from GridFS) → gmt_rank."""
    pytest.importorskip("atomate2_gmt.flows.screen")
    import torch
    from jobflow_remote import submit_flow
    from pymatgen.core import Lattice, Structure

    from atomate2_gmt.flows.screen import GMTScreenMaker
    from atomate2_gmt.jobs.predict import GMTPredictMaker
    from atomate2_gmt.model.checkpoint import save_checkpoint
    from atomate2_gmt.model.config import GMTNetConfig
    from atomate2_gmt.model.gmtnet import GMTNet
    from atomate2_gmt.registry import ModelRegistry
    from atomate2_gmt.remote import apply_worker_config, worker_assignment
    from atomate2_gmt.stores import candidate_store

    # the workers' settings choose the registry (GMTPredictMaker(models={"piezo": "registry"})
    # would need jobs/predict.py to pass its spec on to resolve_model_spec)
    monkeypatch.setenv("ATOMATE2_GMT_MODELS", '{"piezo": "registry"}')
    torch.manual_seed(0)
    tiny = GMTNetConfig(task="piezo", node_dim=16, rbf_bins=16, n_invariant_layers=1,
                        n_equivariant_layers=1, scalar_mul=8, vector_mul=2, out_mul=2,
                        radial_hidden=8, k_neighbors=4)  # fmt: skip
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", GMTNet(tiny))
    with ModelRegistry() as registry:  # the settings of the environment: the test server
        doc = registry.register(checkpoint, "piezo", {"fnorm": 1.0})
        registry.promote(doc.model_id, "integration test")

    structures = [
        Structure.from_spacegroup("F-43m", Lattice.cubic(a), ["Zn", "S"], [[0] * 3, [0.25] * 3])
        for a in (5.3, 5.4, 5.5)
    ]
    maker = GMTScreenMaker(
        predict_maker=GMTPredictMaker(tasks=("piezo",)),
        chunk_size=2,
        top=3,
    )
    flow = maker.make(structures)
    apply_worker_config(flow, gmt_worker="local", dfpt_worker=None, gmt_resources={})
    assignment = worker_assignment(flow)
    assert set(assignment.values()) == {"local"}, assignment
    submit_flow(flow, worker="local", project=jf_project.name)
    seconds = _run_all(jf_project, max_seconds=480)
    print(f"screening flow ({len(assignment)} jobs) ran in {seconds:.1f} s")
    states = _states(jf_project)
    assert set(states.values()) == {"COMPLETED"}, _errors(jf_project)
    assert sorted(states) == sorted(assignment)
    store = candidate_store()
    store.connect()
    try:
        docs = list(store.query({}))
    finally:
        store.close()
    assert len(docs) == 3
    assert all(d["prediction_id"].endswith(d["model_version"]) for d in docs)
    job_store = jf_project.get_jobstore()
    job_store.connect()
    try:
        ranking = job_store.get_output(flow.output.uuid, load=True)
    finally:
        job_store.close()
    assert ranking["n"] == 3
    assert ranking["n_successful"] == 3
    assert ranking["tasks"] == ["piezo"]
    assert len(ranking["ranking"]["piezo"]) == 3
    assert "gmt_" in ranking["store"]  # the candidate store of the workers' settings
