"""The prediction document: one per screened structure (and model version), emmet style.

A :class:`GMTPredictionDoc` carries emmet's structure metadata (formula, chemsys, elements,
composition, density, volume, ``symmetry``), the structure itself, its ``structure_key``, and
per task a :class:`TaskPrediction` with the predicted tensor in three forms:

- ``tensor``: full Cartesian tensor in the structure's own Cartesian frame (nested lists);
- ``voigt``: standard Voigt (xx, yy, zz, yz, xz, xy; tensor components, no factors of 2), same
  frame;
- ``voigt_ieee``: standard Voigt in the IEEE 176 frame of the structure (pymatgen's
  ``convert_to_ieee``), the frame the Materials Project reports tensors in.

Units: dielectric dimensionless, piezo C/m² (stress-charge e_iJ), elastic GPa. Derived scalars
(see :mod:`atomate2_gmt.schemas.fields`) are also flattened at top level for indexing/sorting.

:func:`key_and_ieee_rotation` gives a structure's key and its IEEE rotation from one
:class:`~atomate2_gmt.tensors.symmetry.analysis.SymmetryAnalysis` (the screening worker's
path); the results equal :func:`~atomate2_gmt.tensors.symmetry.analysis.structure_key` and
:func:`compute_ieee_rotation` (pymatgen), which the analysis falls back to wherever pymatgen's
own search could find a different dataset. :meth:`GMTPredictionDoc.from_predictions` takes the
key, the symmetry data and the IEEE rotation it is not given from one analysis too.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from emmet.core.structure import StructureMetadata
from emmet.core.symmetry import SymmetryData
from pydantic import BaseModel, Field
from pymatgen.core import Element, Structure

from atomate2_gmt import __version__
from atomate2_gmt.data.records import TASK_RANK, TASK_UNITS, TASKS
from atomate2_gmt.schemas.derived import derived_quantities
from atomate2_gmt.schemas.fields import DERIVED_FIELDS, FIGURE_FIELDS, PREDICTION_SCHEMA_VERSION
from atomate2_gmt.schemas.metallicity import likely_metal
from atomate2_gmt.schemas.stored import compact_prediction_dict
from atomate2_gmt.tensors.conventions import kind_of, voigt_to_full
from atomate2_gmt.tensors.symmetry.analysis import SymmetryAnalysis
from atomate2_gmt.tensors.symmetry.analysis import structure_key as compute_structure_key
from atomate2_gmt.tensors.symmetry.policy import SYMPREC

__all__ = [
    "DFPTFeedback",
    "DFPTSelection",
    "GMTPredictionDoc",
    "ModelInfo",
    "RelaxationInfo",
    "SourceProperties",
    "TaskPrediction",
    "compute_ieee_rotation",
    "derive_model_version",
    "figure_fields",
    "key_and_ieee_rotation",
    "metal_fields",
    "migrate_prediction_dict",
    "symmetry_facts",
]

State = Literal["successful", "failed"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SourceProperties(BaseModel):
    """What a candidate source knows of a crystal, under emmet's names and units; a field the
    source does not give stays None (nothing here is ever predicted or invented)."""

    model_config = {"extra": "forbid", "frozen": True}

    material_id: str | None = Field(default=None, max_length=200)
    energy_above_hull: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    formation_energy_per_atom: float | None = Field(default=None, allow_inf_nan=False)
    band_gap: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    is_metal: bool | None = None


class RelaxationInfo(BaseModel):
    """How the structure of a document was relaxed before its prediction: by a machine-learned
    interatomic potential through atomate2's ``ForceFieldRelaxMaker`` (the funnel of
    :mod:`atomate2_gmt.flows.funnel`). The document's ``structure`` is the relaxed one."""

    model_config = {"extra": "forbid"}

    potential: str = Field(description="The potential, e.g. 'CHGNet'.")
    potential_version: str | None = Field(
        default=None, description="Its model version, e.g. '0.3.0' (CHGNet's default weights)."
    )
    package_version: str | None = Field(
        default=None, description="Version of the package that ran it, e.g. chgnet '0.4.2'."
    )
    relaxer: str = Field(
        default="atomate2.forcefields.jobs.ForceFieldRelaxMaker",
        description="What drove the relaxation.",
    )
    relax_cell: bool | None = Field(default=None, description="Cell shape and volume relaxed.")
    optimizer: str | None = Field(default=None, description="ASE optimizer, e.g. 'BFGS'.")
    energy_per_atom: float | None = Field(
        default=None, allow_inf_nan=False, description="Relaxed energy (eV/atom)."
    )
    initial_energy_per_atom: float | None = Field(
        default=None, allow_inf_nan=False, description="Energy of the input structure (eV/atom)."
    )
    n_steps: int | None = Field(default=None, description="Ionic steps taken.")
    max_steps: int | None = Field(default=None, description="Most ionic steps allowed.")
    fmax: float | None = Field(default=None, description="Force criterion of convergence (eV/Å).")
    max_force: float | None = Field(
        default=None, allow_inf_nan=False, description="Largest atomic force at the end (eV/Å)."
    )
    converged: bool | None = Field(
        default=None, description="The forces reached ``fmax`` within ``max_steps``."
    )
    volume_change: float | None = Field(
        default=None, allow_inf_nan=False, description="Relaxed volume / input volume - 1."
    )
    input_prediction_id: str | None = Field(
        default=None, description="The document of the unrelaxed input structure."
    )


