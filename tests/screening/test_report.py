"""Prediction vs DFPT report on a real VASP DFPT result (NaCl) and real model predictions."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from atomate2_gmt.cli.app import app
from atomate2_gmt.jobs.feedback import apply_feedback
from atomate2_gmt.jobs.predict import predict_documents
from atomate2_gmt.report import dfpt_comparison, write_report
from atomate2_gmt.stores import candidate_store, training_store
from tests.jobs.conftest import vasp_dfpt_doc
from tests.screening.conftest import SmallModelPredictMaker


def test_report_compares_prediction_with_dfpt(project, tmp_path):
    nacl = vasp_dfpt_doc("NaCl_phonons_dielectric")
    maker = SmallModelPredictMaker(tasks=("dielectric", "dielectric_total", "piezo"))
    structure = nacl.get_structure()
    [doc] = predict_documents(maker, [structure]).documents
    cands = candidate_store()
    cands.connect()
    cands.update([doc], key="prediction_id")
    nacl = nacl.model_copy(update={"candidate_id": doc["prediction_id"]})
    out = apply_feedback(nacl, training_store(), cands)
    assert out["state"] == "accepted"

    rows = dfpt_comparison(cands)
    assert sorted(r["task"] for r in rows) == ["dielectric", "dielectric_total", "piezo"]
    for r in rows:
        pred = np.asarray(doc["predictions"][r["task"]]["voigt"])
        dfpt = np.asarray(r["voigt_dfpt"])
        assert r["fnorm"] == np.linalg.norm(pred - dfpt)
        assert r["pred_symmetry_residual"] < 1e-6  # the prediction is exactly m-3m
        assert r["dfpt_symmetry_residual"] < 1e-3
        assert r["pred_zero_success"]
    eps = next(r for r in rows if r["task"] == "dielectric")
    np.testing.assert_allclose(np.diag(eps["voigt_dfpt"])[:3], 2.524485, atol=1e-5)
    piezo = next(r for r in rows if r["task"] == "piezo")
    assert piezo["fnorm"] < 1e-6  # centrosymmetric: both exactly zero

    paths = write_report(rows, tmp_path / "rep")
    assert "| NaCl | m-3m | dielectric | vasp |" in paths["md"].read_text()
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"

    result = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert "3 comparisons" in result.output


def _piezo_only_candidate_with_dfpt():
    """NaCl screened for piezo only, then a DFPT result with ε∞, ε0 and e (as AlP had)."""
    nacl = vasp_dfpt_doc("NaCl_phonons_dielectric")
    maker = SmallModelPredictMaker(tasks=("piezo",))
    [doc] = predict_documents(maker, [nacl.get_structure()]).documents
    cands = candidate_store()
    cands.connect()
    cands.update([doc], key="prediction_id")
    nacl = nacl.model_copy(update={"candidate_id": doc["prediction_id"]})
    assert apply_feedback(nacl, training_store(), cands)["state"] == "accepted"
    return cands


def test_report_says_why_a_dfpt_part_was_not_compared(project, tmp_path):
    cands = _piezo_only_candidate_with_dfpt()
    missing: list[dict] = []
    rows = dfpt_comparison(cands, missing=missing)
    assert [r["task"] for r in rows] == ["piezo"]
    assert rows[0]["prediction"] == "screening"
    assert [(m["task"], m["reason"]) for m in missing] == [
        ("dielectric", "not predicted: the screening predicted piezo"),
        ("dielectric_total", "not predicted: the screening predicted piezo"),
    ]
    paths = write_report(rows, tmp_path / "rep", missing)
    text = paths["md"].read_text()
    assert "Parts not compared:" in text
    assert "| NaCl | dielectric | not predicted: the screening predicted piezo |" in text
    assert json.loads(paths["json"].read_text())["missing"] == missing


def test_report_predicts_the_missing_parts_on_demand(project, tmp_path):
    cands = _piezo_only_candidate_with_dfpt()
    missing: list[dict] = []
    rows = dfpt_comparison(cands, predict_missing=True, missing=missing)
    assert missing == []
    by_task = {r["task"]: r for r in rows}
    assert sorted(by_task) == ["dielectric", "dielectric_total", "piezo"]
    assert by_task["piezo"]["prediction"] == "screening"
    # the shipped models (settings MODELS default: pretrained) predict NaCl's ε∞ near DFPT's 2.5
    assert by_task["dielectric"]["prediction"].startswith("on demand (gmtnet-dielectric")
    assert by_task["dielectric"]["rel_error"] < 0.5
    assert by_task["dielectric"]["pred_symmetry_residual"] < 1e-6

    result = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert "3 comparisons (2 predicted on demand), 0 parts not compared" in result.output
    result = CliRunner().invoke(
        app, ["report", "--out", str(tmp_path / "cli2"), "--no-predict-missing"]
    )
    assert result.exit_code == 0, result.output
    assert "1 comparisons (0 predicted on demand), 2 parts not compared" in result.output
    assert "not predicted: the screening predicted piezo" in result.output
