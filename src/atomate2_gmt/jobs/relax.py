"""The jobs of the relaxation funnel (:class:`atomate2_gmt.flows.funnel.GMTFunnelMaker`).

Relaxation is atomate2's: each shortlisted structure is relaxed by one job of a
``ForceFieldRelaxMaker`` (CHGNet by default, its weights shipped in the ``chgnet`` package, so it
runs offline), and the energies of the known phases of the shortlisted chemical systems come from
one job of a ``ForceFieldStaticMaker`` with the same potential. This module adds what atomate2
does not know about: which documents to relax (:func:`relax_shortlist`, the run-time part of the
flow), and the documents of the relaxed structures (:func:`predict_relaxed`: prediction on the
relaxed structure, the relaxation record, the MLIP energy above the hull,
:mod:`atomate2_gmt.stability`).

A relaxation job that fails leaves its candidate's document unrelaxed (a generated candidate then
stays out of the funnel's ranking) and never fails the others: :func:`predict_relaxed` takes the
relaxations with ``OnMissing.NONE``.
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from jobflow import Flow, Response, job
from jobflow.core.reference import OnMissing

from atomate2_gmt.routing import KIND_KEY, declare_role, job_role, route_new_jobs
from atomate2_gmt.schemas.fields import DEFAULT_SORT, PREDICTION_KEY

if TYPE_CHECKING:
    from collections.abc import Sequence

    from maggma.core import Store

    from atomate2_gmt.jobs.predict import GMTPredictMaker

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FMAX",
    "default_phase_maker",
    "default_relax_maker",
    "potential_identity",
    "predict_relaxed",
    "relax_shortlist",
    "relaxation_record",
    "relaxation_settings",
]

DEFAULT_FMAX = 0.05
"""Force criterion of the funnel's relaxations (eV/Å), atomate2's ``relax_kwargs["fmax"]``."""


def default_relax_maker() -> Any:
    """atomate2's ``ForceFieldRelaxMaker`` with CHGNet: cell and positions relaxed by ASE's BFGS
    to :data:`DEFAULT_FMAX` in at most 300 steps, no file written."""
    from atomate2.forcefields.jobs import ForceFieldRelaxMaker

    return ForceFieldRelaxMaker(
        name="gmt_relax",
        force_field_name="CHGNet",
        relax_cell=True,
        steps=300,
        # no final_atoms_object.xyz appended to in the working directory by every relaxation
        relax_kwargs={"fmax": DEFAULT_FMAX, "final_atoms_object_file": None},
        # BFGS: 9-18 steps where atomate2's default FIRE takes 31-46 (two demo nitrides)
        optimizer_kwargs={"optimizer": "BFGS"},
    )


def default_phase_maker() -> Any:
    """atomate2's ``ForceFieldStaticMaker`` with CHGNet: the energies of the known phases at
    their Materials Project (DFT-relaxed) structures. A ``ForceFieldRelaxMaker`` relaxes them
    too (slower; docs/screening.md, Relaxation funnel, limit 3)."""
    from atomate2.forcefields.jobs import ForceFieldStaticMaker

    return ForceFieldStaticMaker(
        name="gmt_known_phases",
        force_field_name="CHGNet",
        relax_kwargs={"final_atoms_object_file": None},
    )


def potential_identity(maker: Any) -> tuple[str, str | None]:
    """(name, model version) of a force-field maker's potential, e.g. ``("CHGNet", "0.3.0")``:
    the version of a model passed in ``calculator_kwargs``, else CHGNet's default weights (the
    ``model_name`` default of ``CHGNet.load``, what ``CHGNetCalculator`` loads)."""
    name = str(getattr(maker, "force_field_name", "") or "potential").split("MLFF.")[-1]
    kwargs = getattr(maker, "calculator_kwargs", None) or {}
    model = kwargs.get("model")
    if model is not None and getattr(model, "version", None):
        return name, str(model.version)
    if name == "CHGNet":
        if kwargs.get("model_name"):
            return name, str(kwargs["model_name"])
        try:
            from chgnet.model import CHGNet
        except ImportError:
            return name, None
        default = inspect.signature(CHGNet.load).parameters.get("model_name")
        if default is not None and isinstance(default.default, str):
            return name, default.default
    return name, None


def _structure(obj: Any) -> Any:
    """A Structure from a Structure or its dict (jobflow hands job arguments over decoded)."""
    from pymatgen.core import Structure

    return Structure.from_dict(obj) if isinstance(obj, dict) else obj


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def relaxation_settings(maker: Any) -> dict[str, Any]:
    """What decides the result of a relaxation by ``maker``, as its
    :class:`~atomate2_gmt.schemas.prediction.RelaxationInfo` records it: potential and version,
    cell relaxed, optimizer, force criterion, most steps. A stored relaxation with the same
    settings, of the same input document, is reused instead of run again
    (:func:`relax_shortlist`)."""
    name, version = potential_identity(maker)
    return {
        "potential": name,
        "potential_version": version,
        "relax_cell": bool(getattr(maker, "relax_cell", True)),
        "optimizer": str((getattr(maker, "optimizer_kwargs", None) or {}).get("optimizer", "FIRE")),
        "fmax": float((getattr(maker, "relax_kwargs", None) or {}).get("fmax", 0.1)),
        "max_steps": getattr(maker, "steps", None),
    }


def _reusable(
    input_doc: dict[str, Any], relaxed_doc: dict[str, Any] | None, settings: dict[str, Any]
) -> bool:
    """Whether ``relaxed_doc`` (the document ``input_doc`` points to by
    ``relaxed_prediction_id``) is a relaxation of that document with ``settings``, predicted by
    the same model version."""
    if relaxed_doc is None:
        return False
    record = relaxed_doc.get("relaxation") or {}
    return (
        record.get("input_prediction_id") == input_doc[PREDICTION_KEY]
        and all(record.get(k) == v for k, v in settings.items())
        and relaxed_doc.get("model_version") == input_doc.get("model_version")
    )


def relaxation_record(
    task_doc: Any, maker: Any, input_structure: Any, input_prediction_id: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """(relaxed Structure, :class:`~atomate2_gmt.schemas.prediction.RelaxationInfo` fields) of
    an atomate2 ``ForceFieldTaskDocument`` (or its dict) made by ``maker``."""
    from pymatgen.core import Structure

    output = _field(task_doc, "output")
    structure = _structure(_field(output, "structure"))
    if not isinstance(structure, Structure):
        raise ValueError("the relaxation document has no relaxed structure")
    n_atoms = len(structure)
    forces = _field(output, "forces")
    max_force = None
    if forces is not None and len(forces):
        max_force = float(np.max(np.linalg.norm(np.asarray(forces, dtype=float), axis=1)))
    steps = _field(output, "ionic_steps") or []
    initial = _field(steps[0], "energy") if steps else None
    energy = _field(output, "energy")
    converged = _field(task_doc, "is_force_converged")
    settings = relaxation_settings(maker)
    info = {
        "potential": settings["potential"],
        "potential_version": settings["potential_version"],
        "package_version": _field(task_doc, "forcefield_version"),
        "relax_cell": settings["relax_cell"],
        "optimizer": settings["optimizer"],
        "energy_per_atom": None if energy is None else float(energy) / n_atoms,
        "initial_energy_per_atom": None if initial is None else float(initial) / n_atoms,
        "n_steps": _field(output, "n_steps"),
        "max_steps": settings["max_steps"],
        "fmax": settings["fmax"],
        "max_force": max_force,
        "converged": None if converged is None else bool(converged),
        "volume_change": float(structure.volume / input_structure.volume - 1.0),
        "input_prediction_id": input_prediction_id,
    }
    return structure, info


def _entry(doc: dict[str, Any]) -> dict[str, Any]:
    """What the funnel's later jobs need of one shortlisted document."""
    keys = ("material_id", "energy_above_hull", "formation_energy_per_atom", "band_gap")
    return {
        PREDICTION_KEY: doc[PREDICTION_KEY],
        "source": doc["source"],
        "provenance": doc.get("provenance") or {},
        "source_properties": {k: doc.get(k) for k in (*keys, "is_metal") if doc.get(k) is not None},
        "structure": doc["structure"],
        "hypothetical": doc.get("hypothetical"),
    }


