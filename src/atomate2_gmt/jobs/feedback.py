"""DFPT feedback: validated DFPT results become training documents and candidate annotations.

:func:`apply_feedback` (and its jobflow wrapper :func:`feedback_job`) takes one
:class:`~atomate2_gmt.schemas.dfpt.DFPTResultDoc`, checks it with
:func:`~atomate2_gmt.dfpt.validation.check_dfpt_result` and

- if accepted, upserts one :class:`~atomate2_gmt.schemas.training.TrainingDoc` per training-target
  part into the training store (key ``record_id``: re-running writes no duplicates);
- in every case sets the ``dfpt`` field of the candidate's prediction document(s) — found by
  ``candidate_id`` (= ``prediction_id``), else by ``structure_key`` — to ``{state, code,
  dfpt_state, tensors (task → full Cartesian tensor), reasons, training_record_ids, job_uuid,
  last_updated}``, keeping the rest of the document. ``state`` is ``accepted``, ``rejected``
  (reasons say why; nothing is written as training data) or ``failed`` (the calculation failed).

:class:`DFPTFeedbackBuilder` (``jobs/builders.py``) does the same in bulk.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from jobflow import job
from maggma.core import Store

from atomate2_gmt.dfpt.validation import check_dfpt_result
from atomate2_gmt.schemas.dfpt import PART_TASK, DFPTResultDoc
from atomate2_gmt.schemas.fields import PREDICTION_KEY
from atomate2_gmt.schemas.training import TRAINING_DOC_INDEXES, TRAINING_KEY, TrainingDoc

__all__ = [
    "apply_feedback",
    "as_dfpt_doc",
    "feedback_field",
    "feedback_job",
    "training_docs_for",
    "update_candidate",
    "write_training_docs",
]

logger = logging.getLogger(__name__)


def as_dfpt_doc(dfpt_doc: DFPTResultDoc | dict[str, Any]) -> DFPTResultDoc:
    """The DFPTResultDoc of a document or its (store) dict."""
    if isinstance(dfpt_doc, DFPTResultDoc):
        return dfpt_doc
    return DFPTResultDoc.model_validate(
        {k: v for k, v in dfpt_doc.items() if not k.startswith("@") and k != "_id"}
    )


def training_docs_for(
    doc: DFPTResultDoc, symprec: float = 0.01
) -> tuple[list[TrainingDoc], list[str]]:
    """(training documents, rejection reasons) of one DFPT result: docs only if no reasons."""
    reasons = check_dfpt_result(doc, symprec=symprec)
    if not reasons and not doc.structure_key:
        reasons = ["no structure_key: cannot deduplicate the training records"]
    if reasons:
        return [], reasons
    docs = TrainingDoc.from_dfpt(doc)
    if not docs:
        reasons = [f"none of the training parts {', '.join(PART_TASK)} was computed"]
    return docs, reasons


def write_training_docs(store: Store, docs: list[TrainingDoc]) -> list[str]:
    """Upsert ``docs`` on ``record_id`` (indexes created first); keeps an existing
    ``created_at``. Returns the record ids written."""
    if not docs:
        return []
    from atomate2_gmt.stores import ensure_indexes

    if not getattr(store, "_gmt_training_indexes", False):
        ensure_indexes(store, TRAINING_DOC_INDEXES)
        store._gmt_training_indexes = True  # type: ignore[attr-defined]
    ids = [d.record_id for d in docs]
    existing = {
        d[TRAINING_KEY]: d.get("created_at")
        for d in store.query(
            criteria={TRAINING_KEY: {"$in": ids}}, properties=[TRAINING_KEY, "created_at"]
        )
    }
    rows = []
    for d in docs:
        row = d.to_store_dict()
        if existing.get(d.record_id) is not None:
            row["created_at"] = existing[d.record_id]
        rows.append(row)
    store.update(rows, key=TRAINING_KEY)
    return ids


def _candidate_criteria(doc: DFPTResultDoc, store: Store) -> dict[str, Any] | None:
    if doc.candidate_id and store.count({PREDICTION_KEY: doc.candidate_id}) > 0:
        return {PREDICTION_KEY: doc.candidate_id}
    if doc.structure_key:
        return {"structure_key": doc.structure_key}
    return None


def update_candidate(store: Store, doc: DFPTResultDoc, feedback: dict[str, Any]) -> list[str]:
    """Set ``dfpt`` = ``feedback`` on the candidate document(s) of ``doc``, keeping every other
    field (read, modify, replace on ``prediction_id``). Returns the prediction ids updated."""
    criteria = _candidate_criteria(doc, store)
    if criteria is None:
        return []
    updated = []
    rows = []
    for cand in store.query(criteria=criteria):
        cand = {k: v for k, v in cand.items() if k != "_id"}
        cand["dfpt"] = feedback
        rows.append(cand)
        updated.append(cand[PREDICTION_KEY])
    if rows:
        store.update(rows, key=PREDICTION_KEY)
    else:
        logger.warning("no candidate document for DFPT result %s", criteria)
    return updated


def feedback_field(doc: DFPTResultDoc, reasons: list[str], record_ids: list[str]) -> dict[str, Any]:
    """The candidate's ``dfpt`` field for one result (tensors per task: full, Cartesian)."""
    state = "failed" if doc.state == "failed" else ("rejected" if reasons else "accepted")
    tensors = {task: doc.tensors[part] for part, task in PART_TASK.items() if part in doc.tensors}
    return {
        "state": state,
        "dfpt_state": doc.state,
        "code": doc.code,
        "tensors": tensors,
        "reasons": reasons,
        "training_record_ids": record_ids,
        "job_uuid": doc.job_uuid,
        "last_updated": datetime.now(UTC),
    }


def apply_feedback(
    dfpt_doc: DFPTResultDoc | dict[str, Any],
    training_store: Store | None = None,
    candidate_store: Store | None = None,
    symprec: float = 0.01,
) -> dict[str, Any]:
    """Validate, write training documents, annotate the candidate (see module doc).

    Stores default to the settings' ``training_store()`` / ``candidate_store()``; they are
    connected here and left open. Returns ``{state, reasons, training_record_ids,
    candidates_updated}``.
    """
    from atomate2_gmt.stores import candidate_store as _candidates
    from atomate2_gmt.stores import training_store as _training

    doc = as_dfpt_doc(dfpt_doc)
    docs, reasons = training_docs_for(doc, symprec=symprec)
    record_ids: list[str] = []
    if docs:
        training_store = training_store if training_store is not None else _training()
        training_store.connect()
        record_ids = write_training_docs(training_store, docs)
    feedback = feedback_field(doc, reasons, record_ids)
    candidate_store = candidate_store if candidate_store is not None else _candidates()
    candidate_store.connect()
    updated = update_candidate(candidate_store, doc, feedback)
    return {
        "state": feedback["state"],
        "reasons": reasons,
        "training_record_ids": record_ids,
        "candidates_updated": updated,
    }


@job(name="dfpt_feedback")
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
