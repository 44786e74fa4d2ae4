"""``GMTScreenMaker``: candidates → chunked prediction jobs that write to the store → ranking."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
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
    file → [file] (a collection file of many records → a
    :class:`~atomate2_gmt.sources.SourceSlice` of it, cut into chunks by the Maker), a maggma
    store → its candidates, a list → itself with its structures made candidates named by their
    place in the whole list (:func:`atomate2_gmt.candidates.as_candidates` with
    ``read_files=False``)."""
    from atomate2_gmt.candidates import as_candidates

    return as_candidates(candidates, read_files=False)


@dataclass
class GMTScreenMaker(Maker):
    """Screen candidates: split them into chunks, predict each chunk in one job that upserts its
    documents into the candidate store, then rank.

    The chunk jobs are independent (parallel under jobflow-remote); each writes its documents
    to the store itself (why: :class:`~atomate2_gmt.jobs.predict.GMTPredictMaker`) and outputs
    a :class:`~atomate2_gmt.schemas.run.PredictionRunDoc` without them. The upsert is
    idempotent on ``prediction_id`` (= structure key + model version), so a re-run after a
    failure completes the missing documents without duplicates. A chunk job of files (a folder's
    files or a part of a collection) that finished leaves a done marker in ``work_dir``/done
    (``GMTPredictMaker.done_dir``): a re-run returns its summary without reading the chunk
    again, and the job outputs carry the chunks' counts and failures, not their documents'
    keys (those are in the markers), so they do not grow with the number of structures.

    Args:
        name: flow name.
        predict_maker: the per-chunk prediction (tasks, models, device, batch size).
        chunk_size: structures per prediction job.
        store: the candidate store; None → the settings' store, resolved on each worker.
        top: rows per property in the ranking.
        query: extra filters of the ranking (see :func:`atomate2_gmt.query.query_candidates`).
        check_store: connect to the store when the flow is made, so that an unreachable store
            fails before any prediction runs.
        work_dir: where a collection file larger than one chunk is cut into part files (one
            streaming pass; the parts are reused for the same file and chunk size) and where
            the chunk jobs keep their done markers (``done/``); None → the settings'
            ``PROJECT_DIR``/sources. Workers must see this folder.
        read_ahead: each chunk job of files reads the next chunk's inputs once its own are
            queued (``GMTPredictMaker.read_ahead``), so that the models never wait between
            chunks. For flows run in one process (``run_locally``, as ``atomate2-gmt screen``
            does); leave False under jobflow-remote, where each job has its own process.
    """

    name: str = "gmt_screen"
    predict_maker: GMTPredictMaker = field(default_factory=GMTPredictMaker)
    chunk_size: int = 500
    store: Store | None = None
    top: int = 20
    query: dict[str, Any] | None = None
    check_store: bool = True
    work_dir: str | None = None
    read_ahead: bool = False

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
        done_dir = str(self._work_dir() / "done")
        chunks = self._chunks(items)
        for n, chunk in enumerate(chunks):
            following = chunks[n + 1] if n + 1 < len(chunks) else None
            maker = replace(
                self.predict_maker,
                name=f"{self.predict_maker.name}_{n}",
                write_to_store=True,
                store=self.store,
                return_documents=False,
                done_dir=done_dir,
                read_ahead=following if self.read_ahead and _files(following) else None,
            )
            jobs.append(maker.make(chunk))
        rank = rank_predictions(
            [j.output for j in jobs], top=self.top, store=self.store, query=self.query
        )
        return Flow([*jobs, rank], output=rank.output, name=self.name)

    def _chunks(self, items: Sequence[Any]) -> list[list[Any]]:
        """The chunk jobs' inputs: at most ``chunk_size`` candidates each. A collection file
        (:class:`~atomate2_gmt.sources.SourceSlice`) is cut into slices of ``chunk_size``
        records in one streaming pass (:func:`~atomate2_gmt.sources.split_source`), each its
        own chunk, so a job's input names a part of the file, never its records."""
        from atomate2_gmt.sources import SourceSlice, split_source

        chunks: list[list[Any]] = []
        plain: list[Any] = []
        for item in items:
            if not isinstance(item, SourceSlice):
                plain.append(item)
                continue
            for part in split_source(item, self.chunk_size, self._work_dir()):
                chunks.append([part])
        chunks[:0] = [plain[a : a + self.chunk_size] for a in range(0, len(plain), self.chunk_size)]
        return chunks

    def _work_dir(self) -> Path:
        if self.work_dir is not None:
            return Path(self.work_dir)
        return Path(self.predict_maker.settings().PROJECT_DIR).expanduser() / "sources"

    def _check_store(self) -> None:
        from atomate2_gmt.stores import candidate_store, check_store

        settings = self.predict_maker.settings()
        store = self.store if self.store is not None else candidate_store(settings)
        check_store(store, timeout_s=settings.STORE_TIMEOUT_S)
        store.close()


def _files(chunk: list[Any] | None) -> bool:
    """Whether ``chunk`` is inputs that are files (paths or source slices) only."""
    from atomate2_gmt.sources import is_file_input

    return bool(chunk) and all(is_file_input(x) for x in chunk or ())
