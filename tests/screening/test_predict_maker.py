"""GMTPredictMaker: one job, all tasks, documents that agree with predict(), bad inputs alone."""

from __future__ import annotations

import numpy as np
import pytest
from jobflow import run_locally

from atomate2_gmt.engine import structure_facts
from atomate2_gmt.model.predict import predict, predict_many
from atomate2_gmt.schemas.prediction import compute_ieee_rotation
from atomate2_gmt.schemas.run import PredictionRunDoc
from atomate2_gmt.tensors.symmetry import point_group_operations
from atomate2_gmt.tensors.symmetry.analysis import structure_key
from tests.screening.conftest import (
    LOADS,
    TEST_TASKS,
    SmallModelPredictMaker,
    bad_inputs,
    small_model,
)


def _run(job):
    responses = run_locally(job, ensure_success=True, log=False)
    return responses[job.uuid][1].output


def test_predict_many_equals_predict_per_task(good_structures):
    models = {t: small_model(t) for t in TEST_TASKS}
    many = predict_many(good_structures, models)
    assert set(many.timings) == {"prepare", *TEST_TASKS}
    assert all(info is not None for info in many.point_groups)
    for task, model in models.items():
        single = predict(good_structures, task, model=model)
        for a, b in zip(many.results[task], single, strict=True):
            assert a["state"] == b["state"] == "successful"
            np.testing.assert_allclose(a["tensor"], b["tensor"], rtol=1e-6, atol=1e-9)


def test_one_job_all_tasks_documents_match_predict(good_structures):
    job = SmallModelPredictMaker(tasks=TEST_TASKS, batch_size=4).make(good_structures)
    docs = _run(job).documents
    assert len(docs) == len(good_structures)
    assert sorted(LOADS) == sorted(TEST_TASKS)  # each model loaded once for the whole batch
    for task in TEST_TASKS:
        expected = predict(good_structures, task, model=small_model(task))
        # float32: the job's model workers run one thread each, in batches of their own, and take
        # the point group from the structure key's spglib search (the same group, operations in
        # another order): equal to round-off of the task's largest component (a tensor the
        # point group forbids is 0 or ~1e-40 of round-off)
        scale = max(np.abs(e["tensor"]).max() for e in expected)
        for doc, exp in zip(docs, expected, strict=True):
            pred = doc["predictions"][task]
            assert pred["state"] == "successful"
            np.testing.assert_allclose(pred["tensor"], exp["tensor"], rtol=1e-6, atol=1e-7 * scale)
            assert pred["model"]["name"] == f"small-{task}"
    for doc, structure in zip(docs, good_structures, strict=True):
        assert doc["state"] == "successful"
        assert doc["error"] is None
        assert doc["model_version"] == "test-1"
        assert doc["prediction_id"] == f"{doc['structure_key']}:test-1"
        assert doc["symmetry"]["point_group"]
        assert doc["e_ij_max"] is not None
        assert doc["K_VRH"] is not None
        # physics: the stored elastic tensor is invariant under the crystal's point group
        C = np.asarray(doc["predictions"]["elastic"]["tensor"])
        for R in point_group_operations(structure):
            rotated = np.einsum("ia,jb,kc,ld,abcd->ijkl", R, R, R, R, C)
            np.testing.assert_allclose(rotated, C, atol=1e-6 * np.abs(C).max())


def test_bad_inputs_fail_alone_with_their_reason(good_structures, tmp_path):
    bad = bad_inputs()
    unreadable = tmp_path / "broken.cif"
    unreadable.write_text("data_x\n_cell_length_a nonsense\n")
    inputs = [good_structures[0], *(s for s, _ in bad.values()), str(unreadable)]
    docs = _run(SmallModelPredictMaker(tasks=("dielectric", "piezo")).make(inputs)).documents
    assert len(docs) == len(inputs)
    assert docs[0]["state"] == "successful"
    for doc, (name, (_, reason)) in zip(docs[1:], bad.items(), strict=False):
        assert doc["state"] == "failed", name
        assert reason in doc["error"], (name, doc["error"])
        assert doc["predictions"]["piezo"]["state"] == "failed"
    assert docs[-1]["state"] == "failed"
    assert "unreadable structure file" in docs[-1]["error"]
    assert docs[-1]["source"] == "broken.cif"


def test_summary_output_and_store_write(good_structures, project):
    from atomate2_gmt.stores import candidate_store

    maker = SmallModelPredictMaker(
        tasks=("dielectric",), write_to_store=True, return_documents=False
    )
    out = _run(maker.make(good_structures[:4]))
    assert isinstance(out, PredictionRunDoc)  # the job's output_schema
    assert (out.n, out.n_successful, out.written, out.documents) == (4, 4, 4, [])
    assert out.tasks == ["dielectric"]
    assert out.device == "cpu"
    store = candidate_store()
    store.connect()
    assert store.count() == 4
    assert sorted(store.distinct("prediction_id")) == sorted(out.prediction_ids)


