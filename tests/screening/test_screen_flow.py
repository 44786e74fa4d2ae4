"""GMTScreenMaker: chunks → store → ranking; idempotent re-runs; store failures are loud."""

from __future__ import annotations

import uuid

import pytest
from jobflow import run_locally
from maggma.stores import MongoStore

from atomate2_gmt.flows.screen import GMTScreenMaker
from atomate2_gmt.stores import StoreConnectionError, candidate_store
from tests.screening.conftest import LOADS, SmallModelPredictMaker, bad_inputs


def _screen(maker, candidates, ensure_success=True):
    flow = maker.make(candidates)
    responses = run_locally(flow, ensure_success=ensure_success, log=False)
    return flow, responses


def test_chunks_store_and_ranking(good_structures):
    maker = GMTScreenMaker(
        predict_maker=SmallModelPredictMaker(tasks=("dielectric", "piezo")), chunk_size=3, top=4
    )
    candidates = [*good_structures, bad_inputs()["disordered"][0]]
    flow, responses = _screen(maker, candidates)
    names = [j.name for j in flow.jobs]
    assert names == [f"gmt_predict_{i}" for i in range(4)] + ["gmt_rank"]
    out = responses[flow.jobs[-1].uuid][1].output
    assert out["n"] == len(candidates)
    assert out["n_failed"] == 1
    assert out["failures"][0][0] == f"structure-{len(good_structures)}"  # global name
    store = candidate_store()
    store.connect()
    assert store.count() == len(candidates)
    for task, field in (("dielectric", "dielectric_eig_max"), ("piezo", "e_ij_max")):
        rows = out["ranking"][task]
        assert len(rows) == 4
        values = [r[field] for r in rows]
        assert values == sorted(values, reverse=True)
        best = max(d[field] for d in store.query({field: {"$ne": None}}, properties=[field]))
        assert values[0] == pytest.approx(best)

    # a second run of the same candidates replaces, never duplicates
    _screen(maker, candidates)
    store = candidate_store()
    store.connect()
    assert store.count() == len(candidates)


def test_unreachable_store_fails_before_any_prediction(good_structures):
    dead = MongoStore(
        database="x",
        collection_name="y",
        host="127.0.0.1",
        port=1,  # nothing listens there
        key="prediction_id",
        mongoclient_kwargs={"serverSelectionTimeoutMS": 500},
    )
    maker = GMTScreenMaker(predict_maker=SmallModelPredictMaker(tasks=("dielectric",)), store=dead)
    with pytest.raises(StoreConnectionError, match=r"cannot reach the store .*127.0.0.1:1"):
        maker.make(good_structures)
    assert LOADS == []


@pytest.mark.slow
def test_server_lost_mid_run_is_loud_and_a_rerun_completes(
    good_structures, mongo_server_factory, monkeypatch
):
    server = mongo_server_factory()
    monkeypatch.setenv("ATOMATE2_GMT_MONGO_URI", server.uri)
    monkeypatch.setenv("ATOMATE2_GMT_MONGO_DATABASE", f"gmt_{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("ATOMATE2_GMT_STORE_TIMEOUT_S", "1")

    class StopsTheServer(SmallModelPredictMaker):
        def load_model(self, task):
            if self.name.endswith("_1"):  # second chunk: store checked, then the server dies
                server.stop()
            return super().load_model(task)

    maker = GMTScreenMaker(predict_maker=StopsTheServer(tasks=("dielectric",)), chunk_size=4)
    flow, responses = _screen(maker, good_structures, ensure_success=False)
    chunk0, chunk1 = flow.jobs[0], flow.jobs[1]
    assert responses[chunk0.uuid][1].output.written == 4
    assert chunk1.uuid not in responses  # failed loudly: no output, the rank never ran
    assert flow.jobs[-1].uuid not in responses

    server.start()
    _screen(
        GMTScreenMaker(predict_maker=SmallModelPredictMaker(tasks=("dielectric",)), chunk_size=4),
        good_structures,
    )
    store = candidate_store()
    store.connect()
    assert store.count() == len(good_structures)
    assert len(store.distinct("prediction_id")) == len(good_structures)


def test_chunk_jobs_read_the_next_chunk_ahead_only_when_asked(tmp_path, good_structures):
    """``read_ahead=True`` gives each chunk job of files the next chunk's inputs (the last one
    none); the default (for jobflow-remote, one process per job) gives none; a chunk of
    structures in memory is never read ahead."""
    paths = []
    for n, s in enumerate(good_structures[:6]):
        paths.append(str(tmp_path / f"s{n}.cif"))
        s.to(filename=paths[-1])
    predict = SmallModelPredictMaker(tasks=("dielectric",))

    def read_ahead_of(flow):
        return [job.function.__self__.read_ahead for job in flow.jobs[:-1]]

    ahead = GMTScreenMaker(predict_maker=predict, chunk_size=2, read_ahead=True)
    assert read_ahead_of(ahead.make(paths)) == [paths[2:4], paths[4:6], None]
    assert (
        read_ahead_of(GMTScreenMaker(predict_maker=predict, chunk_size=2).make(paths)) == [None] * 3
    )
    in_memory = ahead.make(good_structures[:4])
    assert read_ahead_of(in_memory) == [None, None]
