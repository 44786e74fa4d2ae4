"""The stored form of a prediction document: one canonical tensor form per task, the other forms
computed when a document is read.

A :class:`~atomate2_gmt.schemas.prediction.GMTPredictionDoc` in memory carries each task's
tensor in three forms (``tensor``, ``voigt``, ``voigt_ieee``) and its ``derived`` quantities. The
store keeps (:func:`compact_prediction_dict`):

- per task, ``voigt`` alone: the standard Voigt form in the structure's Cartesian frame, exact
  for a tensor with its kind's intrinsic index symmetry (ε_ij = ε_ji, e_ijk = e_ikj, C_ijkl =
  C_jikl = C_ijlk; every prediction has it) — no ``tensor``, ``voigt_ieee``, ``derived`` or
  ``time_s`` (the latter is the document's ``timings``);
- the rotation to the structure's IEEE 176 frame once per document (``ieee_rotation``), from
  which ``voigt_ieee`` follows;
- the structure without what pymatgen recomputes from the rest (Cartesian site coordinates,
  lattice parameters and volume, empty site properties, labels equal to the element): a dict
  that ``Structure.from_dict`` reads back to the same structure.

:func:`expand_prediction_dict` restores the read form: ``tensor``, ``voigt_ieee``, ``derived``
and ``time_s`` of every successful task, computed from ``voigt`` and ``ieee_rotation``. Top-level
fields (the derived scalars, the figures of merit, symmetry, source values) are stored as they
are: queries filter and sort on them without expanding anything.

numpy only (no pymatgen, no emmet): the query layer may call it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from atomate2_gmt.schemas.derived import derived_quantities
from atomate2_gmt.tensors.conventions import full_to_voigt, kind_of, rotate, voigt_to_full

__all__ = [
    "READ_ONLY_TASK_FIELDS",
    "compact_prediction_dict",
    "compact_structure_dict",
    "expand_prediction_dict",
]

READ_ONLY_TASK_FIELDS: tuple[str, ...] = ("tensor", "voigt_ieee", "derived", "time_s")
"""Fields of a task's prediction that are computed on read, never stored."""

_LATTICE_KEPT = ("matrix", "pbc")


def compact_structure_dict(structure: dict[str, Any] | None) -> dict[str, Any] | None:
    """A pymatgen ``Structure.as_dict()`` without what ``Structure.from_dict`` recomputes."""
    if not isinstance(structure, dict) or "lattice" not in structure or "sites" not in structure:
        return structure
    out = {k: v for k, v in structure.items() if k not in ("lattice", "sites")}
    if not out.get("properties"):
        out.pop("properties", None)
    lattice = structure["lattice"]
    out["lattice"] = {k: lattice[k] for k in _LATTICE_KEPT if k in lattice}
    sites = []
    for site in structure["sites"]:
        kept = {k: v for k, v in site.items() if k not in ("xyz", "label", "properties")}
        if site.get("properties"):
            kept["properties"] = site["properties"]
        species = site.get("species") or []
        default_label = (
            species[0].get("element")
            if len(species) == 1
            and species[0].get("occu") == 1
            and "oxidation_state" not in species[0]
            else None
        )
        if "label" in site and site["label"] != default_label:
            kept["label"] = site["label"]
        sites.append(kept)
    out["sites"] = sites
    return out


def compact_prediction_dict(doc: dict[str, Any]) -> dict[str, Any]:
    """The stored form of a prediction document's dict (a new dict; ``doc`` is not changed):
    per task ``voigt`` only (``tensor`` turned into it where ``voigt`` is missing), the
    structure compacted. ``voigt_ieee`` is kept where ``doc`` has no ``ieee_rotation`` field
    (None there: no IEEE frame). Compacting a compact document changes nothing."""
    out = dict(doc)
    predictions = {}
    # without the rotation (a document of another form), voigt_ieee could not be recomputed
    dropped = READ_ONLY_TASK_FIELDS if "ieee_rotation" in doc else ("tensor", "derived", "time_s")
    for task, pred in (doc.get("predictions") or {}).items():
        if not isinstance(pred, dict):
            predictions[task] = pred
            continue
        kept = {k: v for k, v in pred.items() if k not in dropped}
        if kept.get("voigt") is None and pred.get("tensor") is not None:
            kind = kind_of(task)
            kept["voigt"] = full_to_voigt(np.asarray(pred["tensor"], float), kind).tolist()
        predictions[task] = kept
    out["predictions"] = predictions
    if "structure" in out:
        out["structure"] = compact_structure_dict(out["structure"])
    return out


def expand_prediction_dict(doc: dict[str, Any]) -> dict[str, Any]:
    """The read form of a stored prediction document (a new dict): each successful task's
    ``tensor`` (from ``voigt``), ``voigt_ieee`` (with the document's ``ieee_rotation``; None
    without one), ``derived`` quantities and ``time_s`` (from ``timings``). A document that
    already carries its tensors, or a projection without ``voigt``, is returned as it is."""
    predictions = doc.get("predictions")
    if not isinstance(predictions, dict):
        return doc
    rotation = doc.get("ieee_rotation")
    R = None if rotation is None else np.asarray(rotation, dtype=float)
    timings = doc.get("timings") or {}
    expanded = {}
    for task, pred in predictions.items():
        if (
            not isinstance(pred, dict)
            or pred.get("tensor") is not None
            or pred.get("voigt") is None
            or pred.get("state") != "successful"
        ):
            expanded[task] = pred
            continue
        kind = kind_of(task)
        tensor = voigt_to_full(np.asarray(pred["voigt"], dtype=float), kind)
        full = dict(pred)
        full["tensor"] = tensor.tolist()
        full["voigt_ieee"] = None if R is None else full_to_voigt(rotate(tensor, R), kind).tolist()
        if "derived" not in pred:
            full["derived"] = _finite(derived_quantities(task, tensor, R))
        if "time_s" not in pred:
            full["time_s"] = timings.get(task)
        expanded[task] = full
    return {**doc, "predictions": expanded}


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe derived values (non-finite floats as None, as the stored fields)."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, float) and not np.isfinite(v):
            v = None
        out[k] = v
    return out