def test_unknown_task_and_missing_model_are_clear_errors(tmp_path):
    from atomate2_gmt.jobs.predict import GMTPredictMaker, predict_documents

    with pytest.raises(ValueError, match="unknown or no tasks"):
        SmallModelPredictMaker(tasks=("bandgap",)).resolve_tasks()
    maker = GMTPredictMaker(tasks=("piezo",), models={"piezo": str(tmp_path / "none.pt")})
    with pytest.raises(ValueError, match=r"model for task 'piezo': checkpoint .*none.pt"):
        predict_documents(maker, [])


def test_pipelined_parts_in_a_worker_equal_in_process(good_structures, tmp_path):
    from atomate2_gmt.jobs.predict import predict_documents

    broken = tmp_path / "broken.cif"
    broken.write_text("not a cif")
    inputs = [*good_structures[:5], str(broken), *good_structures[5:8]]
    serial = SmallModelPredictMaker(tasks=("dielectric", "piezo"), workers=0, part_size=4)
    piped = SmallModelPredictMaker(tasks=("dielectric", "piezo"), workers=1, part_size=4)
    a, b = predict_documents(serial, inputs).documents, predict_documents(piped, inputs).documents
    assert [d["prediction_id"] for d in a] == [d["prediction_id"] for d in b]
    assert [d["source"] for d in b][5] == "broken.cif"
    assert [d["source"] for d in b][6] == "structure-6"  # named by place in the whole input
    for x, y in zip(a, b, strict=True):
        assert x["state"] == y["state"]
        if x["state"] == "successful":
            assert (
                x["predictions"]["piezo"]["voigt_ieee"] == y["predictions"]["piezo"]["voigt_ieee"]
            )
            assert x["e_ij_max"] == y["e_ij_max"]


def test_ensemble_mean_tensor_and_spread_feed_ucb_selection(good_structures, tmp_path):
    import copy
    from dataclasses import dataclass

    import torch

    from atomate2_gmt.jobs.predict import predict_documents
    from atomate2_gmt.jobs.select import SelectionPolicy, select_candidates
    from atomate2_gmt.stores import EmbeddedStore, upsert_predictions
    from atomate2_gmt.tensors.properties import piezo_max_eij

    base = small_model("piezo")
    other = copy.deepcopy(base)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * p.abs().mean() * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    members = {"a": base, "b": other}

    @dataclass
    class EnsembleMaker(SmallModelPredictMaker):
        def load_spec(self, task, spec):
            return members[spec], {"name": f"m-{spec}", "version": spec, "checkpoint_hash": spec}

    structures = good_structures[:6]
    docs = predict_documents(
        EnsembleMaker(tasks=("piezo",), ensemble={"piezo": ["a", "b"]}), structures
    ).documents
    single = {k: predict(structures, "piezo", model=m) for k, m in members.items()}
    for i, doc in enumerate(docs):
        ta, tb = (np.asarray(single[k][i]["tensor"]) for k in "ab")
        np.testing.assert_allclose(doc["predictions"]["piezo"]["tensor"], (ta + tb) / 2, atol=1e-9)
        ea, eb = piezo_max_eij(ta)[0], piezo_max_eij(tb)[0]
        assert doc["uncertainty"]["e_ij_max"] == pytest.approx(abs(ea - eb) / 2, abs=1e-9)
        assert doc["model_version"].startswith("ens2-")
    assert any(d["uncertainty"]["e_ij_max"] > 0 for d in docs)

    store = EmbeddedStore(str(tmp_path / "s.sqlite"), "p", key="prediction_id")
    upsert_predictions(store, docs)
    kappa = 50.0
    picks = select_candidates(
        store, SelectionPolicy(query="piezo", top_k=2, strategy="ucb", kappa=kappa, max_sites=None)
    )
    scores = sorted(
        (d["e_ij_max"] + kappa * d["uncertainty"]["e_ij_max"] for d in docs), reverse=True
    )
    assert [p["e_ij_max"] + kappa * p["uncertainty"]["e_ij_max"] for p in picks] == (
        pytest.approx(scores[:2])
    )


def test_parts_start_short_and_cover_every_input_once():
    from atomate2_gmt.engine import FIRST_PART_SIZE, _parts

    items = list(range(700))
    parts = _parts(items, 256)
    assert [len(p) for _, p in parts] == [FIRST_PART_SIZE, 256, 256, 700 - FIRST_PART_SIZE - 512]
    assert [x for _, p in parts for x in p] == items
    assert all(p[0] == start for start, p in parts)  # the first index of each part
    assert _parts(items[:5], 2) == [(0, [0, 1]), (2, [2, 3]), (4, [4])]
    assert _parts([], 256) == []


