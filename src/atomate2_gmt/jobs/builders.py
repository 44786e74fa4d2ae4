"""maggma builder: DFPT results (bulk) → training documents (and candidate annotations)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from maggma.core import Builder, Store

from atomate2_gmt.jobs.feedback import (
    as_dfpt_doc,
    feedback_field,
    structure_mismatch,
    training_docs_for,
    update_candidate,
    write_training_docs,
)

__all__ = ["DFPTFeedbackBuilder"]


class DFPTFeedbackBuilder(Builder):
    """Validate every DFPTResultDoc (dict) in ``source``; write TrainingDocs to ``target``.

    Re-running is idempotent (upserts on ``record_id``). With ``candidates`` the prediction
    documents are annotated as by :func:`~atomate2_gmt.jobs.feedback.apply_feedback`.
    After :meth:`run`, ``self.summary`` counts accepted / rejected / failed results.
    """

    def __init__(
        self,
        source: Store,
        target: Store,
        candidates: Store | None = None,
        query: dict[str, Any] | None = None,
        symprec: float = 0.01,
        **kwargs: Any,
    ) -> None:
        self.source = source
        self.target = target
        self.candidates = candidates
        self.query = query or {}
        self.symprec = symprec
        self.summary: dict[str, int] = {"accepted": 0, "rejected": 0, "failed": 0}
        sources = [source]
        targets = [target] + ([candidates] if candidates is not None else [])
        super().__init__(sources=sources, targets=targets, **kwargs)

    def get_items(self) -> Iterator[dict[str, Any]]:
        """The DFPT result dicts matching ``query``."""
        self.summary = {"accepted": 0, "rejected": 0, "failed": 0}
        yield from self.source.query(criteria=self.query)

    def process_item(self, item: dict[str, Any]) -> dict[str, Any]:
        """Validate one result: its training docs, reasons and feedback field."""
        try:
            doc = as_dfpt_doc(item)
        except ValueError as exc:
            return {"doc": None, "training": [], "reasons": [f"invalid DFPT result: {exc}"]}
        docs, reasons = training_docs_for(doc, symprec=self.symprec)
        return {"doc": doc, "training": docs, "reasons": reasons}

    def update_targets(self, items: list[dict[str, Any]]) -> None:
        """Upsert the training docs; annotate candidates; count outcomes."""
        for item in items:
            doc = item["doc"]
            if doc is not None and self.candidates is not None:
                mismatch = structure_mismatch(self.candidates, doc)
                if mismatch is not None:  # not the named candidate's crystal: refused whole
                    self.summary["rejected"] += 1
                    continue
            ids = write_training_docs(self.target, item["training"])
            state = (
                "failed"
                if doc is None or doc.state == "failed"
                else ("rejected" if item["reasons"] else "accepted")
            )
            self.summary[state] += 1
            if doc is not None and self.candidates is not None:
                update_candidate(self.candidates, doc, feedback_field(doc, item["reasons"], ids))
