"""DFPT feedback: validated DFPT results become training documents and candidate annotations.

:func:`apply_feedback` (and its jobflow wrapper :func:`feedback_job`) takes one
:class:`~atomate2_gmt.schemas.dfpt.DFPTResultDoc`, checks it with
:func:`~atomate2_gmt.dfpt.validation.check_dfpt_result` and

- if accepted, upserts one :class:`~atomate2_gmt.schemas.training.TrainingDoc` per training-target
  part into the training store (key ``record_id``: re-running writes no duplicates). A result
  without a ``structure_key`` gets its structure's key; a wrong key was refused by validation;
- never replaces a stored training record by a different tensor (:func:`write_training_docs`):
  the first validated result of a ``record_id`` stays the one used for training, a later result
  that differs by more than :data:`CONFLICT_RTOL` is kept beside it as a conflicting record
  (``"<record_id>~<digest>"``, ``conflict_with``, ``use_for_training`` False) and listed in the
  stored record's ``conflicts``; :func:`resolve_training_conflict` lets a person choose the
  other one. Writing the same result again changes nothing but its provenance;
- annotates the candidate's prediction document(s) — found by ``candidate_id`` (=
  ``prediction_id``), else by ``structure_key`` — with ``dfpt`` = ``{state, code, dfpt_state,
  tensors (task → full Cartesian tensor), reasons, training_record_ids, job_uuid,
  last_updated}``, keeping the rest of the document. ``state`` is ``accepted``, ``rejected``
  (reasons say why; nothing is written as training data) or ``failed`` (the calculation failed).
  Every submission is appended to the candidate's ``dfpt_history`` (its state, reasons, code,
  job and time, at most :data:`HISTORY_LENGTH`); an accepted ``dfpt`` is never replaced by a
  later rejected or failed one, only by a later accepted one;
- a result names the structure it was computed for, and it must be the candidate's: a result
  whose structure's key differs from the ``structure_key`` of the candidate its
  ``candidate_id`` names is rejected whole (no training data, no annotation), so a ZnO result
  sent with AlN's id never becomes AlN's DFPT.

:class:`DFPTFeedbackBuilder` (``jobs/builders.py``) does the same in bulk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from jobflow import job
from maggma.core import Store

from atomate2_gmt.dfpt.validation import KEY_SYMPREC, RESIDUAL_FLOOR, check_dfpt_result
from atomate2_gmt.routing import job_role
from atomate2_gmt.schemas.dfpt import PART_TASK, DFPTResultDoc
from atomate2_gmt.schemas.fields import PREDICTION_KEY
from atomate2_gmt.schemas.training import TRAINING_DOC_INDEXES, TRAINING_KEY, TrainingDoc
from atomate2_gmt.tensors.conventions import kind_of

__all__ = [
    "CONFLICT_RTOL",
    "CONFLICT_SEPARATOR",
    "HISTORY_LENGTH",
    "apply_feedback",
    "as_dfpt_doc",
    "conflict_record_id",
    "feedback_field",
    "feedback_job",
    "resolve_training_conflict",
    "same_tensor",
    "structure_mismatch",
    "training_docs_for",
    "update_candidate",
    "write_training_docs",
]

CONFLICT_RTOL = 1e-3
"""Two tensors of one ``record_id`` are the same result when ``|A − B|_F ≤ CONFLICT_RTOL ·
max(|A|_F, |B|_F, floor)`` (floor: ``dfpt.validation.RESIDUAL_FLOOR`` of the kind)."""

HISTORY_LENGTH = 50
"""Most submissions kept in a candidate's ``dfpt_history`` (the latest)."""

CONFLICT_SEPARATOR = "~"
"""Separates a conflicting record's ``record_id`` from the digest of its tensor."""

logger = logging.getLogger(__name__)


def as_dfpt_doc(dfpt_doc: DFPTResultDoc | dict[str, Any]) -> DFPTResultDoc:
    """The DFPTResultDoc of a document or its (store) dict."""
    if isinstance(dfpt_doc, DFPTResultDoc):
        return dfpt_doc
    return DFPTResultDoc.model_validate(
        {k: v for k, v in dfpt_doc.items() if not k.startswith("@") and k != "_id"}
    )


def _structure_key_of(doc: DFPTResultDoc) -> str:
    from atomate2_gmt.tensors.symmetry.analysis import structure_key

    return structure_key(doc.get_structure(), symprec=KEY_SYMPREC)


def _key_at_key_symprec(structure: dict[str, Any]) -> str:
    """The key of a stored candidate's structure at the tolerance results are keyed at."""
    from pymatgen.core import Structure

    from atomate2_gmt.tensors.symmetry.analysis import structure_key

    return structure_key(Structure.from_dict(structure), symprec=KEY_SYMPREC)


