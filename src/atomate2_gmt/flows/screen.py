"""``GMTScreenMaker``: candidates → chunked prediction jobs that write to the store → ranking."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from jobflow import Flow, Maker

from atomate2_gmt.jobs.predict import GMTPredictMaker
from atomate2_gmt.jobs.rank import rank_predictions

if TYPE_CHECKING:
    from collections.abc import Sequence

    from maggma.core import Store

__all__ = ["GMTScreenMaker", "screening_inputs"]


def screening_inputs(candidates: Any) -> list[Any]:
    """What the chunk jobs take: a folder → its structure files (paths, read on the worker), a
    file → [file], a maggma store → its candidates, a list → itself with its structures made
    candidates named by their place in the whole list (:func:`atomate2_gmt.candidates.
    as_candidates` with ``read_files=False``)."""
    from atomate2_gmt.candidates import as_candidates

    return as_candidates(candidates, read_files=False)


@dataclass
class GMTScreenMaker(Maker):
    """Screen candidates: split them into chunks, predict each chunk in one job that upserts its
    documents into the candidate store, then rank.

    The chunk jobs are independent (parallel under jobflow-remote). Writing from the chunk job
    (rather than a separate upsert job) keeps the documents out of the jobflow job store; the
    upsert is idempotent on ``prediction_id`` (= structure key + model version), so a re-run
    after a failure completes the missing documents without duplicates.

    Args:
        name: flow name.
        predict_maker: the per-chunk prediction (tasks, models, device, batch size).
        chunk_size: structures per prediction job.
        store: the candidate store; None → the settings' store, resolved on each worker.
        top: rows per property in the ranking.
        query: extra filters of the ranking (see :func:`atomate2_gmt.query.query_candidates`).
        check_store: connect to the store when the flow is made, so that an unreachable store
            fails before any prediction runs.
    """

    name: str = "gmt_screen"
    predict_maker: GMTPredictMaker = field(default_factory=GMTPredictMaker)
    chunk_size: int = 500
    store: Store | None = None
    top: int = 20
    query: dict[str, Any] | None = None
    check_store: bool = True

    def make(self, candidates: Any) -> Flow:
        """The flow for ``candidates`` (folder, file, store, or list of structures/candidates);
        its output is the ranking job's output."""
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        items: Sequence[Any] = screening_inputs(candidates)
        if not items:
            raise ValueError("no candidates to screen")
        if self.check_store:
            self._check_store()
        self.predict_maker.resolve_tasks()  # unknown tasks / missing models fail now
        jobs = []
        for n, start in enumerate(range(0, len(items), self.chunk_size)):
            maker = replace(
                self.predict_maker,
                name=f"{self.predict_maker.name}_{n}",
                write_to_store=True,
                store=self.store,
                return_documents=False,
            )
            jobs.append(maker.make(list(items[start : start + self.chunk_size])))
        rank = rank_predictions(
            [j.output for j in jobs], top=self.top, store=self.store, query=self.query
        )
        return Flow([*jobs, rank], output=rank.output, name=self.name)

    def _check_store(self) -> None:
        from atomate2_gmt.settings import GMTSettings
        from atomate2_gmt.stores import candidate_store, check_store

        settings = GMTSettings()
        store = self.store if self.store is not None else candidate_store(settings)
        check_store(store, timeout_s=settings.STORE_TIMEOUT_S)
        store.close()