class ModelInfo(BaseModel):
    """The model that made one task's prediction."""

    name: str | None = Field(default=None, description="Model name, e.g. 'gmtnet-piezo'.")
    version: str | None = Field(
        default=None, description="Model version (registry or release label)."
    )
    checkpoint_hash: str | None = Field(default=None, description="sha256 of the checkpoint file.")
    spec: str | None = Field(
        default=None, description="How the model was chosen: 'pretrained', 'registry' or a path."
    )


class TaskPrediction(BaseModel):
    """One task's predicted tensor (structure's Cartesian frame) and derived quantities."""

    task: str = Field(description="dielectric, dielectric_total, piezo or elastic.")
    state: State = Field(description="'successful' or 'failed'.")
    error: str | None = Field(default=None, description="Why the prediction failed.")
    units: str = Field(description="dimensionless, C/m^2 or GPa.")
    tensor: list[Any] | None = Field(
        default=None, description="Full Cartesian tensor in the structure's frame (nested lists)."
    )
    voigt: list[list[float]] | None = Field(
        default=None, description="Standard Voigt (xx,yy,zz,yz,xz,xy), structure's frame."
    )
    voigt_ieee: list[list[float]] | None = Field(
        default=None,
        description="Standard Voigt in the structure's IEEE 176 frame (as MP reports).",
    )
    ieee_error: str | None = Field(default=None, description="Why the IEEE-frame form is missing.")
    derived: dict[str, Any] = Field(
        default_factory=dict, description="Derived quantities (units of the tensor)."
    )
    model: ModelInfo = Field(default_factory=ModelInfo)
    time_s: float | None = Field(
        default=None, description="Wall time of this task's prediction (s)."
    )


def derive_model_version(model_info: dict[str, dict[str, Any]], tasks: list[str]) -> str:
    """One version label for a set of task models: the common version if every task has the
    same one, else ``"task=version|..."`` (sorted); ``"unversioned"`` when none is known."""
    versions = {t: (model_info.get(t) or {}).get("version") for t in sorted(tasks)}
    known = {v for v in versions.values() if v}
    if not known:
        return "unversioned"
    if len(known) == 1 and all(versions.values()):
        return str(known.pop())
    label = "|".join(f"{t}={v or 'unversioned'}" for t, v in versions.items())
    if len(label) > 200:
        return "models-" + hashlib.sha256(label.encode()).hexdigest()[:16]
    return label


_AMU_PER_A3_IN_G_PER_CM3 = 1.66053906660  # 1 amu / Å^3 in g/cm^3


@lru_cache(maxsize=256)
def _atomic_mass(symbol: str) -> float:
    return float(Element(symbol).atomic_mass)


def _structure_metadata(structure: Structure) -> dict[str, Any]:
    """emmet composition fields plus nsites, volume (Å^3), density (g/cm^3), Å^3/atom."""
    comp = structure.composition.remove_charges()
    meta = StructureMetadata.from_composition(comp).model_dump(exclude_none=True)
    mass = sum(_atomic_mass(el.symbol) * amount for el, amount in comp.items())
    volume = float(structure.volume)
    meta.update(
        {
            "nsites": len(structure),
            "volume": volume,
            "density": mass * _AMU_PER_A3_IN_G_PER_CM3 / volume,
            "density_atomic": volume / len(structure),
        }
    )
    return meta


def _structure_dict(structure: Structure) -> dict[str, Any]:
    """``structure.as_dict()`` with plain JSON types (lists, floats), as a store returns it."""
    from monty.json import jsanitize

    return jsanitize(structure.as_dict(), strict=False)  # type: ignore[no-any-return]


def _task_prediction(
    task: str,
    pred: dict[str, Any],
    ieee: np.ndarray | str,
    model: ModelInfo,
    time_s: float | None,
) -> TaskPrediction:
    """One task's sub-document; ``ieee`` is the rotation to the IEEE frame or why it is missing."""
    from atomate2_gmt.tensors.conventions import full_to_voigt, rotate

    base: dict[str, Any] = {
        "task": task,
        "units": TASK_UNITS[task],
        "model": model,
        "time_s": time_s,
    }
    if not isinstance(pred, dict):
        return TaskPrediction(
            state="failed", error=f"prediction is a {type(pred).__name__}, not a dict", **base
        )
    if pred.get("state") != "successful":
        error = pred.get("error") or f"prediction state is {pred.get('state')!r}"
        return TaskPrediction(state="failed", error=str(error), **base)
    try:
        tensor = np.asarray(pred.get("tensor"), dtype=float)
    except (TypeError, ValueError):
        return TaskPrediction(state="failed", error="tensor is not numeric", **base)
    shape = (3,) * TASK_RANK[task]
    if tensor.shape != shape:
        return TaskPrediction(
            state="failed", error=f"tensor has shape {tensor.shape}, expected {shape}", **base
        )
    if not np.all(np.isfinite(tensor)):
        return TaskPrediction(state="failed", error="tensor has non-finite entries", **base)
    kind = kind_of(task)
    voigt = full_to_voigt(tensor, kind)
    voigt_ieee = None
    ieee_error = ieee if isinstance(ieee, str) else None
    if not isinstance(ieee, str):
        voigt_ieee = full_to_voigt(rotate(tensor, ieee), kind)
    return TaskPrediction(
        state="successful",
        tensor=tensor.tolist(),
        voigt=voigt.tolist(),
        voigt_ieee=None if voigt_ieee is None else voigt_ieee.tolist(),
        ieee_error=ieee_error,
        derived=derived_quantities(task, tensor, None if isinstance(ieee, str) else ieee),
        **base,
    )


