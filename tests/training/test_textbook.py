"""Textbook piezoelectrics: |pred|_F / |DFT|_F of the shipped piezo model on crystals users know."""

from __future__ import annotations

import numpy as np
import pytest

from atomate2_gmt.data.mp import load_mp
from atomate2_gmt.model.predict import predict
from atomate2_gmt.pretrained import pretrained_path
from atomate2_gmt.training.textbook import TEXTBOOK_PIEZO, textbook_ratios


def test_textbook_ratios_of_the_shipped_piezo_model():
    from atomate2_gmt.model.checkpoint import load_checkpoint

    model, _ = load_checkpoint(pretrained_path("piezo"))
    records = load_mp("piezo").records
    out = textbook_ratios(model, records, {"mp-2133": "val"})
    crystals = out["crystals"]
    assert set(crystals) == set(TEXTBOOK_PIEZO)  # every textbook crystal is in the shipped set
    zno = crystals["mp-2133"]
    assert zno["label"] == "ZnO (wurtzite)"
    assert zno["split"] == "val"
    assert crystals["mp-804"]["split"] is None
    by_id = {r.id: r for r in records}
    assert zno["dft_norm"] == pytest.approx(float(np.linalg.norm(by_id["mp-2133"].tensor)))
    # the same number as the public predict() of the same model on the same structure
    tensor = np.asarray(predict([by_id["mp-2133"].structure], "piezo", model=model)[0]["tensor"])
    assert zno["pred_norm"] == pytest.approx(float(np.linalg.norm(tensor)), rel=1e-5)
    ratios = np.array([c["ratio"] for c in crystals.values()])
    assert out["within_factor_2"] == pytest.approx(float(((ratios >= 0.5) & (ratios <= 2)).mean()))


def test_textbook_ratios_are_for_piezo_models():
    from atomate2_gmt.model.checkpoint import load_checkpoint

    model, _ = load_checkpoint(pretrained_path("dielectric"))
    with pytest.raises(ValueError, match="textbook ratios are for piezo models, got 'dielectric'"):
        textbook_ratios(model, [])
