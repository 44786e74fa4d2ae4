"""Textbook piezoelectrics of the shipped MP set: does a piezo model get their magnitudes?

A user's first check of a piezo model is a crystal they know. These are the well-known
piezoelectrics among the shipped MP piezo records (mp-id → label); the figure is the ratio of
the predicted to the DFT Frobenius norm |e|_F of the full tensor (C/m², frame-free), and a
crystal passes within a factor of 2 (0.5 ≤ ratio ≤ 2). Most of them fall in the training
split, so this checks that the model reproduces what it was shown, not that it generalises; the
report names each crystal's split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from atomate2_gmt.data.records import TensorRecord
from atomate2_gmt.model.tensor_model import TensorModel
from atomate2_gmt.training.trainer import predict_prepared, prepare_records

__all__ = ["TEXTBOOK_PIEZO", "textbook_ratios"]

TEXTBOOK_PIEZO: dict[str, str] = {
    "mp-2133": "ZnO (wurtzite)",
    "mp-804": "GaN (wurtzite)",
    "mp-1700": "AlN (zinc blende)",
    "mp-2653": "BN (wurtzite)",
    "mp-1639": "BN (zinc blende)",
    "mp-672": "CdS (wurtzite)",
    "mp-2469": "CdS (zinc blende)",
    "mp-8883": "GaAs (wurtzite)",
    "mp-2534": "GaAs (zinc blende)",
    "mp-12992": "BaTiO3 (P4mm)",
    "mp-4342": "KNbO3 (P4mm)",
    "mp-7375": "KNbO3 (R3m)",
    "mp-3666": "LiTaO3 (R3c)",
    "mp-6930": "SiO2 (α-quartz)",
}
"""mp-id → label of the textbook piezoelectrics in ``mp_legacy_piezo.json.gz``."""


def textbook_ratios(
    model: TensorModel,
    records: Sequence[TensorRecord],
    splits: dict[str, str] | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """|pred|_F / |DFT|_F for each textbook crystal found in ``records`` (a piezo model).

    ``splits``: record id → split name, reported beside each crystal. Returns ``crystals``
    (label, split, DFT and predicted |e|_F in C/m², ratio) and ``within_factor_2`` (the share
    of the crystals with 0.5 ≤ ratio ≤ 2)."""
    if model.config.task != "piezo":
        raise ValueError(f"textbook ratios are for piezo models, got {model.config.task!r}")
    chosen = [r for r in records if r.id in TEXTBOOK_PIEZO]
    if not chosen:
        return {"crystals": {}, "within_factor_2": float("nan")}
    prepared = prepare_records(chosen, model.config)
    pred = predict_prepared(model, prepared, batch_size)
    crystals: dict[str, Any] = {}
    for record, tensor in zip(prepared.records, pred, strict=True):
        true_norm = float(np.linalg.norm(record.tensor))
        pred_norm = float(np.linalg.norm(tensor))
        crystals[record.id] = {
            "label": TEXTBOOK_PIEZO[record.id],
            "split": (splits or {}).get(record.id),
            "dft_norm": true_norm,
            "pred_norm": pred_norm,
            "ratio": pred_norm / true_norm if true_norm > 0 else float("nan"),
        }
    ratios = np.array([c["ratio"] for c in crystals.values()])
    return {
        "crystals": crystals,
        "within_factor_2": float(((ratios >= 0.5) & (ratios <= 2.0)).mean()),
    }