class DFPTSelection(BaseModel):
    """The ``dfpt_selected`` mark of a candidate: picked for DFPT (its result is not back yet),
    or carried over from an earlier document of the same crystal; a marked candidate is never
    picked again. Written by ``atomate2_gmt.jobs.select`` and ``flows.campaign.carry_marks``."""

    at: str = Field(description="When it was marked (ISO 8601, UTC).")
    code: str | None = Field(default=None, description="The DFPT backend it was sent to.")
    policy: dict[str, Any] | None = Field(
        default=None, description="The SelectionPolicy that picked it (its fields)."
    )
    carried_from: str | None = Field(
        default=None,
        description="The prediction id of the earlier document that was computed or selected, "
        "or 'earlier round' (a campaign's earlier pick).",
    )


class DFPTFeedback(BaseModel):
    """The ``dfpt`` field of a candidate: its DFPT result and what validation decided
    (written by ``atomate2_gmt.jobs.feedback``); a candidate with it is never picked again."""

    state: Literal["accepted", "rejected", "failed"] = Field(
        description="accepted (training data), rejected (reasons) or failed (DFPT died)."
    )
    dfpt_state: str = Field(description="The DFPT result's own state.")
    code: str | None = Field(default=None, description="DFPT backend (abinit, vasp).")
    tensors: dict[str, Any] = Field(
        default_factory=dict, description="Task → full Cartesian tensor (structure's frame)."
    )
    reasons: list[str] = Field(default_factory=list, description="Why it was rejected.")
    training_record_ids: list[str] = Field(default_factory=list)
    training_conflicts: list[str] = Field(
        default_factory=list, description="Ids written as conflicting records (not trained on)."
    )
    job_uuid: str | None = Field(default=None, description="The DFPT job's uuid.")
    last_updated: datetime = Field(default_factory=_utcnow)

    def to_store_dict(self) -> dict[str, Any]:
        """The stored form (``last_updated`` stays a datetime for MongoDB)."""
        return self.model_dump()