def training_docs_for(
    doc: DFPTResultDoc, symprec: float = 0.01
) -> tuple[list[TrainingDoc], list[str]]:
    """(training documents, rejection reasons) of one DFPT result: docs only if no reasons.

    A result without a ``structure_key`` is keyed by its structure (validation refuses a key
    that is not the structure's)."""
    reasons = check_dfpt_result(doc, symprec=symprec)
    if not reasons and not doc.structure_key:
        try:
            doc = doc.model_copy(update={"structure_key": _structure_key_of(doc)})
        except (ValueError, KeyError, TypeError) as exc:
            reasons = [f"no structure_key, and the structure cannot be keyed: {exc}"]
    if reasons:
        return [], reasons
    docs = TrainingDoc.from_dfpt(doc)
    if not docs:
        reasons = [f"none of the training parts {', '.join(PART_TASK)} was computed"]
    return docs, reasons


def same_tensor(a: Any, b: Any, task: str) -> bool:
    """Whether two tensors of ``task`` are the same result (:data:`CONFLICT_RTOL`)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        return False
    scale = max(float(np.linalg.norm(x)), float(np.linalg.norm(y)))
    scale = max(scale, RESIDUAL_FLOOR[kind_of(task)])
    return bool(np.linalg.norm(x - y) <= CONFLICT_RTOL * scale)


def conflict_record_id(record_id: str, tensor: Any) -> str:
    """``"<record_id>~<digest>"``: the key of a result that conflicts with ``record_id``; the
    digest (12 hex digits of SHA-256 of the tensor rounded to 1e-6) is the same for the same
    tensor, so re-submitting a conflicting result adds nothing."""
    rounded = np.round(np.asarray(tensor, dtype=float), 6) + 0.0
    digest = hashlib.sha256(json.dumps(rounded.tolist()).encode()).hexdigest()[:12]
    return f"{record_id}{CONFLICT_SEPARATOR}{digest}"


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "_id"}


def write_training_docs(store: Store, docs: list[TrainingDoc]) -> list[str]:
    """Write ``docs`` (indexes created first) without ever replacing a stored tensor by a
    different one; returns the record ids written.

    - no record with the ``record_id``: written;
    - a record with the same tensor (:func:`same_tensor`): replaced (provenance refreshed;
      ``created_at`` and ``conflicts`` kept), so re-running adds nothing;
    - a record with a different tensor: the stored one is kept and stays the one used for
      training; the new result is written as ``conflict_record_id(record_id, tensor)`` with
      ``conflict_with`` = the stored id and ``use_for_training`` False, and its id is added to
      the stored record's ``conflicts``.
    """
    if not docs:
        return []
    from atomate2_gmt.stores import ensure_indexes

    if not getattr(store, "_gmt_training_indexes", False):
        ensure_indexes(store, TRAINING_DOC_INDEXES)
        store._gmt_training_indexes = True  # type: ignore[attr-defined]
    ids = [d.record_id for d in docs]
    stored: dict[str, dict[str, Any]] = {}
    conflicts: dict[str, list[dict[str, Any]]] = {}
    for d in store.query(
        criteria={"$or": [{TRAINING_KEY: {"$in": ids}}, {"conflict_with": {"$in": ids}}]}
    ):
        if d.get("conflict_with") in ids:
            conflicts.setdefault(d["conflict_with"], []).append(_plain(d))
        else:
            stored[d[TRAINING_KEY]] = _plain(d)
    rows: dict[str, dict[str, Any]] = {}
    written = []
    for doc in docs:
        rid = doc.record_id
        prior = stored.get(rid)
        if prior is None or same_tensor(prior.get("tensor"), doc.tensor, doc.task):
            row = doc.to_store_dict()
            if prior is not None:
                row["created_at"] = prior.get("created_at") or row["created_at"]
                row["conflicts"] = list(prior.get("conflicts") or [])
            rows[rid] = stored[rid] = row
            written.append(rid)
            continue
        match = next(
            (
                c
                for c in conflicts.get(rid, [])
                if same_tensor(c.get("tensor"), doc.tensor, doc.task)
            ),
            None,
        )
        cid = match[TRAINING_KEY] if match else conflict_record_id(rid, doc.tensor)
        row = doc.model_copy(
            update={"record_id": cid, "id": cid, "use_for_training": False, "conflict_with": rid}
        ).to_store_dict()
        if match is not None:
            row["created_at"] = match.get("created_at") or row["created_at"]
        else:
            conflicts.setdefault(rid, []).append(row)
        rows[cid] = row
        if cid not in (prior.get("conflicts") or []):
            prior = {**prior, "conflicts": sorted({*(prior.get("conflicts") or []), cid})}
            rows[rid] = stored[rid] = prior
        logger.warning(
            "training record %s already holds a different validated tensor: the new result is "
            "kept as %s and not used for training",
            rid,
            cid,
        )
        written.append(cid)
    store.update(list(rows.values()), key=TRAINING_KEY)
    return written


def resolve_training_conflict(store: Store, record_id: str, use: str) -> None:
    """Make the conflicting record ``use`` (listed in ``record_id``'s ``conflicts``) the one
    used for training: its tensor and provenance move to ``record_id``, the replaced result
    becomes a conflicting record in turn. ``ValueError`` when ``use`` is not a conflict of
    ``record_id``."""
    store.connect()
    prior = next(iter(store.query(criteria={TRAINING_KEY: record_id})), None)
    chosen = next(iter(store.query(criteria={TRAINING_KEY: use})), None)
    if prior is None:
        raise ValueError(f"no training record {record_id!r}")
    if chosen is None or chosen.get("conflict_with") != record_id:
        raise ValueError(f"{use!r} is not a record that conflicts with {record_id!r}")
    prior, chosen = _plain(prior), _plain(chosen)
    old_id = conflict_record_id(record_id, prior["tensor"])
    others = [c for c in prior.get("conflicts") or [] if c != use]
    demoted = {
        **prior, TRAINING_KEY: old_id, "id": old_id, "use_for_training": False,
        "conflict_with": record_id, "conflicts": [],
    }  # fmt: skip
    promoted = {
        **chosen, TRAINING_KEY: record_id, "id": record_id, "use_for_training": True,
        "conflict_with": None, "conflicts": sorted({*others, old_id}),
        "last_updated": datetime.now(UTC),
    }  # fmt: skip
    store.update([demoted, promoted], key=TRAINING_KEY)
    store.remove_docs({TRAINING_KEY: use})


def _candidate_criteria(doc: DFPTResultDoc, store: Store) -> dict[str, Any] | None:
    if doc.candidate_id and store.count({PREDICTION_KEY: doc.candidate_id}) > 0:
        return {PREDICTION_KEY: doc.candidate_id}
    if doc.structure_key:
        try:  # the structure's own key: a wrong key must not mark another crystal as computed
            return {"structure_key": _structure_key_of(doc)}
        except (ValueError, KeyError, TypeError):
            return None
    return None


_HISTORY_FIELDS: tuple[str, ...] = (
    "state", "dfpt_state", "code", "reasons", "training_record_ids", "job_uuid", "last_updated",
)  # fmt: skip


def structure_mismatch(store: Store, doc: DFPTResultDoc) -> str | None:
    """Why ``doc`` was not computed for the candidate its ``candidate_id`` names, or None: the
    key of the result's own structure must be the candidate's ``structure_key``."""
    if not doc.candidate_id:
        return None
    found = list(
        store.query(
            {PREDICTION_KEY: doc.candidate_id},
            properties=["structure_key", "formula_pretty", "structure"],
        )
    )
    if not found:
        return None
    if not doc.structure:
        return (
            f"the result names no structure: it cannot be matched to candidate {doc.candidate_id}"
        )
    try:
        key = _structure_key_of(doc)
    except (ValueError, KeyError, TypeError) as exc:
        return f"the result's structure cannot be keyed ({exc}): it cannot be matched"
    cand = found[0]
    cand_key = cand.get("structure_key")
    if cand.get("structure"):  # keyed at the same tolerance as the result, whatever the run's
        with contextlib.suppress(ValueError, KeyError, TypeError):
            cand_key = _key_at_key_symprec(cand["structure"])
    if cand_key != key:
        formula = doc.get_structure().composition.reduced_formula
        return (
            f"the result's structure ({formula}, key {key}) is not the structure of candidate "
            f"{doc.candidate_id} ({cand.get('formula_pretty')}, key {cand_key}): "
            "a result must be computed for its candidate's structure"
        )
    return None


def update_candidate(store: Store, doc: DFPTResultDoc, feedback: dict[str, Any]) -> list[str]:
    """Annotate the candidate document(s) of ``doc`` with ``feedback`` (see the module doc:
    ``dfpt`` unless an accepted one would be replaced by a rejected or failed one, and always
    ``dfpt_history``), keeping every other field (read, modify, replace on ``prediction_id``).
    Returns the prediction ids updated."""
    criteria = _candidate_criteria(doc, store)
    if criteria is None:
        return []
    updated = []
    rows = []
    entry = {k: feedback.get(k) for k in _HISTORY_FIELDS}
    for cand in store.query(criteria=criteria):
        cand = {k: v for k, v in cand.items() if k != "_id"}
        history = list(cand.get("dfpt_history") or [])
        if not history and isinstance(cand.get("dfpt"), dict):  # annotated before the history
            history.append({k: cand["dfpt"].get(k) for k in _HISTORY_FIELDS})
        cand["dfpt_history"] = [*history, entry][-HISTORY_LENGTH:]
        kept = (cand.get("dfpt") or {}).get("state") == "accepted"
        if not kept or feedback["state"] == "accepted":
            cand["dfpt"] = feedback
        rows.append(cand)
        updated.append(cand[PREDICTION_KEY])
    if rows:
        store.update(rows, key=PREDICTION_KEY)
    else:
        logger.warning("no candidate document for DFPT result %s", criteria)
    return updated


def feedback_field(doc: DFPTResultDoc, reasons: list[str], record_ids: list[str]) -> dict[str, Any]:
    """The candidate's ``dfpt`` field for one result (tensors per task: full, Cartesian): a
    :class:`~atomate2_gmt.schemas.prediction.DFPTFeedback` in its stored form."""
    from atomate2_gmt.schemas.prediction import DFPTFeedback

    state: Literal["accepted", "rejected", "failed"] = (
        "failed" if doc.state == "failed" else ("rejected" if reasons else "accepted")
    )
    tensors = {task: doc.tensors[part] for part, task in PART_TASK.items() if part in doc.tensors}
    return DFPTFeedback(
        state=state,
        dfpt_state=doc.state,
        code=doc.code,
        tensors=tensors,
        reasons=reasons,
        training_record_ids=record_ids,
        training_conflicts=[r for r in record_ids if CONFLICT_SEPARATOR in r],
        job_uuid=doc.job_uuid,
        last_updated=datetime.now(UTC),
    ).to_store_dict()


def apply_feedback(
    dfpt_doc: DFPTResultDoc | dict[str, Any],
    training_store: Store | None = None,
    candidate_store: Store | None = None,
    symprec: float = 0.01,
) -> dict[str, Any]:
    """Validate, write training documents, annotate the candidate (see module doc).

    Stores default to the settings' ``training_store()`` / ``candidate_store()``; they are
    connected here and left open. Returns ``{state, reasons, training_record_ids,
    training_conflicts, candidates_updated}`` (``training_conflicts``: the ids written as
    conflicting records, not used for training; see :func:`write_training_docs`).
    """
    from atomate2_gmt.stores import candidate_store as _candidates
    from atomate2_gmt.stores import training_store as _training

    doc = as_dfpt_doc(dfpt_doc)
    candidate_store = candidate_store if candidate_store is not None else _candidates()
    candidate_store.connect()
    if doc.state != "failed" or doc.structure:
        mismatch = structure_mismatch(candidate_store, doc)
        if mismatch is not None:
            logger.warning("DFPT result refused: %s", mismatch)
            return {
                "state": "rejected",
                "reasons": [mismatch],
                "training_record_ids": [],
                "training_conflicts": [],
                "candidates_updated": [],
            }
    docs, reasons = training_docs_for(doc, symprec=symprec)
    record_ids: list[str] = []
    if docs:
        training_store = training_store if training_store is not None else _training()
        training_store.connect()
        record_ids = write_training_docs(training_store, docs)
    feedback = feedback_field(doc, reasons, record_ids)
    updated = update_candidate(candidate_store, doc, feedback)
    return {
        "state": feedback["state"],
        "reasons": reasons,
        "training_record_ids": record_ids,
        "training_conflicts": feedback["training_conflicts"],
        "candidates_updated": updated,
    }


@job(name="dfpt_feedback", **job_role("dfpt_serial"))
def feedback_job(
    dfpt_doc: DFPTResultDoc | dict[str, Any] | None,
    training_store: Store | None = None,
    candidate_store: Store | None = None,
    symprec: float = 0.01,
    candidate_id: str | None = None,
    structure: dict[str, Any] | None = None,
    code: str = "abinit",
) -> dict[str, Any]:
    """jobflow job: :func:`apply_feedback` (the stores are closed afterwards).

    ``dfpt_doc`` None means the DFPT job itself died (the job runs with ``OnMissing.NONE``
    after the DFPT flow): the candidate ``candidate_id`` is then marked failed, and nothing is
    written as training data.
    """
    if dfpt_doc is None:
        dfpt_doc = DFPTResultDoc(
            structure=structure or {},
            code=code,  # type: ignore[arg-type]
            state="failed",
            error="the DFPT calculation produced no result (its job failed)",
            candidate_id=candidate_id,
        )
    try:
        return apply_feedback(dfpt_doc, training_store, candidate_store, symprec)
    finally:
        for store in (training_store, candidate_store):
            if store is not None:
                store.close()