@job(name="gmt_funnel_shortlist", **job_role("gmt"))
def relax_shortlist(
    screening: dict[str, Any],
    summaries: list[dict[str, Any]],
    predict_maker: GMTPredictMaker,
    relax_maker: Any = None,
    phase_maker: Any = None,
    shortlist: int = 10,
    top: int = 20,
    store: Store | None = None,
    query: dict[str, Any] | None = None,
    stability: bool = True,
    max_phase_sites: int | None = 40,
) -> Response:
    """The run-time part of the funnel: the ``shortlist`` best documents per property of the
    first screening (``screening``: the output of its ranking job; ``summaries``: those of its
    prediction jobs), one relaxation job each, one
    job for the energies of the known phases of their chemical systems (``stability``), the
    prediction on the relaxed structures (:func:`predict_relaxed`) and the final ranking, which
    leaves out generated crystals that were not relaxed. Replaces itself with that flow; its
    output is the final ranking's."""
    from atomate2_gmt import progress
    from atomate2_gmt.jobs.rank import rank_predictions
    from atomate2_gmt.query import query_candidates
    from atomate2_gmt.stability import known_phases
    from atomate2_gmt.stores import candidate_store

    relax_maker = relax_maker if relax_maker is not None else default_relax_maker()
    phase_maker = phase_maker if phase_maker is not None else default_phase_maker()
    own_store = store if store is not None else candidate_store()
    own_store.connect()
    # drawn from the first screening's predictions: those of unrelaxed structures, also when an
    # earlier run relaxed them (superseded), so that a re-run shortlists the same crystals
    shortlist_query = {**(query or {}), "include_superseded": True, "relaxed": False}
    try:
        ids: list[str] = []
        for task in screening["tasks"]:
            rows = query_candidates(
                own_store,
                task,
                sort=DEFAULT_SORT[task],
                top=shortlist,
                model_version=screening.get("model_version"),
                **shortlist_query,
            )
            ids += [r[PREDICTION_KEY] for r in rows if r[PREDICTION_KEY] not in ids]
        docs = {d[PREDICTION_KEY]: d for d in own_store.query({PREDICTION_KEY: {"$in": ids}})}
        earlier = [
            d["relaxed_prediction_id"] for d in docs.values() if d.get("relaxed_prediction_id")
        ]
        stored = (
            {d[PREDICTION_KEY]: d for d in own_store.query({PREDICTION_KEY: {"$in": earlier}})}
            if earlier
            else {}
        )
    finally:
        if store is None:
            own_store.close()
    entries = [_entry(docs[i]) for i in ids if i in docs and docs[i].get("structure")]
    settings = relaxation_settings(relax_maker)
    reused: list[str] = []  # stored relaxed documents of shortlisted crystals
    to_relax = []
    for entry in entries:
        doc = docs[entry[PREDICTION_KEY]]
        earlier_id = doc.get("relaxed_prediction_id")
        if earlier_id and _reusable(doc, stored.get(earlier_id), settings):
            reused.append(earlier_id)
        else:
            to_relax.append(entry)
    entries = to_relax
    label = " ".join(str(p) for p in (settings["potential"], settings["potential_version"]) if p)
    progress.phase(
        f"shortlist: {len(entries) + len(reused)} crystals; {len(entries)} to relax with {label}"
        + (f", {len(reused)} relaxed in an earlier run (reused)" if reused else ""),
        logger,
    )

    relax_jobs = []
    for k, entry in enumerate(entries, 1):
        relax = relax_maker.make(_structure(entry["structure"]))
        relax.name = f"gmt_relax {k}/{len(entries)} {entry['source']}"[:200]
        relax.metadata = {
            **(relax.metadata or {}),
            KIND_KEY: "relax",
            "source": entry["source"],
            "position": [k, len(entries)],
        }
        relax_jobs.append(relax)
    phases = []
    if stability:
        elements = {
            frozenset(el.symbol for el in _structure(e["structure"]).composition.elements)
            for e in entries
            if e["source_properties"].get("energy_above_hull") is None
        }
        seen: set[str] = set()
        for els in sorted(elements, key=sorted):
            for phase in known_phases(els, max_sites=max_phase_sites):
                if phase.material_id not in seen:
                    seen.add(phase.material_id)
                    phases.append(phase)
    phase_jobs = []
    if phases:
        phase_job = phase_maker.make([p.structure for p in phases])
        phase_job.name = f"gmt_known_phases ({len(phases)})"
        phase_jobs.append(phase_job)
    repredict = predict_relaxed(
        entries,
        [j.output for j in relax_jobs],
        [{"material_id": p.material_id, "formula": p.formula} for p in phases],
        phase_jobs[0].output if phase_jobs else None,
        predict_maker=predict_maker,
        relax_maker=relax_maker,
        store=store,
        model_version=screening.get("model_version"),
        reused=reused,
    )
    repredict.config.on_missing_references = OnMissing.NONE
    rank = rank_predictions(
        [*summaries, repredict.output["summary"]],
        top=top,
        store=store,
        query={**(query or {}), "include_unrelaxed_hypothetical": False},
        funnel=repredict.output["funnel"],
    )
    declare_role([*relax_jobs, *phase_jobs], "gmt")
    flow = Flow([*relax_jobs, *phase_jobs, repredict, rank], output=rank.output, name="gmt_funnel")
    return Response(replace=route_new_jobs(flow))