class GMTPredictionDoc(StructureMetadata):
    """GMTNet predictions for one structure with one model version (key ``prediction_id``)."""

    prediction_id: str = Field(description="Unique key: '<structure_key>:<model_version>'.")
    schema_version: int = Field(
        default=PREDICTION_SCHEMA_VERSION,
        description="Version of the field definitions (schemas.fields.PREDICTION_SCHEMA_VERSION).",
    )
    structure_key: str | None = Field(
        default=None, description="Stable structure hash (None if the structure is unreadable)."
    )
    model_version: str = Field(description="Version label of the models used.")
    source: str = Field(
        description="Where the structure came from (file name, id, label): the first name under "
        "which this crystal was stored; it does not change on re-runs."
    )
    sources: list[str] = Field(
        default_factory=list,
        description="Every input name under which this crystal (same structure_key) was screened "
        "with this model version, first one first; filled on upsert.",
    )
    provenance: dict[str, Any] = Field(default_factory=dict)
    structure: dict[str, Any] | None = Field(
        default=None,
        description="pymatgen Structure.as_dict() (stored without what Structure.from_dict "
        "recomputes: Cartesian coordinates, lattice parameters; schemas.stored).",
    )
    ieee_rotation: list[list[float]] | None = Field(
        default=None,
        description="Rotation from the structure's Cartesian frame to its IEEE 176 frame "
        "(pymatgen's convert_to_ieee), from which each task's voigt_ieee is computed on read; "
        "None when the IEEE frame could not be found.",
    )
    is_centrosymmetric: bool | None = Field(
        default=None, description="Point group contains inversion."
    )
    material_id: str | None = Field(
        default=None,
        description="The candidate source's id of the crystal (e.g. an MP or Alexandria id); None "
        "for files and generated crystals.",
    )
    energy_above_hull: float | None = Field(
        default=None,
        description="Energy above the convex hull (eV/atom) as the candidate source gives it "
        "(emmet's meaning: the source's DFT hull); never predicted, None when not given.",
    )
    formation_energy_per_atom: float | None = Field(
        default=None, description="Formation energy (eV/atom) from the candidate source."
    )
    band_gap: float | None = Field(
        default=None, description="Band gap (eV) from the candidate source; never predicted."
    )
    is_metal: bool | None = Field(
        default=None, description="The candidate source's metallicity (emmet's is_metal)."
    )
    hypothetical: bool | None = Field(
        default=None,
        description="True: a crystal made by the project (e.g. the substitution generator), which "
        "no source has computed: its structure is a guess until relaxed and its stability is "
        "unknown unless estimated (mlip_energy_above_hull); False: a source record with an id; "
        "None: not known (structure files).",
    )
    relaxation: RelaxationInfo | None = Field(
        default=None,
        description="How the structure was relaxed before this prediction (None: predicted on "
        "the structure as given).",
    )
    relaxed_prediction_id: str | None = Field(
        default=None,
        description="The document of this crystal's relaxed structure, which supersedes this one "
        "in rankings (set by the relaxation funnel).",
    )
    mlip_energy_above_hull: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="Estimated energy above the convex hull (eV/atom) of the phases the project "
        "knows (shipped Materials Project structures of the chemical system), every energy from "
        "the same interatomic potential (atomate2_gmt.stability); an MLIP estimate, never the "
        "source's DFT energy_above_hull.",
    )
    stability_source: str | None = Field(
        default=None,
        description="What the crystal's stability figure is: 'source: <database>' "
        "(energy_above_hull), 'MLIP estimate: <potential> vs N known phases' "
        "(mlip_energy_above_hull) or None (unknown).",
    )
    likely_metal: bool | None = Field(
        default=None,
        description="The crystal is probably a metal, so its ε/e/C predictions (made as for an "
        "insulator) mean little: the chemistry rule of atomate2_gmt.schemas.metallicity; None "
        "when the rule could not be applied.",
    )
    likely_metal_reason: str | None = Field(
        default=None, description="Which part of the rule flagged the crystal."
    )
    state: State = Field(description="'successful' when every requested task succeeded.")
    error: str | None = Field(default=None, description="Reasons of the failed tasks / structure.")
    tasks: list[str] = Field(default_factory=list, description="Tasks requested.")
    predictions: dict[str, TaskPrediction] = Field(default_factory=dict)

    dielectric_mean: float | None = Field(default=None, description="tr(ε∞)/3.")
    dielectric_eig_max: float | None = Field(default=None, description="Largest eigenvalue of ε∞.")
    dielectric_total_mean: float | None = Field(default=None, description="tr(ε0)/3.")
    dielectric_total_eig_max: float | None = Field(
        default=None, description="Largest eigenvalue of ε0."
    )
    e_ij_max: float | None = Field(
        default=None,
        description="Largest singular value of the IEEE-frame standard Voigt e_iJ (C/m²), as "
        "emmet's PiezoelectricDoc.e_ij_max; None when the IEEE frame could not be found.",
    )
    e_long_max: float | None = Field(
        default=None,
        description="Largest longitudinal response max_n e_ijk n_i n_j n_k (C/m²), frame-free.",
    )
    e_norm: float | None = Field(
        default=None, description="Frobenius norm of the full Cartesian e_ijk (C/m²), frame-free."
    )
    e_ij_abs_max: float | None = Field(
        default=None,
        description="Largest |e_iJ| of the IEEE-frame standard Voigt e_iJ (C/m²): JARVIS-DFT's "
        "max|e_ij|; None when the IEEE frame could not be found.",
    )
    K_VRH: float | None = Field(default=None, description="Hill bulk modulus (GPa).")
    G_VRH: float | None = Field(default=None, description="Hill shear modulus (GPa).")
    AU: float | None = Field(default=None, description="Universal elastic anisotropy index.")
    born_stable: bool | None = Field(default=None, description="Elastic tensor positive definite.")
    phi: float | None = Field(
        default=None,
        description="Dielectric figure of merit Φ = Eg·ε̄_total (eV; Riebesell et al. 2024): the "
        "source's band gap times the predicted dielectric_total_mean; None without either.",
    )
    phi_minus_sigma: float | None = Field(
        default=None,
        description="Φ − σ_Φ with σ_Φ = Eg·σ(ε̄_total) the ensemble spread (Φ for a single model): "
        "the risk-aware rank of the riebesell-dielectric preset (eV).",
    )
    domain_distance: dict[str, float] = Field(
        default_factory=dict,
        description="Task → distance of the crystal from the task's shipped training data "
        "(atomate2_gmt.data.domain: 1.0 = the most isolated 1 % of the training crystals); "
        "larger values are extrapolations.",
    )
    uncertainty: dict[str, float] = Field(
        default_factory=dict,
        description="Ensemble spread: derived field → standard deviation over the ensemble "
        "members (same units as the field); empty for single models.",
    )

    dfpt_selected: DFPTSelection | None = Field(
        default=None, description="Picked for DFPT (absent from the store until then)."
    )
    dfpt: DFPTFeedback | None = Field(
        default=None, description="The DFPT result and its validation (absent until then)."
    )

    device: str | None = Field(default=None, description="Device the predictions ran on.")
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per task.")
    atomate2_gmt_version: str = Field(default=__version__)
    last_updated: datetime = Field(default_factory=_utcnow)

    @classmethod
    def from_predictions(
        cls,
        structure: Structure,
        predictions: dict[str, dict[str, Any]],
        model_info: dict[str, dict[str, Any]] | None = None,
        *,
        source: str,
        model_version: str | None = None,
        symprec: float = SYMPREC,
        device: str | None = None,
        timings: dict[str, float] | None = None,
        provenance: dict[str, Any] | None = None,
        source_properties: SourceProperties | None = None,
        structure_key: str | None = None,
        point_group_info: Any = None,
        ieee_rotation: Any = None,
        uncertainty: dict[str, float] | None = None,
        domain_distance: dict[str, float] | None = None,
        metallicity: dict[str, Any] | None = None,
    ) -> GMTPredictionDoc:
        """Build the document of ``structure`` from per-task results of ``atomate2_gmt.predict``.

        (Over 80 lines because of its 16 keyword arguments and their documentation; the body
        itself is one pass: symmetry facts, per-task fields, then the document.)

        Args:
            structure: the crystal as predicted (its Cartesian frame is the tensors' frame).
            predictions: task → ``{"state", "error", "tensor", "voigt"}`` as ``predict`` returns.
            model_info: task → ``{"name", "version", "checkpoint_hash" (or
                "checkpoint_sha256"), "spec"}``.
            source: name of the input (file, id); provenance: where it came from.
            model_version: version label (default: :func:`derive_model_version`).
            symprec: symmetry tolerance (Å) for the symmetry data and the structure key.
            device, timings: where the predictions ran and seconds per task.
            source_properties: what the candidate source knows of the crystal (id, energy above
                the hull, formation energy, band gap, metallicity), carried under emmet's names.
            structure_key: precomputed key (computed here if None).
            point_group_info: the ``tensors.symmetry.PointGroupInfo`` of ``structure`` at
                ``symprec`` when already known (saves a symmetry search).
            ieee_rotation: the rotation to the IEEE frame
                (``tensors.conventions.ieee_rotation``), or the reason it failed, when already
                computed (e.g. in a worker process).
            uncertainty: ensemble spread of derived fields (field → standard deviation).
            domain_distance: task → distance from the training data (computed here if None).
            metallicity: ``likely_metal`` and ``likely_metal_reason`` when already computed
                (:func:`metal_fields`, e.g. in a worker process; computed here if None).
        """
        _check_document_inputs(structure, predictions, model_info, source, symprec)
        model_info = dict(model_info or {})
        timings = {k: float(v) for k, v in (timings or {}).items()}
        tasks = [t for t in TASKS if t in predictions]
        version = model_version or derive_model_version(model_info, tasks)

        errors: list[str] = []
        analysis = SymmetryAnalysis(structure, symprec, point_group=point_group_info)
        key = structure_key
        if key is None:
            try:
                key = analysis.structure_key
            except Exception as exc:
                errors.append(f"structure_key: {exc}")
        symmetry: SymmetryData | None = None
        centro = None
        try:
            symmetry, centro = analysis.symmetry_data, analysis.centrosymmetric
        except Exception as exc:
            errors.append(f"symmetry: {exc}")

        ieee: np.ndarray | str
        if ieee_rotation is not None:
            ieee = ieee_rotation if isinstance(ieee_rotation, str) else np.asarray(ieee_rotation)
        else:
            ieee = _ieee_of(analysis)
        task_docs: dict[str, TaskPrediction] = {}
        flat: dict[str, Any] = {}
        for task in tasks:
            info = dict(model_info.get(task) or {})
            model = ModelInfo(
                name=info.get("name"),
                version=info.get("version"),
                checkpoint_hash=info.get("checkpoint_hash") or info.get("checkpoint_sha256"),
                spec=info.get("spec"),
            )
            doc = _task_prediction(task, predictions[task], ieee, model, timings.get(task))
            task_docs[task] = doc
            if doc.state == "failed":
                errors.append(f"{task}: {doc.error}")
                continue
            for f in DERIVED_FIELDS[task]:
                value = doc.derived.get(f)
                if isinstance(value, float) and not math.isfinite(value):
                    value = None
                flat[f] = value
        failed = any(d.state == "failed" for d in task_docs.values())
        spread = {k: float(v) for k, v in (uncertainty or {}).items()}
        gap = source_properties.band_gap if source_properties is not None else None
        flat.update(figure_fields(gap, flat.get("dielectric_total_mean"), spread))
        return cls(
            **_structure_metadata(structure),
            symmetry=symmetry,
            prediction_id=_prediction_id(key, source, version),
            structure_key=key,
            model_version=version,
            source=source,
            sources=[source],
            provenance=dict(provenance or {}),
            structure=_structure_dict(structure),
            ieee_rotation=None if isinstance(ieee, str) else np.asarray(ieee, float).tolist(),
            is_centrosymmetric=centro,
            **(source_properties or SourceProperties()).model_dump(),
            **_origin_fields(provenance, source_properties),
            **(metallicity if metallicity is not None else metal_fields(analysis)),
            state="failed" if failed else "successful",
            error="; ".join(errors) if failed else None,
            tasks=tasks,
            predictions=task_docs,
            device=device,
            timings=timings,
            uncertainty=spread,
            domain_distance=(
                _domain_distance(structure, tasks)
                if domain_distance is None
                else {k: float(v) for k, v in domain_distance.items()}
            ),
            **flat,
        )

    @classmethod
    def from_failure(
        cls,
        source: str,
        error: str,
        structure: Structure | None = None,
        *,
        tasks: list[str] | tuple[str, ...] = (),
        model_version: str = "unversioned",
        symprec: float = SYMPREC,
        provenance: dict[str, Any] | None = None,
        source_properties: SourceProperties | None = None,
    ) -> GMTPredictionDoc:
        """A failed document for an input that could not be predicted at all (unreadable file,
        disordered structure, ...). It keeps the source, and the structure's metadata and key
        when the structure is readable."""
        if not isinstance(source, str) or not source:
            raise ValueError("source must be a non-empty string")
        unknown = sorted(set(tasks) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown tasks {unknown}; valid tasks: {', '.join(TASKS)}")
        meta: dict[str, Any] = {}
        key = None
        struct_dict = None
        if structure is not None:  # whatever of it can be described is kept
            try:
                struct_dict = _structure_dict(structure)
            except Exception:
                struct_dict = None
            try:
                meta = _structure_metadata(structure)
            except Exception:
                meta = {}
            try:
                key = compute_structure_key(structure, symprec=symprec)
            except Exception:
                key = None
        task_docs = {
            t: TaskPrediction(task=t, state="failed", error=error, units=TASK_UNITS[t])
            for t in TASKS
            if t in tasks
        }
        return cls(
            **meta,
            prediction_id=_prediction_id(key, source, model_version),
            structure_key=key,
            model_version=model_version,
            source=source,
            sources=[source],
            provenance=dict(provenance or {}),
            structure=struct_dict,
            **(source_properties or SourceProperties()).model_dump(),
            **_origin_fields(provenance, source_properties),
            state="failed",
            error=error,
            tasks=[t for t in TASKS if t in tasks],
            predictions=task_docs,
        )

    def to_store_dict(self) -> dict[str, Any]:
        """JSON-safe dict for a store (``last_updated`` stays a datetime for MongoDB), with its
        ``content_hash`` (:func:`content_hash`). The ``dfpt`` and ``dfpt_selected``
        sub-documents are left out while unset: selection finds the candidates without them by
        ``$exists``."""
        out = self.model_dump(mode="json")
        out["last_updated"] = self.last_updated
        for name in ("dfpt", "dfpt_selected"):
            if out.get(name) is None:
                out.pop(name, None)
        if self.dfpt is not None:
            out["dfpt"] = self.dfpt.to_store_dict()
        out["content_hash"] = content_hash(out)
        return out


#: The fields a stored prediction document's ``content_hash`` covers: what the structure and
#: the model version determine. Names (``source``, ``sources``, ``provenance``), annotations a
#: later step adds (``dfpt``) and run details (timings, device, dates) are left out.
_CONTENT_FIELDS_BEFORE_6: tuple[str, ...] = (
    "prediction_id",
    "structure_key",
    "model_version",
    "structure",
    "formula_pretty",
    "state",
    "error",
    "tasks",
    "predictions",
    "is_centrosymmetric",
    "likely_metal",
    "domain_distance",
    "uncertainty",
    *sorted({f for fields in DERIVED_FIELDS.values() for f in fields} - {"e_ij_abs_max"}),
)
_CONTENT_FIELDS_6: tuple[str, ...] = (
    *_CONTENT_FIELDS_BEFORE_6[:13],
    *sorted({f for fields in DERIVED_FIELDS.values() for f in fields}),
    *FIGURE_FIELDS,
)
CONTENT_FIELDS: tuple[str, ...] = (*_CONTENT_FIELDS_6, "ieee_rotation")
"""The fields of the current schema's hash (schema 7: of the compact stored form)."""


def content_hash(doc: dict[str, Any]) -> str:
    """SHA-256 of the content fields of a prediction document's store dict (canonical JSON): a
    re-screen skips a stored document only when its content still has this hash. The fields are
    those of the document's ``schema_version`` (:data:`CONTENT_FIELDS` for the current one,
    hashed on the compact stored form, so a document hashes the same in memory and stored;
    an older document is checked on the fields it was hashed on)."""
    import hashlib
    import json

    version = doc.get("schema_version")
    if version is None or version < 6:
        fields = _CONTENT_FIELDS_BEFORE_6
    elif version == 6:
        fields = _CONTENT_FIELDS_6
    else:
        fields = CONTENT_FIELDS
        doc = compact_prediction_dict(doc)
    content = {k: doc.get(k) for k in fields}
    predictions = content.get("predictions")
    if isinstance(predictions, dict):  # a task's wall time is a run detail, not content
        content["predictions"] = {
            task: {k: v for k, v in pred.items() if k != "time_s"}
            if isinstance(pred, dict)
            else pred
            for task, pred in predictions.items()
        }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def identity_problem(doc: dict[str, Any], model_version: str) -> str | None:
    """Why a stored prediction document cannot be trusted as the prediction of its
    ``prediction_id`` with ``model_version``, or None: its identity fields must agree with each
    other and with its structure, and its ``content_hash`` (when it has one) with its content."""
    pid = doc.get("prediction_id")
    if (
        doc.get("model_version") != model_version
        or pid != f"{doc.get('structure_key')}:{model_version}"
    ):
        return (
            f"identity fields disagree (prediction_id {pid!r}, structure_key "
            f"{doc.get('structure_key')!r}, model_version {doc.get('model_version')!r})"
        )
    try:
        formula = Structure.from_dict(doc["structure"]).composition.reduced_formula
    except Exception as exc:
        return f"its structure cannot be read ({type(exc).__name__})"
    if doc.get("formula_pretty") != formula:
        return f"formula {doc.get('formula_pretty')!r} is not its structure's ({formula})"
    stored = doc.get("content_hash")
    if stored is not None and stored != content_hash(doc):
        return "its content does not match its content_hash (edited after it was written)"
    return None


def migrate_prediction_dict(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored prediction document (dict) of an older ``schema_version`` at the current one: the
    derived fields recomputed from its stored tensors and structure (no model is run), in the
    compact stored form (:mod:`atomate2_gmt.schemas.stored`), every other field kept (e.g. the
    DFPT results a selection wrote onto it). Ensemble spreads of the fields whose definition
    changed cannot be recomputed without the members and are dropped."""
    out = {k: v for k, v in doc.items() if k != "_id"}
    if out.get("schema_version") == PREDICTION_SCHEMA_VERSION:
        if "content_hash" not in out:  # written before documents carried their hash
            out["content_hash"] = content_hash(out)
        return out
    structure = Structure.from_dict(doc["structure"])
    ieee = compute_ieee_rotation(structure)
    rotation = None if isinstance(ieee, str) else ieee
    out["ieee_rotation"] = None if rotation is None else np.asarray(rotation, float).tolist()
    predictions = {k: dict(v) for k, v in (doc.get("predictions") or {}).items()}
    changed: set[str] = set()
    for task, pred in predictions.items():
        if pred.get("state") != "successful":
            continue
        if pred.get("tensor") is not None:
            tensor = np.asarray(pred["tensor"], dtype=float)
        elif pred.get("voigt") is not None:  # a compact document
            tensor = voigt_to_full(np.asarray(pred["voigt"], dtype=float), kind_of(task))
        else:
            continue
        derived = derived_quantities(task, tensor, rotation)
        pred["derived"] = derived
        for name in DERIVED_FIELDS.get(task, ()):
            value = derived.get(name)
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            if out.get(name) != value:
                changed.add(name)
            out[name] = value
    out["predictions"] = predictions
    if not out.get("domain_distance"):
        tasks = [t for t in TASKS if t in predictions]
        out["domain_distance"] = _domain_distance(structure, tasks)
    out["uncertainty"] = {
        k: v for k, v in (doc.get("uncertainty") or {}).items() if k not in changed
    }
    out.update(  # schema 6: the stored figures of merit
        figure_fields(out.get("band_gap"), out.get("dielectric_total_mean"), out["uncertainty"])
    )
    if "e_above_hull" in out:  # schema 4 names the source's hull energy as emmet does
        out["energy_above_hull"] = out.pop("e_above_hull")
    if "likely_metal" not in out:  # schema 3 added the likely-metal flag
        out.update(metal_fields(SymmetryAnalysis(structure, SYMPREC)))
    if "hypothetical" not in out:  # schema 5: what a crystal is and where its stability is from
        props = SourceProperties(
            **{k: out.get(k) for k in SourceProperties.model_fields if out.get(k) is not None}
        )
        out.update(_origin_fields(out.get("provenance"), props))
    out["schema_version"] = PREDICTION_SCHEMA_VERSION
    out = compact_prediction_dict(out)  # schema 7: the compact stored form
    out["content_hash"] = content_hash(out)
    return out


def figure_fields(
    band_gap: float | None, dielectric_total_mean: float | None, uncertainty: dict[str, float]
) -> dict[str, float | None]:
    """The stored figures of merit (:data:`~atomate2_gmt.schemas.fields.FIGURE_FIELDS`):
    ``phi`` = Eg·ε̄_total and ``phi_minus_sigma`` = Φ − Eg·σ(ε̄_total) (Φ without an ensemble
    σ); both None without the source's band gap or the predicted ε̄_total. Eg is the source's
    DFT value, which has no ensemble σ."""
    if band_gap is None or dielectric_total_mean is None:
        return {"phi": None, "phi_minus_sigma": None}
    phi = float(band_gap) * float(dielectric_total_mean)
    spread = uncertainty.get("dielectric_total_mean")
    sigma = 0.0 if spread is None else float(band_gap) * float(spread)
    if not math.isfinite(phi) or not math.isfinite(sigma):
        return {"phi": None, "phi_minus_sigma": None}
    return {"phi": phi, "phi_minus_sigma": phi - sigma}


def _domain_distance(structure: Structure, tasks: list[str]) -> dict[str, float]:
    """Task → ``domain_distance`` of ``structure`` (see :mod:`atomate2_gmt.data.domain`)."""
    from atomate2_gmt.data.domain import domain_distances

    return {task: float(domain_distances([structure], task)[0]) for task in tasks}


def _check_document_inputs(
    structure: Any, predictions: Any, model_info: Any, source: Any, symprec: float
) -> None:
    """Raise ``ValueError`` for the inputs :meth:`GMTPredictionDoc.from_predictions` refuses."""
    if not isinstance(structure, Structure):
        raise ValueError(f"structure must be a pymatgen Structure, got {type(structure)}")
    if not isinstance(predictions, dict) or not predictions:
        raise ValueError("predictions must be a non-empty dict task -> prediction")
    unknown = sorted(set(predictions) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; valid tasks: {', '.join(TASKS)}")
    if not isinstance(source, str) or not source:
        raise ValueError("source must be a non-empty string")
    if symprec <= 0:
        raise ValueError(f"symprec must be positive, got {symprec}")
    unknown = sorted(set(model_info or {}) - set(TASKS))
    if unknown:
        raise ValueError(f"model_info has unknown tasks {unknown}")


def compute_ieee_rotation(structure: Structure) -> np.ndarray | str:
    """The rotation to the IEEE frame (as pymatgen's ``Tensor.convert_to_ieee`` applies it), or
    the reason it could not be found (the IEEE form is a convenience: predictions are kept)."""
    from atomate2_gmt.tensors.conventions import ieee_rotation

    try:
        return ieee_rotation(structure)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def symmetry_facts(structure: Structure, symprec: float = SYMPREC) -> dict[str, Any]:
    """What a document needs of the structure's symmetry beyond its point group, from one
    :class:`~atomate2_gmt.tensors.symmetry.analysis.SymmetryAnalysis` (one spglib search):
    ``structure_key`` and ``ieee_rotation`` (:func:`key_and_ieee_rotation`) and the
    ``metallicity`` fields (:func:`metal_fields`), and the ``point_group`` read from that search
    where it is the one the point-group search would find (``SymmetryAnalysis.
    point_group_of_dataset``, else None). Never raises."""
    analysis = SymmetryAnalysis(structure, symprec)
    key, ieee = _key_and_ieee(analysis)
    return {
        "structure_key": key,
        "ieee_rotation": ieee,
        "metallicity": metal_fields(analysis),
        "point_group": analysis.point_group_of_dataset,
    }


def key_and_ieee_rotation(
    structure: Structure, symprec: float = SYMPREC
) -> tuple[str | None, np.ndarray | str]:
    """The ``structure_key`` (None if it cannot be computed) and the IEEE rotation (or the reason
    it failed, as :func:`compute_ieee_rotation`) from one
    :class:`~atomate2_gmt.tensors.symmetry.analysis.SymmetryAnalysis` (one spglib search where
    its dataset is the one pymatgen finds). Equal to ``structure_key(structure, symprec)`` and
    ``compute_ieee_rotation(structure)``. Never raises."""
    return _key_and_ieee(SymmetryAnalysis(structure, symprec))


def _key_and_ieee(analysis: SymmetryAnalysis) -> tuple[str | None, np.ndarray | str]:
    try:
        key: str | None = analysis.structure_key
    except Exception:  # from_predictions computes it again and records the reason
        key = None
    return key, _ieee_of(analysis)


def _ieee_of(analysis: SymmetryAnalysis) -> np.ndarray | str:
    """The analysis' IEEE rotation, or why it failed (as :func:`compute_ieee_rotation`)."""
    try:
        return analysis.ieee_rotation
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _prediction_id(key: str | None, source: str, model_version: str) -> str:
    """The store key (field :data:`~atomate2_gmt.schemas.fields.PREDICTION_KEY`)."""
    if key is None:
        key = "unkeyed-" + hashlib.sha256(source.encode()).hexdigest()[:24]
    return f"{key}:{model_version}"


_SOURCE_DATABASES: tuple[tuple[str, str], ...] = (
    ("mp-", "Materials Project"),
    ("mvc-", "Materials Project"),
    ("agm", "Alexandria"),
    ("jvasp-", "JARVIS-DFT"),
    ("oqmd-", "OQMD"),
)
"""Id prefix → database, for naming where a source's ``energy_above_hull`` comes from."""


def stability_source_of(source_properties: SourceProperties | None) -> str | None:
    """``"source: <database>"`` when the source gives an ``energy_above_hull`` (the database
    named by its id's prefix, else ``"candidate source"``), None otherwise."""
    if source_properties is None or source_properties.energy_above_hull is None:
        return None
    mid = (source_properties.material_id or "").lower()
    name = next((db for prefix, db in _SOURCE_DATABASES if mid.startswith(prefix)), None)
    return f"source: {name or 'candidate source'}"


def _origin_fields(
    provenance: dict[str, Any] | None, source_properties: SourceProperties | None
) -> dict[str, Any]:
    """``hypothetical`` (True for a generated crystal: its provenance names a generator; False
    for a source record with an id; else None) and ``stability_source``."""
    hypothetical: bool | None = None
    if (provenance or {}).get("generator"):
        hypothetical = True
    elif source_properties is not None and source_properties.material_id:
        hypothetical = False
    return {
        "hypothetical": hypothetical,
        "stability_source": stability_source_of(source_properties),
    }


def metal_fields(analysis: SymmetryAnalysis) -> dict[str, Any]:
    """``likely_metal`` and ``likely_metal_reason`` of the analysis' structure
    (:func:`atomate2_gmt.schemas.metallicity.likely_metal`, reading the analysis' spglib
    dataset); both None if the rule fails."""
    try:
        check = likely_metal(analysis.structure, analysis.symprec, analysis)
    except Exception:  # the flag is advice: it never fails a document
        return {"likely_metal": None, "likely_metal_reason": None}
    return {"likely_metal": check.likely_metal, "likely_metal_reason": check.reason}
