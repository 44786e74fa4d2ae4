"""The relaxation funnel: atomate2's ForceFieldRelaxMaker with real CHGNet relaxes a strained
crystal (energy down, forces below fmax, the prediction made on the relaxed structure), and the
whole funnel flow (screen → shortlist → relax → known phases → predict again → rank) runs with
jobflow's run_locally on a few structures: generated candidates are ranked only once relaxed,
each with its MLIP stability estimate, and the unrelaxed documents point to the relaxed ones."""

from __future__ import annotations

import numpy as np
import pytest
from jobflow import JobStore, run_locally
from maggma.stores import MemoryStore
from pymatgen.core import Lattice, Structure

from atomate2_gmt.candidates import Candidate
from atomate2_gmt.flows.funnel import GMTFunnelMaker
from atomate2_gmt.flows.screen import GMTScreenMaker
from atomate2_gmt.jobs.predict import predict_documents
from atomate2_gmt.jobs.relax import DEFAULT_FMAX, default_relax_maker, relaxation_record
from atomate2_gmt.query import query_candidates
from atomate2_gmt.routing import KIND_KEY
from atomate2_gmt.schemas.prediction import GMTPredictionDoc, RelaxationInfo
from atomate2_gmt.stores import candidate_store
from tests.screening.conftest import SmallModelPredictMaker
from tests.structures import NACL, ZNO

pytestmark = pytest.mark.slow  # real CHGNet relaxations on the CPU (about a minute each test)


def _stretched(structure: Structure, factor: float) -> Structure:
    out = structure.copy()
    out.scale_lattice(structure.volume * factor)
    return out


def test_chgnet_relaxation_of_stretched_zno_and_the_prediction_on_it():
    stretched = _stretched(ZNO, 1.25)
    maker = default_relax_maker()
    job = maker.make(stretched)
    doc = run_locally(job, ensure_success=True, log=False)[job.uuid][1].output
    relaxed, info = relaxation_record(doc, maker, stretched, "input-id")
    record = RelaxationInfo(**info)
    assert record.potential == "CHGNet"
    assert record.potential_version == "0.3.0"  # the weights shipped in the chgnet package
    assert record.energy_per_atom < record.initial_energy_per_atom - 0.05  # energy goes down
    assert record.converged is True
    assert record.max_force < DEFAULT_FMAX  # forces below the criterion
    assert record.fmax == DEFAULT_FMAX
    assert record.optimizer == "BFGS"
    assert record.volume_change < -0.1  # a 25 % stretched cell shrinks back
    forces = np.linalg.norm(np.asarray(doc.output.forces), axis=1)
    assert record.max_force == pytest.approx(float(forces.max()))
    # wurtzite stays wurtzite, near DFT's (PBE) volume of ZnO (~49.5 Å^3 per 4 atoms)
    assert relaxed.get_space_group_info()[1] == 186
    assert 45 < relaxed.volume < 53

    # the prediction is made on the relaxed structure and the document says how it got there
    predict = SmallModelPredictMaker(tasks=("piezo",), workers=0, model_workers=0)
    [out] = predict_documents(predict, [Candidate(source="zno", structure=relaxed)]).documents
    out["relaxation"] = info
    pred = GMTPredictionDoc.model_validate(out)
    assert pred.relaxation is not None
    assert pred.relaxation.energy_per_atom == record.energy_per_atom
    assert Structure.from_dict(pred.structure).volume == pytest.approx(relaxed.volume)


