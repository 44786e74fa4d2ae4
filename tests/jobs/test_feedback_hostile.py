"""Hostile DFPT feedback: a result for another crystal, loose or missing accuracy settings, and
later bad submissions must never become training data or replace an accepted annotation."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from pymatgen.io.vasp import Incar, Kpoints

from atomate2_gmt.dfpt.validation import check_dfpt_result
from atomate2_gmt.jobs.feedback import apply_feedback
from tests.jobs.conftest import VASP_DATA, candidate_doc, vasp_dfpt_doc


def test_a_result_sent_with_another_candidates_id_is_refused_whole(stores) -> None:  # type: ignore[no-untyped-def]
    training, candidates = stores
    si = vasp_dfpt_doc("Si_dielectric")
    si_cand = candidate_doc(si)
    candidates.update([si_cand])
    # a valid NaCl result, sent with Si's candidate id and no structure key
    nacl = vasp_dfpt_doc("NaCl_phonons_dielectric").model_copy(
        update={"candidate_id": si_cand["prediction_id"], "structure_key": None}
    )
    out = apply_feedback(nacl, training, candidates)
    assert out["state"] == "rejected"
    (reason,) = out["reasons"]
    assert "the result's structure (NaCl, key" in reason
    assert f"is not the structure of candidate {si_cand['prediction_id']} (Si, key" in reason
    assert out["candidates_updated"] == []
    assert training.count() == 0
    stored = candidates.query_one({"prediction_id": si_cand["prediction_id"]})
    assert "dfpt" not in stored
    # the right result for the candidate is accepted
    ok = apply_feedback(
        si.model_copy(update={"candidate_id": si_cand["prediction_id"]}), training, candidates
    )
    assert ok["state"] == "accepted", ok["reasons"]


def test_vasp_results_below_the_precision_floors_never_become_training_data(stores) -> None:  # type: ignore[no-untyped-def]
    training, candidates = stores
    loose = vasp_dfpt_doc("NaCl_phonons_dielectric").model_copy(
        update={
            "settings": {
                "IBRION": 8,
                "LEPSILON": True,
                "ENCUT": 150,
                "KSPACING": 0.9,
                "EDIFF": 1e-2,
            }
        }
    )
    out = apply_feedback(loose, training, candidates)
    assert out["state"] == "rejected"
    assert training.count() == 0
    from atomate2_gmt.data.quality import MAX_VASP_EDIFF, MAX_VASP_KSPACING, MIN_VASP_ENCUT_EV

    reasons = check_dfpt_result(loose)
    assert reasons == [
        f"ENCUT 150 eV is below the production floor {MIN_VASP_ENCUT_EV:g} eV",
        f"EDIFF 0.01 eV is looser than the production {MAX_VASP_EDIFF:g}",
        f"k-point spacing 0.9 1/Å is above the production {MAX_VASP_KSPACING:g}",
    ]


def test_the_kpoint_spacing_of_a_real_vasp_mesh_is_measured_on_its_lattice() -> None:
    """NaCl_phonons_dielectric ran with a 4x4x4 Gamma mesh on its 8-atom cubic cell (its real
    INCAR and KPOINTS): |b| = 2π/a over 4 divisions is 0.28 1/Å, production; 2x2x2 is not."""
    from atomate2_gmt.data.quality import (
        MAX_VASP_KSPACING,
        production_problems,
        vasp_kpoint_spacing,
    )

    folder = VASP_DATA / "NaCl_phonons_dielectric" / "inputs"
    with gzip.open(folder / "INCAR.gz", "rt") as fh:
        incar = Incar.from_str(fh.read())
    with gzip.open(folder / "KPOINTS.gz", "rt") as fh:
        kpoints = Kpoints.from_str(fh.read())
    settings = {
        "ENCUT": incar["ENCUT"],
        "EDIFF": incar["EDIFF"],
        "kpoints": {"generation_style": "Gamma", "kpoints": [list(kpoints.kpts[0])]},
    }
    structure = vasp_dfpt_doc("NaCl_phonons_dielectric").get_structure()
    a = structure.lattice.a
    assert vasp_kpoint_spacing(settings, structure) == pytest.approx(2 * np.pi / a / 4)
    assert production_problems(settings, "vasp", structure) == []
    settings["kpoints"]["kpoints"] = [[2, 2, 2]]
    coarse = 2 * np.pi / a / 2
    assert production_problems(settings, "vasp", structure) == [
        f"k-point spacing {coarse:.3g} 1/Å is above the production {MAX_VASP_KSPACING:g}"
    ]


@pytest.mark.parametrize(
    ("code", "absent"),
    [
        ("abinit", "ecut, kpt_spacing or ngkpt, tolvrs_rf"),
        ("vasp", "ENCUT, EDIFF, KSPACING or kpoints"),
    ],
)
def test_a_result_without_accuracy_settings_is_refused(stores, code, absent) -> None:  # type: ignore[no-untyped-def]
    training, candidates = stores
    bare = vasp_dfpt_doc("NaCl_phonons_dielectric").model_copy(
        update={"code": code, "settings": {}}
    )
    out = apply_feedback(bare, training, candidates)
    assert out["state"] == "rejected"
    assert out["reasons"] == [
        f"the {code} accuracy settings are missing ({absent}): a result must record them to "
        "show it is production quality"
    ]
    assert training.count() == 0


def test_an_accepted_annotation_survives_later_rejected_and_failed_submissions(stores) -> None:  # type: ignore[no-untyped-def]
    training, candidates = stores
    nacl = vasp_dfpt_doc("NaCl_phonons_dielectric")
    cand = candidate_doc(nacl)
    candidates.update([cand])
    pid = cand["prediction_id"]
    good = nacl.model_copy(update={"candidate_id": pid})
    assert apply_feedback(good, training, candidates)["state"] == "accepted"
    rejected = good.model_copy(
        update={
            "settings": {"preset": "smoke", "ENCUT": 680, "EDIFF": 1e-5, "KSPACING": 0.22},
            "job_uuid": "later-smoke",
        }
    )
    assert apply_feedback(rejected, training, candidates)["state"] == "rejected"
    failed = good.model_copy(
        update={"state": "failed", "error": "VASP crashed", "job_uuid": "later-crash"}
    )
    assert apply_feedback(failed, training, candidates)["state"] == "failed"

    stored = candidates.query_one({"prediction_id": pid})
    assert stored["dfpt"]["state"] == "accepted"
    assert stored["dfpt"]["job_uuid"] == "uuid-NaCl_phonons_dielectric"
    history = stored["dfpt_history"]
    assert [h["state"] for h in history] == ["accepted", "rejected", "failed"]
    assert [h["job_uuid"] for h in history] == [
        "uuid-NaCl_phonons_dielectric",
        "later-smoke",
        "later-crash",
    ]
    assert "computed with the 'smoke' preset" in history[1]["reasons"][0]
    # the report (which compares the candidates whose dfpt is accepted) still finds it
    assert [d["prediction_id"] for d in candidates.query({"dfpt.state": "accepted"})] == [pid]
    # a later accepted result does replace it
    again = good.model_copy(update={"job_uuid": "rerun"})
    assert apply_feedback(again, training, candidates)["state"] == "accepted"
    stored = candidates.query_one({"prediction_id": pid})
    assert stored["dfpt"]["job_uuid"] == "rerun"
    assert len(stored["dfpt_history"]) == 4