@job(name="gmt_predict_relaxed", **job_role("gmt", "predict"))
def predict_relaxed(
    entries: list[dict[str, Any]],
    relaxations: Sequence[Any],
    phases: list[dict[str, Any]],
    phase_energies: Sequence[Any] | None,
    predict_maker: GMTPredictMaker,
    relax_maker: Any = None,
    store: Store | None = None,
    model_version: str | None = None,
    reused: Sequence[str] = (),
) -> dict[str, Any]:
    """Predict on the relaxed structures and store their documents.

    ``entries`` are the shortlisted documents (:func:`relax_shortlist`), ``relaxations`` their
    atomate2 relaxation documents in the same order (None where a relaxation job failed),
    ``phases`` the known phases and ``phase_energies`` their atomate2 documents (None when that
    job failed). Each relaxed structure becomes a document with its ``relaxation`` record, the
    input document's source properties and, when the source gave no ``energy_above_hull``, the
    MLIP energy above the hull of the known phases of its chemical system; the input document
    gets ``relaxed_prediction_id``. ``reused``: ids of stored documents of earlier relaxations
    of shortlisted crystals (same input, potential and settings, same model), counted and
    ranked as they are. Returns ``{"summary"`` (as a prediction chunk job's),
    ``"funnel"`` (counts, failures, relaxation time)``}``."""
    from atomate2_gmt.candidates import Candidate
    from atomate2_gmt.jobs.predict import predict_documents
    from atomate2_gmt.schemas.prediction import GMTPredictionDoc
    from atomate2_gmt.schemas.run import PredictionRunDoc
    from atomate2_gmt.stability import energy_above_hull, mlip_stability_source
    from atomate2_gmt.stores import candidate_store, check_store, upsert_predictions

    relax_maker = relax_maker if relax_maker is not None else default_relax_maker()
    name, version = potential_identity(relax_maker)
    label = " ".join(p for p in (name, version) if p)
    t0 = time.perf_counter()
    phase_table = _phase_table(phases, phase_energies)
    candidates, records, failures, relax_time = [], {}, [], 0.0
    for entry, relaxed in zip(entries, relaxations, strict=True):
        if relaxed is None:
            failures.append([entry["source"], "relaxation job failed"])
            continue
        try:
            initial = _structure(entry["structure"])
            structure, info = relaxation_record(
                relaxed, relax_maker, initial, entry[PREDICTION_KEY]
            )
        except Exception as exc:
            failures.append([entry["source"], f"unusable relaxation ({type(exc).__name__}: {exc})"])
            continue
        relax_time += float(_field(_field(relaxed, "output"), "elapsed_time") or 0.0)
        stability: dict[str, Any] = {}
        if entry["source_properties"].get("energy_above_hull") is None and info["energy_per_atom"]:
            usable = [
                (comp, e)
                for comp, els, e in phase_table
                if els <= {el.symbol for el in structure.composition.elements}
            ]
            e_hull = energy_above_hull(structure.composition, info["energy_per_atom"], usable)
            if e_hull is not None:
                stability = {
                    "mlip_energy_above_hull": e_hull,
                    "stability_source": mlip_stability_source(label, len(usable)),
                }
        key = f"{entry[PREDICTION_KEY]}"
        records[key] = {"relaxation": info, **stability}
        candidates.append(
            Candidate(
                source=entry["source"],
                structure=structure,
                provenance={**entry["provenance"], "relaxed_from": key},
                source_properties=dict(entry["source_properties"]),
            )
        )
    settings = predict_maker.settings()
    own_store = store if store is not None else candidate_store(settings)
    check_store(own_store, timeout_s=settings.STORE_TIMEOUT_S)
    maker = replace(
        predict_maker, write_to_store=False, return_documents=True, skip_existing=False, store=None
    )
    docs = predict_documents(maker, candidates).documents if candidates else []
    out_docs, superseded = [], {}
    for doc in docs:
        src_id = str((doc.get("provenance") or {}).get("relaxed_from") or "")
        doc.update(records.get(src_id, {}))
        if doc.get("state") != "successful":
            failures.append([doc["source"], f"prediction on the relaxed structure: {doc['error']}"])
        out_docs.append(GMTPredictionDoc.model_validate(doc).to_store_dict())
        if src_id and src_id != doc[PREDICTION_KEY] and doc.get("state") == "successful":
            superseded[src_id] = doc[PREDICTION_KEY]
    own_store.connect()
    try:
        upsert_predictions(own_store, out_docs)
        olds = list(own_store.query({PREDICTION_KEY: {"$in": list(superseded)}}))
        for old in olds:
            old.pop("_id", None)
            old["relaxed_prediction_id"] = superseded[old[PREDICTION_KEY]]
        if olds:
            upsert_predictions(own_store, olds)
        earlier = list(own_store.query({PREDICTION_KEY: {"$in": list(reused)}})) if reused else []
    finally:
        if store is None:
            own_store.close()
    for doc in earlier:
        records[doc[PREDICTION_KEY]] = {"relaxation": doc.get("relaxation") or {}}
    out_docs = [*out_docs, *earlier]
    ids = [d[PREDICTION_KEY] for d in out_docs]
    successful = [d for d in out_docs if d["state"] == "successful"]
    return {
        "summary": PredictionRunDoc(
            n=0,  # the inputs were counted by the first screening
            n_documents=len(set(ids)),
            n_successful=0,
            n_failed=0,
            prediction_ids=ids,
            model_version=str(docs[0]["model_version"] if docs else model_version),
            tasks=sorted({t for d in out_docs for t in d["tasks"]}),
        ),
        "funnel": {
            "potential": label,
            "n_shortlisted": len(entries) + len(earlier),
            "n_relaxed": len(candidates) + len(earlier),
            "n_reused": len(earlier),
            "n_converged": sum(1 for r in records.values() if r["relaxation"].get("converged")),
            "n_predicted": len(successful),
            "n_mlip_hull": sum(
                1 for d in successful if d.get("mlip_energy_above_hull") is not None
            ),
            "n_known_phases": len(phase_table),
            "relaxation_time_s": relax_time,
            "predict_time_s": time.perf_counter() - t0,
            "failures": failures,
        },
    }


def _phase_table(
    phases: list[dict[str, Any]], phase_energies: Sequence[Any] | None
) -> list[tuple[Any, frozenset[str], float]]:
    """(composition, elements, energy per atom) of each known phase whose energy is known."""
    if not phase_energies:
        return []
    table = []
    for _phase, doc in zip(phases, phase_energies, strict=True):
        output = _field(doc, "output")
        structure = _field(output, "structure")
        energy = _field(output, "energy")
        if structure is None or energy is None or not np.isfinite(energy):
            continue
        comp = _structure(structure).composition
        table.append(
            (comp, frozenset(el.symbol for el in comp.elements), float(energy) / comp.num_atoms)
        )
    return table