def test_funnel_flow_relaxes_the_shortlist_and_ranks_only_relaxed_generated_crystals(project):
    # two generated (hypothetical) crystals: rock-salt ZnO and a stretched wurtzite GaN; one
    # structure file with a known stretched cell (NaCl)
    rocksalt_zno = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.4), ["Zn", "O"], [[0, 0, 0], [0.5] * 3]
    )
    gan = _stretched(ZNO, 1.1)
    gan.replace_species({"Zn": "Ga", "O": "N"})
    generated = {"generator": "test substitution", "prototype": "mp-2133"}
    candidates = [
        Candidate(source="gen:ZnO-rs", structure=rocksalt_zno, provenance=dict(generated)),
        Candidate(source="gen:GaN", structure=gan, provenance=dict(generated)),
        Candidate(source="nacl", structure=_stretched(NACL, 1.15)),
    ]
    maker = GMTFunnelMaker(
        screen_maker=GMTScreenMaker(
            predict_maker=SmallModelPredictMaker(
                tasks=("piezo", "elastic"), workers=0, model_workers=0
            ),
            top=5,
        ),
        shortlist=3,
    )
    flow = maker.make(candidates)
    job_store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    run_locally(flow, ensure_success=True, log=False, store=job_store)
    out = job_store.get_output(flow.jobs[-1].uuid, which="last", load=True)
    funnel = out["funnel"]
    assert funnel["potential"] == "CHGNet 0.3.0"
    assert funnel["n_shortlisted"] == 3  # top 3 per property, the union
    assert funnel["n_relaxed"] == 3
    assert funnel["n_predicted"] == 3
    assert funnel["failures"] == []
    assert funnel["n_known_phases"] >= 4  # shipped Ga, N2, GaN; ZnO polymorphs ...
    assert funnel["relaxation_time_s"] > 0

    store = candidate_store()
    store.connect()
    docs = list(store.query({}))
    assert len(docs) == 6  # three inputs, three relaxed
    relaxed = [d for d in docs if d.get("relaxation")]
    unrelaxed = [d for d in docs if not d.get("relaxation")]
    assert {d["source"] for d in relaxed} == {"gen:ZnO-rs", "gen:GaN", "nacl"}
    by_id = {d["prediction_id"]: d for d in docs}
    for doc in relaxed:
        info = doc["relaxation"]
        old = by_id[info["input_prediction_id"]]
        assert old["relaxed_prediction_id"] == doc["prediction_id"]
        assert info["energy_per_atom"] <= info["initial_energy_per_atom"]
        assert Structure.from_dict(doc["structure"]).volume != pytest.approx(
            Structure.from_dict(old["structure"]).volume
        )
        assert doc["hypothetical"] is (doc["source"] != "nacl" or None)
        assert doc["energy_above_hull"] is None  # never an MLIP number under emmet's name
    for doc in unrelaxed:
        assert doc["relaxed_prediction_id"] is not None
    # rock-salt ZnO against the shipped wurtzite/zinc-blende ZnO: above the hull, labelled
    zno = next(d for d in relaxed if d["source"] == "gen:ZnO-rs")
    assert zno["mlip_energy_above_hull"] > 0.02
    assert zno["stability_source"].startswith("MLIP estimate: CHGNet 0.3.0 vs ")

    # the ranking: relaxed documents only, each row with its stability fields
    for task, rows in out["ranking"].items():
        assert rows, task
        for row in rows:
            assert row["relaxed"] == "CHGNet 0.3.0"
            assert "stability_source" in row
            assert "mlip_energy_above_hull" in row
    # a plain query shows the relaxed document of each crystal, never its superseded input
    rows = query_candidates(store, "elastic", top=10)
    assert {r["prediction_id"] for r in rows} == {d["prediction_id"] for d in relaxed}
    rows = query_candidates(store, "elastic", top=10, include_superseded=True)
    assert len(rows) == 6


def _run_funnel(maker: GMTFunnelMaker, candidates: list[Candidate]) -> tuple[dict, list[str]]:
    """The funnel's final output and the names of the relaxation jobs that ran, selected in the
    job store by the metadata the funnel sets on them (``KIND_KEY: relax``)."""
    flow = maker.make(candidates)
    job_store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    run_locally(flow, ensure_success=True, log=False, store=job_store)
    kind = {f"metadata.{KIND_KEY}": "relax"}
    relaxed = [doc["name"] for doc in job_store.query(kind, properties=["name", "metadata"])]
    return job_store.get_output(flow.jobs[-1].uuid, which="last", load=True), relaxed


def test_a_rerun_reuses_the_stored_relaxations(project):
    """Run twice on the same store: the second run shortlists the same crystals, relaxes none
    of them again (their stored relaxations have the same input, potential and settings) and
    ranks the same documents; a different potential setting relaxes again."""
    rocksalt_zno = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.4), ["Zn", "O"], [[0, 0, 0], [0.5] * 3]
    )
    candidates = [
        Candidate(source="gen:ZnO-rs", structure=rocksalt_zno, provenance={"generator": "t"}),
        Candidate(source="nacl", structure=_stretched(NACL, 1.15)),
    ]
    screen = GMTScreenMaker(
        predict_maker=SmallModelPredictMaker(tasks=("elastic",), workers=0, model_workers=0),
        top=5,
    )
    maker = GMTFunnelMaker(screen_maker=screen, shortlist=2, stability=False)
    first, ran_first = _run_funnel(maker, candidates)
    assert sorted(name.split()[-1] for name in ran_first) == ["gen:ZnO-rs", "nacl"]
    assert {name.split()[1] for name in ran_first} == {"1/2", "2/2"}  # numbered for progress
    assert first["funnel"]["n_relaxed"] == 2
    assert first["funnel"]["n_reused"] == 0

    second, ran_second = _run_funnel(maker, candidates)
    assert ran_second == []  # nothing relaxed again
    assert second["funnel"]["n_reused"] == 2
    assert second["funnel"]["n_relaxed"] == 2
    assert second["funnel"]["n_predicted"] == 2
    assert second["funnel"]["relaxation_time_s"] == 0
    ids = {t: [r["prediction_id"] for r in rows] for t, rows in first["ranking"].items()}
    assert {t: [r["prediction_id"] for r in rows] for t, rows in second["ranking"].items()} == ids
    store = candidate_store()
    store.connect()
    assert store.count({}) == 4  # two inputs, two relaxed: nothing new stored

    # another force criterion is another relaxation: run again
    other = default_relax_maker()
    other.relax_kwargs = {**other.relax_kwargs, "fmax": 0.1}
    third, ran_third = _run_funnel(
        GMTFunnelMaker(screen_maker=screen, shortlist=2, stability=False, relax_maker=other),
        candidates,
    )
    assert len(ran_third) == 2
    assert third["funnel"]["n_reused"] == 0
