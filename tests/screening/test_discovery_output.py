"""The discovery flow's output carries the DFPT results (not only the selection): a recorded
real VASP DFPT run of NaCl comes back through feedback into the flow's output, and a DFPT run
that dies is reported as failed; the output's query finds the same documents later."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from jobflow import Job, Maker, job, run_locally

from atomate2_gmt.flows.discovery import GMTDiscoveryMaker
from atomate2_gmt.flows.screen import GMTScreenMaker
from atomate2_gmt.jobs.select import SelectionPolicy
from atomate2_gmt.stores import candidate_store
from tests.jobs.conftest import vasp_dfpt_doc
from tests.screening.conftest import SmallModelPredictMaker

CASE = "NaCl_phonons_dielectric"


@job(name="recorded_vasp_dfpt")
def recorded_dfpt(candidate_id: str | None = None) -> Any:
    """The DFPTResultDoc of the recorded VASP run of NaCl (OUTCAR parsed as the backend does)."""
    return vasp_dfpt_doc(CASE, candidate_id=candidate_id)


@job(name="dead_dfpt")
def dead_dfpt(candidate_id: str | None = None) -> None:
    """A DFPT calculation that produced nothing."""
    return None


@dataclass
class RecordedDFPTMaker(Maker):
    """DFPT backend of this test: replays the recorded NaCl run (or dies, ``dies=True``)."""

    name: str = "recorded dfpt"
    code: str = "vasp"
    dies: bool = False

    def make(self, structure: Any, candidate_id: str | None = None) -> Job:
        return (dead_dfpt if self.dies else recorded_dfpt)(candidate_id=candidate_id)


def _run(tmp_path, dies: bool) -> tuple[Any, dict[str, Any]]:
    nacl = vasp_dfpt_doc(CASE).get_structure()
    maker = GMTDiscoveryMaker(
        screen_maker=GMTScreenMaker(
            predict_maker=SmallModelPredictMaker(tasks=("dielectric", "piezo")), top=3
        ),
        policy=SelectionPolicy(query="dielectric", top_k=1),
        dfpt_maker=RecordedDFPTMaker(dies=dies),
    )
    flow = maker.make([nacl])
    assert [j.name for j in flow.jobs[1:]] == ["gmt_select", "gmt_discovery_results"]
    responses = run_locally(flow, create_folders=True, root_dir=tmp_path, ensure_success=True)
    return flow, responses[flow.jobs[-1].uuid][1].output


def test_the_flow_output_carries_the_dfpt_results(project, tmp_path):
    flow, out = _run(tmp_path, dies=False)
    assert flow.output.uuid == flow.jobs[-1].uuid  # the flow's output is the results job's
    [pick] = out["selected"]
    assert pick["formula"] == "NaCl"
    [result] = out["results"]
    assert result["prediction_id"] == pick["prediction_id"]
    dfpt = result["dfpt"]
    assert dfpt["state"] == "accepted"
    assert dfpt["code"] == "vasp"
    eps = np.asarray(dfpt["tensors"]["dielectric"])
    np.testing.assert_allclose(np.diag(eps), 2.524485, atol=1e-5)  # the recorded OUTCAR's ε∞
    assert dfpt["training_record_ids"]
    assert (out["n_accepted"], out["n_rejected"], out["n_failed"], out["n_missing"]) == (1, 0, 0, 0)
    # the documented query gives the same result from the candidate store later
    store = candidate_store()
    store.connect()
    [doc] = list(store.query(out["query"]))
    assert doc["dfpt"]["tensors"]["dielectric"] == dfpt["tensors"]["dielectric"]
    assert out["query"] == {"prediction_id": {"$in": [pick["prediction_id"]]}}


def test_a_dfpt_run_that_dies_is_reported_in_the_output(project, tmp_path):
    _, out = _run(tmp_path, dies=True)
    [result] = out["results"]
    assert result["dfpt"]["state"] == "failed"
    assert result["dfpt"]["tensors"] in ({}, None)
    assert (out["n_accepted"], out["n_failed"]) == (0, 1)