def test_model_workers_equal_in_process_and_keep_input_order(good_structures, tmp_path):
    """Forked model workers (one torch thread each) give the in-process documents, in order."""
    from atomate2_gmt import engine as job
    from atomate2_gmt.engine import _Context, _model_pool, close_model_pool
    from atomate2_gmt.jobs.predict import predict_documents

    broken = tmp_path / "broken.cif"
    broken.write_text("not a cif")
    inputs = [*good_structures[:3], str(broken), *good_structures[3:]]
    kwargs = {"tasks": ("dielectric", "elastic"), "batch_size": 2, "workers": 0}
    serial = SmallModelPredictMaker(model_workers=0, **kwargs)
    forked = SmallModelPredictMaker(model_workers=2, **kwargs)
    ctx = _Context(("dielectric",), {}, {}, "v", 0.01, "cpu", 2)
    pool = _model_pool(forked, ctx, len(inputs))
    assert pool is not None  # this input does go through the model workers
    assert _model_pool(forked, ctx, len(inputs)) is pool  # the same models: warm workers reused
    close_model_pool()
    assert job._POOL["pool"] is None
    assert _model_pool(serial, ctx, len(inputs)) is None
    assert _model_pool(forked, _Context(("dielectric",), {}, {}, "v", 0.01, "cuda", 2), 99) is None
    a, b = predict_documents(serial, inputs).documents, predict_documents(forked, inputs).documents
    first_pool = job._POOL["pool"]
    assert first_pool is not None  # kept for the next job with the same models
    c = predict_documents(forked, inputs).documents
    assert job._POOL["pool"] is first_pool
    assert [d["prediction_id"] for d in c] == [d["prediction_id"] for d in b]
    close_model_pool()
    assert [d["source"] for d in a] == [d["source"] for d in b]
    assert b[3]["state"] == "failed"
    assert b[3]["error"] == a[3]["error"]
    assert [x["prediction_id"] for x in a] == [y["prediction_id"] for y in b]
    for task in ("dielectric", "elastic"):
        t, u = (
            np.array([d["predictions"][task]["tensor"] for d in docs if d["state"] == "successful"])
            for docs in (a, b)
        )
        # float32 batches of other compositions: agreement to ~1e-6 of the largest prediction
        np.testing.assert_allclose(u, t, rtol=0, atol=1e-5 * np.abs(t).max())


def test_a_run_with_every_structure_stored_starts_no_model_workers(good_structures, monkeypatch):
    """The model workers start with the first part that has something to predict: a re-run of
    stored structures skips them all without preparing the workers (a new one does start)."""
    from atomate2_gmt import engine
    from atomate2_gmt.jobs.predict import predict_documents

    started: list[int] = []
    real = engine._model_pool

    def counted(*args, **kwargs):
        started.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "_model_pool", counted)
    maker = SmallModelPredictMaker(
        tasks=("dielectric",), write_to_store=True, model_workers=2, batch_size=2, workers=0
    )
    try:
        first = predict_documents(maker, good_structures[:5])
        assert (first.n_successful, first.n_skipped, len(started)) == (5, 0, 1)
        again = predict_documents(maker, good_structures[:5])
        assert (again.n, again.n_skipped, again.written, len(started)) == (5, 5, 0, 1)
        more = predict_documents(maker, good_structures[:6])
        assert (more.n_skipped, more.written, len(started)) == (5, 1, 2)
    finally:
        engine.close_model_pool()


def test_structure_facts_equal_the_separate_key_and_ieee_computations(good_structures, tmp_path):
    files = []
    for i, s in enumerate(good_structures):
        path = tmp_path / f"s{i}.cif"
        s.to(filename=str(path))
        files.append(str(path))
    broken = tmp_path / "broken.cif"
    broken.write_text("data_x\n_cell_length_a nonsense\n")
    disordered = bad_inputs()["disordered"][0]
    facts = structure_facts([*files, str(broken), disordered, *good_structures[:2]], 0, 0.01)
    assert [f for c, f in facts if c.state != "successful"] == [{}, {}]
    for cand, fact in facts:
        if cand.state != "successful":
            continue
        s = cand.structure
        assert fact["structure_key"] == structure_key(s, 0.01)
        expected = compute_ieee_rotation(s)
        assert isinstance(fact["ieee_rotation"], np.ndarray)
        np.testing.assert_array_equal(fact["ieee_rotation"], expected)
