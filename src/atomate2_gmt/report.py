"""Prediction vs DFPT: for every candidate with a DFPT result, how good was the prediction?

Reads the candidate store (documents with a ``dfpt`` field, written by the feedback job), and
per task compares the predicted tensor with the computed one, both full Cartesian in the
structure's frame: Fnorm and relative error (standard Voigt, tensor units), and the symmetry
pattern (the residual of each tensor outside the structure's point-group subspace, and whether
the prediction's symmetry-forbidden components are zero). Writes a Markdown table, JSON and a
parity plot (``atomate2-gmt report``).

A DFPT part whose task was never predicted for the candidate (e.g. a screening that asked only
for piezo, while the DFPT run also gave ε and C) or whose prediction failed is either predicted
on demand with the current models (``predict_missing``; the row says ``prediction: on demand``)
or listed under "Parts not compared" with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from atomate2_gmt.schemas.fields import PREDICTION_KEY
from atomate2_gmt.tensors.conventions import full_to_voigt, kind_of
from atomate2_gmt.tensors.metrics import fnorm, relative_error, symmetry_violation, zero_success
from atomate2_gmt.tensors.symmetry import point_group_operations, projector
from atomate2_gmt.tensors.tasks import task_spec

if TYPE_CHECKING:
    from maggma.core import Store

__all__ = ["dfpt_comparison", "document_comparison", "missing_parts", "write_report"]


def dfpt_comparison(
    store: Store,
    states: tuple[str, ...] = ("accepted",),
    predict_missing: bool = False,
    missing: list[dict[str, Any]] | None = None,
    predict_maker: Any = None,
) -> list[dict[str, Any]]:
    """One row per (candidate, task) with both a prediction and a DFPT tensor.

    ``states``: which DFPT outcomes to include (``accepted``; add ``rejected`` to see the
    results that failed validation). ``predict_missing``: a DFPT part without a successful
    prediction is predicted now with the current models (the settings' ``MODELS``) and compared
    too. ``missing``: a list that receives one row (prediction_id, formula, task, reason) per
    DFPT part left out. ``predict_maker``: the
    :class:`~atomate2_gmt.jobs.predict.GMTPredictMaker` of those predictions (default: one with
    the settings in force). Rows: see :func:`document_comparison`.
    """
    store.connect()
    rows = []
    criteria = {"dfpt.state": {"$in": list(states)}}
    maker = predict_maker
    from atomate2_gmt.schemas.stored import expand_prediction_dict

    for stored in store.query(criteria=criteria):
        doc = expand_prediction_dict(stored)  # the tensors as computed on read
        gaps = missing_parts(doc)
        if predict_missing and gaps:
            if maker is None:
                from atomate2_gmt.jobs.predict import GMTPredictMaker

                maker = GMTPredictMaker()
            doc, gaps = _predict_on_demand(doc, gaps, maker)
        rows.extend(document_comparison(doc))
        if missing is not None:
            missing.extend(gaps)
    return rows


def missing_parts(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The DFPT parts of one candidate document that have no successful prediction to compare
    with, each with the reason (never predicted, or the prediction failed)."""
    dfpt = doc.get("dfpt") or {}
    predictions = doc.get("predictions") or {}
    out = []
    for task in sorted(dfpt.get("tensors") or {}):
        pred = predictions.get(task) or {}
        if pred.get("state") == "successful":
            continue
        if not pred:
            asked = ", ".join(sorted(predictions)) or "no task"
            reason = f"not predicted: the screening predicted {asked}"
        else:
            reason = f"prediction failed: {pred.get('error') or 'no reason given'}"
        out.append(
            {
                PREDICTION_KEY: doc.get(PREDICTION_KEY),
                "formula": doc.get("formula_pretty"),
                "task": task,
                "reason": reason,
            }
        )
    return out


def _predict_on_demand(
    doc: dict[str, Any], gaps: list[dict[str, Any]], maker: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``doc`` with its missing parts predicted by ``maker``'s models (marked ``on_demand``), and
    the parts still missing (no model for the task, or the prediction failed) with the reason."""
    from pymatgen.core import Structure

    from atomate2_gmt.model.predict import predict

    structure = Structure.from_dict(doc["structure"])
    predictions = dict(doc.get("predictions") or {})
    left = []
    for gap in gaps:
        task = gap["task"]
        try:
            net, info = maker.load_model(task)
            [result] = predict([structure], task, model=net)
        except Exception as exc:  # no model for the task, unreadable checkpoint, ...
            left.append({**gap, "reason": f"{gap['reason']}; on demand: {exc}"})
            continue
        if result.get("state") != "successful":
            left.append({**gap, "reason": f"{gap['reason']}; on demand: {result.get('error')}"})
            continue
        version = info.get("version") or info.get("name")
        predictions[task] = {**result, "on_demand": f"on demand ({info.get('name')} {version})"}
    return {**doc, "predictions": predictions}, left


def document_comparison(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Prediction vs DFPT rows of one candidate document (none without a ``dfpt`` field).

    Rows: prediction_id, formula, point_group, task, code, dfpt_state, fnorm, rel_error,
    pred_symmetry_residual, dfpt_symmetry_residual, pred_zero_success, units, predicted and
    computed standard Voigt matrices (tensor units, the structure's frame).
    """
    from pymatgen.core import Structure

    from atomate2_gmt.schemas.stored import expand_prediction_dict

    dfpt = doc.get("dfpt") or {}
    if not dfpt.get("tensors"):
        return []
    doc = expand_prediction_dict(doc)  # a stored document keeps the Voigt form only
    structure = Structure.from_dict(doc["structure"])
    ops = point_group_operations(structure)
    rows = []
    for task, computed in sorted((dfpt.get("tensors") or {}).items()):
        pred = (doc.get("predictions") or {}).get(task) or {}
        if pred.get("state") != "successful":
            continue
        kind = kind_of(task)
        P = projector(kind, ops)
        p, t = np.asarray(pred["tensor"]), np.asarray(computed)
        rows.append(
            {
                PREDICTION_KEY: doc[PREDICTION_KEY],
                "formula": doc.get("formula_pretty"),
                "point_group": (doc.get("symmetry") or {}).get("point_group"),
                "task": task,
                "code": dfpt.get("code"),
                "dfpt_state": dfpt.get("state"),
                "fnorm": float(fnorm(p, t, kind)),
                "rel_error": float(relative_error(p, t, kind)),
                "pred_symmetry_residual": float(symmetry_violation(p, P)),
                "dfpt_symmetry_residual": float(symmetry_violation(t, P)),
                "pred_zero_success": bool(zero_success(p, P)),
                "prediction": pred.get("on_demand") or "screening",
                "units": task_spec(task).unit_label,
                "voigt_predicted": full_to_voigt(p, kind).tolist(),
                "voigt_dfpt": full_to_voigt(t, kind).tolist(),
            }
        )
    return rows


def _markdown(rows: list[dict[str, Any]], missing: list[dict[str, Any]] | None = None) -> str:
    lines = [
        "| formula | point group | task | code | Fnorm | rel. error | symmetry residual "
        "(pred / DFPT) | forbidden zeros (pred) | prediction |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['formula']} | {r['point_group']} | {r['task']} | {r['code']} | "
            f"{r['fnorm']:.3g} {r['units']} | {r['rel_error']:.1%} | "
            f"{r['pred_symmetry_residual']:.1e} / {r['dfpt_symmetry_residual']:.1e} | "
            f"{'yes' if r['pred_zero_success'] else 'no'} | {r.get('prediction', 'screening')} |"
        )
    if missing:
        lines += ["", "Parts not compared:", "", "| formula | task | reason |", "|---|---|---|"]
        lines += [f"| {m['formula']} | {m['task']} | {m['reason']} |" for m in missing]
    return "\n".join(lines) + "\n"


def write_report(
    rows: list[dict[str, Any]],
    out_dir: str | Path,
    missing: list[dict[str, Any]] | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and ``parity.png`` (one panel per task: every
    standard Voigt component, predicted vs DFPT) into ``out_dir``; returns the paths.
    ``missing``: the DFPT parts left out and why (:func:`missing_parts`), listed in the
    Markdown and in the JSON (``{"comparisons": rows, "missing": missing}`` when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "json": out / "report.json", "png": out / "parity.png"}
    paths["md"].write_text(_markdown(rows, missing))
    payload: Any = rows if missing is None else {"comparisons": rows, "missing": missing}
    paths["json"].write_text(json.dumps(payload, indent=1))
    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(4 * max(len(tasks), 1), 4))
    axes = np.atleast_1d(axes)
    for ax, task in zip(axes, tasks, strict=False):
        sub = [r for r in rows if r["task"] == task]
        x = np.concatenate([np.ravel(r["voigt_dfpt"]) for r in sub])
        y = np.concatenate([np.ravel(r["voigt_predicted"]) for r in sub])
        lim = float(max(np.abs(x).max(), np.abs(y).max(), 1e-9)) * 1.05
        ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
        ax.scatter(x, y, s=12)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        unit = task_spec(task).unit_label
        ax.set_xlabel(f"DFPT {unit}")
        ax.set_ylabel(f"GMTNet {unit}")
        ax.set_title(f"{task} ({len(sub)} materials)")
    if not tasks:
        axes[0].set_title("no candidate has an accepted DFPT result yet")
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=110)
    plt.close(fig)
    return paths
