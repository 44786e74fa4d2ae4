"""The batched inference engine: structures in, prediction documents out (no jobflow).

:func:`predict_documents` takes plain :class:`EngineSettings` (tasks, model specs, device, batch
size, symprec, part size, workers) and a list of inputs; ``GMTPredictMaker.make`` builds the
settings from its fields and calls it. The run is pipelined: the inputs are split into parts (a
short first one, then ``part_size``); while the models load and predict, ``workers`` processes
read and check files and compute structure keys, IEEE rotations and point groups of the next
parts from one spglib search per structure (:func:`structure_facts`), which the models use
instead of checking and searching again; the reading workers, like the model workers below,
stay for the process's next run (a screen's next chunk job: module state ``_READERS``), and a
run told the next run's files (``read_ahead``) queues them once its own are queued (module
state ``_AHEAD``), so that the next run's models do not wait for its first part. A run
collects cyclic garbage less often (:func:`fewer_gc_passes`). On a CPU, forked one-thread
model workers inherit the loaded models and predict sub-parts of :data:`MODEL_PART_SIZE`
structures; the pool stays warm for the next run with the same models (module state ``_POOL``,
closed at exit). Each part is upserted as soon as it is done, and structures whose document is
already in the store are skipped.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from atomate2_gmt.candidates import Candidate, CandidateLike, InputLimits, as_candidates
from atomate2_gmt.model.ensemble import combine_members, ensemble_info

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from maggma.core import Store

    from atomate2_gmt.schemas.run import PredictionRunDoc

logger = logging.getLogger(__name__)

__all__ = [
    "FIRST_PART_SIZE",
    "GC_THRESHOLD",
    "MODEL_PART_SIZE",
    "EngineSettings",
    "close_model_pool",
    "close_reader_pool",
    "drop_read_ahead",
    "fewer_gc_passes",
    "keep_freed_memory",
    "predict_documents",
    "start_read_ahead",
    "structure_facts",
]

#: Length of the first pipelined part: small, so the models start while the worker reads on.
FIRST_PART_SIZE = 32
#: Structures per model-worker task: small, so both workers stay busy to the end of a part.
MODEL_PART_SIZE = 32

Members = list[tuple[Any, dict[str, Any]]]
"""The loaded models of one task: (network, info) of the model, or of each ensemble member."""


@dataclass(frozen=True)
class EngineSettings:
    """What one prediction run does and how it runs, as plain data.

    Args:
        tasks: tasks to predict, in the order of ``atomate2_gmt.data.records.TASKS``.
        models: task → model specs (``"pretrained"``, ``"registry"`` or a checkpoint path); one
            spec → one model, two or more → an ensemble (mean tensor, spread as uncertainty).
        device: the torch device (``"cpu"``, ``"cuda"``, ``"cuda:0"``, ...; resolved, no
            ``"auto"``).
        batch_size: structures per forward pass.
        symprec: symmetry tolerance (Å) of the documents' symmetry data and structure keys.
        part_size: structures per pipelined part (each upserted when done).
        workers: processes that read and key the next parts (None → one if the machine has
            ≥ 2 cores; 0 → all in-process).
        model_workers: forked CPU model workers (None → one per core when there are ≥ 2 cores
            and the platform forks; 0 or 1 → in-process). Ignored on a GPU.
        skip_existing: with a store, structures whose successful document of the same model
            version is stored are not predicted again.
        return_documents: the output document carries the documents' store dicts (False:
            its counts, ids and failures only).
        spread_scale: task → calibration factor of an ensemble's σ (its documents'
            ``uncertainty`` is the members' standard deviation times it; default 1). Fit it
            with ``atomate2-gmt evaluate --member`` on a validation split (its
            ``calibrating_scale``, docs/active_learning.md).
        limits: what an input file or structure may be (the settings' ``MAX_SITES`` and
            ``MAX_FILE_MB``, resolved by the caller).
    """

    tasks: tuple[str, ...]
    models: dict[str, tuple[str, ...]] = field(default_factory=dict)
    device: str = "cpu"
    batch_size: int = 64
    symprec: float = 0.01
    part_size: int = 64
    workers: int | None = None
    model_workers: int | None = None
    skip_existing: bool = True
    return_documents: bool = True
    spread_scale: dict[str, float] = field(default_factory=dict)
    limits: InputLimits = field(default_factory=InputLimits)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("EngineSettings needs at least one task")
        for task, scale in self.spread_scale.items():
            if len(self.models.get(task) or ()) < 2:
                raise ValueError(
                    f"spread_scale for task {task!r}, which is not predicted by an ensemble"
                )
            if not (math.isfinite(scale) and scale > 0):
                raise ValueError(f"spread_scale of {task!r} must be positive, got {scale}")
        for name in ("batch_size", "part_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.device == "auto":
            raise ValueError("EngineSettings.device must be resolved (cpu, cuda, ...), not auto")


def structure_facts(
    items: Sequence[CandidateLike],
    first_index: int,
    symprec: float,
    limits: InputLimits | None = None,
) -> list[tuple[Candidate, dict[str, Any]]]:
    """The model-free part of a document for each input: read files, check structures, structure
    key, IEEE rotation, metallicity flag and the point group where the models can use it (all
    from one spglib search per structure, :func:`~atomate2_gmt.schemas.prediction.
    symmetry_facts`; a key that fails is None and ``from_predictions`` records why), and
    ``checked_sites``: the ``max_sites`` a structure read here was checked with (not for a
    Candidate handed in as it is), so the models do not check it again. Runs in a worker
    process while the models predict the previous part (top-level and picklable for that
    reason)."""
    from atomate2_gmt.schemas.prediction import symmetry_facts

    limits = limits or InputLimits.from_settings()
    given = {id(item) for item in items if isinstance(item, Candidate)}  # passed through unchecked
    out = []
    for cand in as_candidates(list(items), first_index=first_index, limits=limits):
        facts: dict[str, Any] = {}
        if cand.state == "successful" and cand.structure is not None:
            facts = symmetry_facts(cand.structure, symprec)
            if id(cand) not in given:  # made here, so checked (candidates.check_structure)
                facts["checked_sites"] = limits.max_sites
        out.append((cand, facts))
    return out


def _parts(items: Sequence[Any], size: int) -> list[tuple[int, list[Any]]]:
    """(first index, items) parts: the first at most :data:`FIRST_PART_SIZE`, then ``size``."""
    if not items:
        return []
    first = min(size, FIRST_PART_SIZE)
    starts = [0, *range(first, len(items), size)]
    ends = [*starts[1:], len(items)]
    return [(a, list(items[a:b])) for a, b in zip(starts, ends, strict=True)]


def _records_of(items: Sequence[CandidateLike]) -> list[Any]:
    """The inputs with each :class:`~atomate2_gmt.sources.SourceSlice` replaced by its records
    (read here as a stream; one job's slice is one chunk), so that the parts are cut by record
    and the records are made candidates in the reading workers."""
    from atomate2_gmt.sources import SourceSlice

    out: list[Any] = []
    for item in items:
        if isinstance(item, SourceSlice):
            out.extend(item.records())
        else:
            out.append(item)
    return out


def _load_members(task: str, specs: tuple[str, ...]) -> Members:
    """The default model loader: ``registry.loading.load_members`` (settings in force)."""
    from atomate2_gmt.registry.loading import load_members

    return load_members(task, specs)


def predict_documents(
    settings: EngineSettings,
    candidates: Sequence[CandidateLike],
    store: Store | None = None,
    load: Callable[[str, tuple[str, ...]], Members] | None = None,
    read_ahead: Sequence[CandidateLike] | None = None,
) -> PredictionRunDoc:
    """Predict every input (Candidate, Structure, Structure dict or file path) as ``settings``
    say; with a ``store`` (connected and checked by the caller) each part is upserted when done.

    ``load(task, specs)`` gives a task's loaded models (default: the specs of
    ``settings.models`` through :func:`atomate2_gmt.registry.loading.load_members`).

    ``read_ahead``: the inputs of the run this process makes next (files, or
    :class:`~atomate2_gmt.sources.SourceSlice` parts; anything else is ignored). Once this
    run's parts are queued, the reading workers go on to read those, so that the next run's
    models start at once and the reading fills the time in which this run's last parts are
    predicted. The next run uses what was read if its inputs and reading settings are the same
    files unchanged (:func:`~atomate2_gmt.sources.file_identity`); any other run drops it.

    Returns a :class:`~atomate2_gmt.schemas.run.PredictionRunDoc`: counts, the documents'
    keys, the failures and timings, and with ``return_documents`` the documents' store dicts.
    """
    with fewer_gc_passes():
        return _predict_documents(settings, candidates, store, load, read_ahead)


def _predict_documents(
    settings: EngineSettings,
    candidates: Sequence[CandidateLike],
    store: Store | None,
    load: Callable[[str, tuple[str, ...]], Members] | None,
    read_ahead: Sequence[CandidateLike] | None = None,
) -> PredictionRunDoc:
    candidates = list(candidates)
    n_workers = _n_readers(settings)
    ahead = _take_read_ahead(candidates, settings, n_workers)
    if ahead is not None:
        parts, futures = ahead
    else:
        parts = _parts(_records_of(candidates), settings.part_size)
        futures = []
        if n_workers > 0 and len(parts) > 1:  # the workers read and key files while models load
            futures = _read(_reader_pool(n_workers), parts, settings)
    try:
        if futures and read_ahead:
            try:
                start_read_ahead(settings, read_ahead)
            except Exception as exc:  # the next run reads its inputs itself
                logger.warning("the next inputs are not read ahead: %s", exc)
                drop_read_ahead()
        return _Run(settings, store, load or _load_members).predict(parts, futures)
    except BaseException:
        queued = [*futures, *(_AHEAD["futures"] or [])]
        drop_read_ahead()
        if not all(f.done() for f in queued):
            close_reader_pool()  # a failed run's reader may still be busy
        raise


def _read(pool: Any, parts: list[tuple[int, list[Any]]], settings: EngineSettings) -> list[Any]:
    """Futures of :func:`structure_facts` of each part, computed by ``pool`` in order."""
    return [
        pool.submit(structure_facts, part, i, settings.symprec, settings.limits)
        for i, part in parts
    ]


#: What the reading workers read ahead for this process's next run: the key of its inputs
#: (:func:`_reading_key`), its parts and their futures.
_AHEAD: dict[str, Any] = {"key": None, "parts": None, "futures": None}


def _reading_key(
    items: Sequence[CandidateLike], settings: EngineSettings, n_workers: int
) -> tuple[Any, ...] | None:
    """What decides the parts and facts a run reads from ``items``: the files' identity and
    the reading settings; None for inputs that are not all files."""
    from atomate2_gmt.sources import file_identity

    if n_workers < 1:
        return None
    ident = file_identity(list(items))
    if ident is None:
        return None
    return (
        repr(ident),
        settings.symprec,
        settings.limits,
        settings.part_size,
        n_workers,
        os.getpid(),
    )


def _take_read_ahead(
    items: Sequence[CandidateLike], settings: EngineSettings, n_workers: int
) -> tuple[list[Any], list[Any]] | None:
    """The parts and futures read ahead for ``items`` with ``settings``, or None; whatever
    else was read ahead is dropped (its queued parts cancelled), and so is a read-ahead whose
    reading worker died or failed (the run then reads again, with a new worker)."""
    key, parts, futures = _AHEAD["key"], _AHEAD["parts"], _AHEAD["futures"]
    if key is None:
        return None
    pool = _READERS["pool"]
    found = (
        key[-1] == os.getpid()
        and pool is not None
        and not pool._broken
        and _reading_key(items, settings, n_workers) == key
        and not any(f.cancelled() or (f.done() and f.exception() is not None) for f in futures)
    )
    if not found:
        drop_read_ahead()
        return None
    _AHEAD.update(key=None, parts=None, futures=None)
    return parts, futures


def _n_readers(settings: EngineSettings) -> int:
    """The number of file-reading workers of a run (``settings.workers``; None → one if the
    machine has two or more cores)."""
    if settings.workers is not None:
        return settings.workers
    return min(2, os.cpu_count() or 1) - 1


def start_read_ahead(settings: EngineSettings, items: Sequence[CandidateLike]) -> None:
    """Queue the parts of ``items`` (files or :class:`~atomate2_gmt.sources.SourceSlice`
    parts: the inputs of this process's next run with ``settings``) on the reading workers;
    the next :func:`predict_documents` over the same files uses them (any other run drops
    them). Nothing happens for other inputs, without reading workers, for a single part, or
    when the same inputs are queued already."""
    items = list(items)
    n_workers = _n_readers(settings)
    key = _reading_key(items, settings, n_workers)
    if key is None or (_AHEAD["key"] == key and _READERS["pool"] is not None):
        return
    drop_read_ahead()
    parts = _parts(_records_of(items), settings.part_size)
    if len(parts) < 2:  # the run reads a single part in-process
        return
    futures = _read(_reader_pool(n_workers), parts, settings)
    _AHEAD.update(key=key, parts=parts, futures=futures)


def drop_read_ahead() -> None:
    """Forget what was read ahead (its queued parts cancelled), e.g. when the run it was for
    does not happen."""
    key, futures = _AHEAD["key"], _AHEAD["futures"]
    _AHEAD.update(key=None, parts=None, futures=None)
    if key is not None and key[-1] == os.getpid():  # a forked process's copy: not its to cancel
        for f in futures:
            f.cancel()


#: The file-reading worker pool of this process (the next run reuses it: a screen's chunk jobs
#: would otherwise fork and initialise a reader each, while the models wait for its first part).
_READERS: dict[str, Any] = {"key": None, "pool": None}


def _reader_pool(n: int) -> Any:
    """The pool of ``n`` file-reading workers (:func:`structure_facts` runs there), kept for
    the next run of this process; a broken one (a worker died) is replaced."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    key = (n, os.getpid(), os.getcwd())  # a worker reads relative paths from its own cwd
    pool = _READERS["pool"]
    if pool is not None and _READERS["key"] == key and not pool._broken:
        return pool
    close_reader_pool()
    method = "fork" if _forks() else "spawn"
    pool = ProcessPoolExecutor(
        n,
        mp_context=multiprocessing.get_context(method),
        initializer=_init_worker,
        initargs=(1, os.getpid()),
    )
    _READERS.update(key=key, pool=pool)
    return pool


def close_reader_pool() -> None:
    """Shut down this process's file-reading workers (at exit, or after a failed run)."""
    pool = _READERS["pool"]
    _READERS.update(key=None, pool=None)
    _AHEAD.update(key=None, parts=None, futures=None)  # read by the workers shut down here
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(close_reader_pool)


class _Run:
    """One prediction run: loads the models, then predicts (and stores) part by part."""

    def __init__(
        self,
        settings: EngineSettings,
        store: Store | None,
        load: Callable[[str, tuple[str, ...]], Members],
    ) -> None:
        self.settings = settings
        self.store = store
        self.load = load
        self.docs: list[dict[str, Any]] = []  # the documents' store dicts
        self.skipped: list[str] = []  # prediction ids already in the store (not predicted again)
        self.replaced: list[list[str]] = []  # [prediction id, reason]: stored, not trusted
        self.timings: dict[str, float] = {}
        self.written = 0
        self.pending: deque[Any] = deque()  # model-pool futures, in input order

    def _context(self) -> _Context:
        from atomate2_gmt.schemas.prediction import derive_model_version

        s = self.settings
        loaded = {task: self.load(task, tuple(s.models.get(task) or ())) for task in s.tasks}
        model_info = {
            task: ensemble_info(task, members, s.spread_scale.get(task, 1.0))
            for task, members in loaded.items()
        }
        version = derive_model_version(model_info, list(s.tasks))
        return _Context(
            s.tasks,
            loaded,
            model_info,
            version,
            s.symprec,
            s.device,
            s.batch_size,
            s.spread_scale,
        )

    def predict(self, parts: list[tuple[int, list[Any]]], futures: list[Any]) -> PredictionRunDoc:
        """Predict ``parts``; ``futures`` hold their facts when a worker pool computes them,
        else they are computed here."""
        from atomate2_gmt import progress

        progress.phase(f"loading the {', '.join(self.settings.tasks)} models", logger)
        self.context = self._context()
        start = time.perf_counter()
        self.n_items = n_items = sum(len(p) for _, p in parts)
        # the model workers start with the first part that has something to predict: a run
        # whose every structure is stored (a re-run) never prepares them (≈ 2 s on 2 cores:
        # docs/benchmarks.md, the demo's re-run)
        self.model_pool: Any = _NOT_STARTED
        self.bar = progress.task("predicting", n_items, unit="structures")
        try:
            for n, (i, part) in enumerate(parts):
                facts = (
                    futures[n].result()
                    if futures
                    else structure_facts(part, i, self.settings.symprec, self.settings.limits)
                )
                self.bar.grow(len(facts) - len(part))  # a file of several structures
                self.run_part(facts)
            self.collect(block=True)
        except BaseException:
            if self.model_pool is not None and self.model_pool is not _NOT_STARTED:  # busy workers
                close_model_pool()
            raise
        finally:
            self.bar.close()
        return self.output(time.perf_counter() - start)

    def keep(self, part_docs: list[dict[str, Any]]) -> None:
        """Add a part's documents (store dicts); with a store they are written now (a run that
        dies keeps this part)."""
        from atomate2_gmt.stores import upsert_predictions

        self.docs.extend(part_docs)
        self.bar.advance(len(part_docs))
        if self.store is not None and part_docs:
            t0 = time.perf_counter()
            self.written += upsert_predictions(self.store, part_docs)
            self._add_time("store", time.perf_counter() - t0)

    def collect(self, block: bool) -> None:
        """Keep the model workers' finished sub-parts, in input order (``block``: all)."""
        while self.pending and (block or self.pending[0].done()):
            part_docs, part_timings = self.pending.popleft().result()
            for key, value in part_timings.items():
                self._add_time(key, value)
            self.keep(part_docs)

    def run_part(self, facts: list[tuple[Candidate, dict[str, Any]]]) -> None:
        """Skip what the store has, then predict the rest of one part (in-process, or
        submitted to the model workers in sub-parts)."""
        if self.store is not None and self.settings.skip_existing:
            facts = self._skip_stored(facts)
        if not facts:
            return
        if self.model_pool is _NOT_STARTED:
            self.model_pool = _model_pool(self.settings, self.context, self.n_items)
        if self.model_pool is None:
            self.keep(_documents(self.context, facts, self.timings))
            return
        step = min(self.settings.batch_size, MODEL_PART_SIZE)
        for a in range(0, len(facts), step):
            self.pending.append(self.model_pool.submit(_worker_documents, facts[a : a + step]))
        self.collect(block=False)

    def _skip_stored(
        self, facts: list[tuple[Candidate, dict[str, Any]]]
    ) -> list[tuple[Candidate, dict[str, Any]]]:
        from atomate2_gmt.stores import add_sources

        assert self.store is not None
        t0 = time.perf_counter()
        done, replaced = _already_predicted(self.store, facts, self.context.version)
        self.replaced.extend(replaced)
        names: dict[str, list[str]] = {}
        props: dict[str, dict[str, Any]] = {}
        for cand, _ in facts:
            if id(cand) in done:
                names.setdefault(done[id(cand)], []).append(cand.source)
                if cand.source_properties:
                    props.setdefault(done[id(cand)], {}).update(cand.source_properties)
        # a skipped crystal keeps the name it has in this run, and gains what its source knows
        add_sources(self.store, names, props)
        self._add_time("store", time.perf_counter() - t0)
        self.skipped.extend(done.values())
        self.bar.advance(len(done))
        return [(c, f) for c, f in facts if id(c) not in done]

    def _add_time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds

    def output(self, elapsed: float) -> PredictionRunDoc:
        """The run's output document (see :func:`predict_documents`)."""
        from atomate2_gmt.schemas.run import PredictionRunDoc

        docs, skipped, tasks = self.docs, self.skipped, self.settings.tasks
        failures = [(d["source"], d.get("error") or "") for d in docs if d["state"] == "failed"]
        logger.info(
            "predicted %d structures (%d failed, %d already in the store) for %s in %.1f s on %s",
            len(docs),
            len(failures),
            len(skipped),
            ", ".join(tasks),
            elapsed,
            self.settings.device,
        )
        out_docs: list[dict[str, Any]] = []
        if self.settings.return_documents:
            out_docs = list(docs)
            if skipped:
                assert self.store is not None
                found = self.store.query({"prediction_id": {"$in": skipped}})
                out_docs.extend({k: v for k, v in d.items() if k != "_id"} for d in found)
        n = len(docs) + len(skipped)
        ids = [d["prediction_id"] for d in docs] + skipped
        return PredictionRunDoc(
            n=n,
            n_documents=len(set(ids)),
            n_successful=n - len(failures),
            n_failed=len(failures),
            n_skipped=len(skipped),
            prediction_ids=ids,
            failures=failures,
            replaced=[(pid, reason) for pid, reason in self.replaced],
            model_version=self.context.version,
            tasks=list(tasks),
            device=self.settings.device,
            timings={"total_s": elapsed, **{f"{k}_s": v for k, v in self.timings.items()}},
            written=self.written,
            documents=out_docs,
        )


def _already_predicted(
    store: Store, facts: list[tuple[Candidate, dict[str, Any]]], version: str
) -> tuple[dict[int, str], list[list[str]]]:
    """(``id(candidate)`` → ``prediction_id`` of the candidates of one part whose successful
    document with model ``version`` is already in ``store``, [prediction_id, reason] of the
    stored documents that are not trusted and so are predicted again).

    A stored document is verified, not trusted: its identity fields must agree with each other
    and with its structure, its formula with the candidate's, and its ``content_hash`` with its
    content (``schemas.prediction.identity_problem``). Such a document of an older schema version
    (or without a hash) is migrated in place (its derived fields recomputed from its stored
    tensors, every other field, e.g. DFPT results, kept: ``migrate_prediction_dict``)."""
    from atomate2_gmt.schemas.fields import PREDICTION_SCHEMA_VERSION
    from atomate2_gmt.schemas.prediction import identity_problem, migrate_prediction_dict
    from atomate2_gmt.stores import StoreConnectionError, describe_store, store_error_reason

    wanted: dict[str, list[Candidate]] = {}
    for c, f in facts:
        if c.state == "successful" and f.get("structure_key"):
            wanted.setdefault(f"{f['structure_key']}:{version}", []).append(c)
    if not wanted:
        return {}, []
    try:
        store.connect()
        found = list(store.query({"prediction_id": {"$in": list(wanted)}, "state": "successful"}))
        done: dict[int, str] = {}
        replaced: list[list[str]] = []
        old = []
        for d in found:
            pid = d["prediction_id"]
            problem = identity_problem(d, version)
            mine = wanted[pid][0].structure
            formula = mine.composition.reduced_formula if mine is not None else None
            if problem is None and d.get("formula_pretty") != formula:
                problem = f"formula {d.get('formula_pretty')!r} is not the input's ({formula})"
            if problem is not None:
                logger.warning("stored document %s is predicted again: %s", pid, problem)
                replaced.append([pid, problem])
                continue
            if d.get("schema_version") != PREDICTION_SCHEMA_VERSION or "content_hash" not in d:
                old.append(migrate_prediction_dict(d))
            done.update({id(c): pid for c in wanted[pid]})
        if old:
            store.update(old, key="prediction_id")
        return done, replaced
    except Exception as exc:
        raise StoreConnectionError(
            f"cannot read the existing predictions from {describe_store(store)}: "
            f"{store_error_reason(exc)}"
        ) from exc


@dataclass
class _Context:
    """What every part of a prediction run shares."""

    tasks: tuple[str, ...]
    loaded: dict[str, Members]
    model_info: dict[str, dict[str, Any]]
    version: str
    symprec: float
    device: str
    batch_size: int
    spread_scale: dict[str, float] = field(default_factory=dict)  # task → σ calibration factor


def _forks() -> bool:
    """Whether worker processes are forked here (Linux), inheriting the parent's memory."""
    import sys

    return sys.platform.startswith("linux")


#: The context a forked model worker inherits (set in the run's process just before the fork).
_WORKER_CONTEXT: _Context | None = None


def _init_worker(threads: int = 1, parent: int | None = None) -> None:
    """Worker initialiser: ``threads`` torch threads and ONE BLAS thread (idle OpenBLAS threads
    spin: with its default of one per core, numpy's BLAS cost a single-threaded worker about a
    quarter of its CPU in spinning, taken from the other processes), freed memory kept
    (:func:`keep_freed_memory`), the garbage collector's first threshold of
    :func:`fewer_gc_passes` with the objects the worker starts with frozen (a worker forked
    outside that block would otherwise scan the parent's whole heap and, by writing to it,
    copy its pages), and the worker exits when
    its parent process ``parent`` dies (:func:`_exit_with_parent`)."""
    import torch
    from threadpoolctl import threadpool_limits

    _exit_with_parent(parent)
    torch.set_num_threads(threads)
    threadpool_limits(limits=1, user_api="blas")
    keep_freed_memory()
    gc.freeze()
    _raise_gc_threshold(gc.get_threshold())


#: Allocations of container objects between two passes of Python's cyclic garbage collector over
#: its youngest generation during a prediction run (Python's default: 700).
GC_THRESHOLD = 20_000


def _raise_gc_threshold(old: tuple[int, ...]) -> None:
    """Set the collector's first threshold to at least :data:`GC_THRESHOLD` (from ``old``,
    :func:`gc.get_threshold`); a collector switched off (threshold 0) stays off."""
    if old[0] != 0:
        gc.set_threshold(max(old[0], GC_THRESHOLD), *old[1:])


_GC_LOCK = threading.Lock()
_GC_STATE: dict[str, Any] = {"depth": 0, "threshold": None, "froze": False}


@contextlib.contextmanager
def fewer_gc_passes() -> Iterator[None]:
    """Run the block with fewer passes of Python's cyclic garbage collector, restored after.

    A run creates and frees millions of small containers (structures and their sites,
    documents, dicts and lists of the store and of the pickles between processes) and keeps a
    large heap alive (modules, models, the store's caches). With Python's defaults the
    collector runs every 700 container allocations and, every hundred such passes, scans the
    whole heap: 9 % of the process tree's CPU time of a 4,000-structure ``screen`` on 2 cores
    (docs/benchmarks.md). Here the objects alive at the start are frozen (``gc.freeze``: never
    scanned again; unfrozen after) and the youngest generation is collected every
    :data:`GC_THRESHOLD` allocations; worker processes forked in the block inherit both.
    Reference counting still frees every acyclic object at once, so memory stays flat.

    Blocks may nest or overlap in threads: the outermost one changes the collector and the last
    one to end restores it. A process that froze objects itself keeps them frozen, a larger
    threshold is kept, and a collector switched off (threshold 0) stays off.
    """
    with _GC_LOCK:
        if _GC_STATE["depth"] == 0:
            old = gc.get_threshold()
            _GC_STATE["threshold"] = old
            _GC_STATE["froze"] = gc.get_freeze_count() == 0
            if _GC_STATE["froze"]:
                gc.freeze()
            _raise_gc_threshold(old)
        _GC_STATE["depth"] += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_STATE["depth"] -= 1
            if _GC_STATE["depth"] == 0:
                gc.set_threshold(*_GC_STATE["threshold"])
                if _GC_STATE["froze"]:
                    gc.unfreeze()


#: Size below which glibc's malloc serves a block from the heap instead of a fresh mmap (bytes):
#: above every edge-sized tensor of a CPU batch (a few MB) and glibc's upper bound for it.
MMAP_THRESHOLD = 32 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for the next allocation instead of returning it
    to the kernel (``mallopt``: mmap threshold :data:`MMAP_THRESHOLD`, no heap trimming);
    True when set (glibc), False elsewhere.

    A forward pass allocates and frees the same edge-sized tensors (1-10 MB) batch after batch.
    With glibc's defaults each comes from a fresh ``mmap`` (or a heap grown again after a trim),
    and the kernel zeroes its pages on first touch: 1-7 ms of system time per structure (up to
    2,800 page faults) on top of 20-27 ms of user time for the three shipped models (batches
    of 32, one thread; ``benchmarks/bench_alloc.py``, docs/benchmarks.md). With freed memory
    kept that system time is 0.01 ms (one page fault per structure). The process keeps its
    peak heap (the largest batch's tensors) until exit.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = mallopt(m_mmap_threshold, MMAP_THRESHOLD) == 1
    # the trim threshold is an int: the largest value keeps the top of the heap
    return ok and mallopt(m_trim_threshold, 2**31 - 1) == 1


def _exit_with_parent(parent: int | None) -> None:
    """On Linux, have the kernel kill this process when the process (thread) that forked it
    dies, even by ``kill -9`` (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); a worker whose parent
    died before the call exits at once. Elsewhere nothing is done (workers there are spawned,
    and Python's pool stops them when the parent exits normally)."""
    import sys

    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def _worker_documents(
    facts: list[tuple[Candidate, dict[str, Any]]],
) -> tuple[list[Any], dict[str, float]]:
    """Predict one sub-part in a model worker: its documents and stage times."""
    if _WORKER_CONTEXT is None:  # pragma: no cover - only if the pool did not fork
        raise RuntimeError("model worker started without the prediction context")
    timings: dict[str, float] = {}
    return _documents(_WORKER_CONTEXT, facts, timings), timings


#: The model-worker pool of this process and the key of the context its workers were forked
#: with (that context stays referenced by ``_WORKER_CONTEXT``, so the models' ids in the key
#: cannot be reused). The next run with the same models and settings reuses the warm workers;
#: any other run replaces the pool.
_POOL: dict[str, Any] = {"key": None, "pool": None}


def _pool_key(ctx: _Context, n: int) -> tuple[Any, ...]:
    import json

    members = tuple((task, tuple(id(net) for net, _ in m)) for task, m in ctx.loaded.items())
    info = json.dumps(ctx.model_info, sort_keys=True, default=str)
    return (ctx.tasks, members, info, ctx.version, ctx.symprec, ctx.device, ctx.batch_size, n)


def close_model_pool() -> None:
    """Shut down this process's model workers (at exit, after a failed run, or to free them)."""
    global _WORKER_CONTEXT
    pool = _POOL["pool"]
    _POOL.update(key=None, pool=None)
    _WORKER_CONTEXT = None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(close_model_pool)


_NOT_STARTED = object()
"""The model pool of a run before its first part with something to predict."""


def _model_pool(settings: EngineSettings, ctx: _Context, n_items: int) -> Any:
    """The forked pool of model workers that inherit the loaded models
    (``settings.model_workers``), or None when the run predicts in its own process (GPU, one
    core, no fork, small input). A pool forked for the same models and settings by an earlier
    run is reused."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from atomate2_gmt.data.domain import domain_reference

    global _WORKER_CONTEXT
    cores = os.cpu_count() or 1
    n = settings.model_workers
    if n is None:
        n = cores if cores >= 2 and _forks() else 0
    if n < 2 or ctx.device != "cpu" or n_items <= ctx.batch_size:
        return None
    key = _pool_key(ctx, n)
    if _POOL["pool"] is not None and _POOL["key"] == key and not _POOL["pool"]._broken:
        return _POOL["pool"]  # (a pool is broken when its workers died, e.g. with the thread
        # that forked them: see _exit_with_parent)
    close_model_pool()
    for members in ctx.loaded.values():
        for net, _ in members:
            net.prepare_inference()  # built once here, inherited by every worker
    for task in ctx.tasks:  # the training-data reference of domain_distance, likewise
        domain_reference(task)
    _WORKER_CONTEXT = ctx  # inherited by the forked workers (the models are not pickled)
    pool = ProcessPoolExecutor(
        n,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_init_worker,
        initargs=(max(1, cores // n), os.getpid()),
    )
    _POOL.update(key=key, pool=pool)
    return pool


def _documents(
    ctx: _Context, facts: list[tuple[Candidate, dict[str, Any]]], timings: dict[str, float]
) -> list[dict[str, Any]]:
    """Predict one part and build its documents' store dicts (``GMTPredictionDoc.
    to_store_dict``: in a model worker this is where they are made, and a plain dict crosses
    back to the command five times faster than the pydantic document); adds the part's stage
    times to ``timings``."""
    from atomate2_gmt.data.domain import domain_distances
    from atomate2_gmt.model.predict import predict_many

    usable = [(c, f) for c, f in facts if c.state == "successful" and c.structure is not None]
    models = {
        (task if len(members) == 1 else f"{task}@{k}"): net
        for task, members in ctx.loaded.items()
        for k, (net, _) in enumerate(members)
    }
    result = predict_many(
        [c.structure for c, _ in usable],  # type: ignore[misc]
        models,
        device=ctx.device,
        batch_size=ctx.batch_size,
        checked_sites=[f.get("checked_sites") for _, f in usable],
        found_point_groups=[f.get("point_group") for _, f in usable],
    )
    structures = [c.structure for c, _ in usable if c.structure is not None]
    domain = {task: domain_distances(structures, task) for task in ctx.tasks}
    task_time: dict[str, float] = {}
    for key, value in result.timings.items():
        name = key.split("@", 1)[0]
        task_time[name] = task_time.get(name, 0.0) + value
    for key, value in task_time.items():
        timings[key] = timings.get(key, 0.0) + value
    t0 = time.perf_counter()
    per_structure = {k: v / max(len(usable), 1) for k, v in task_time.items()}
    same_tolerance = all(
        net.config.symprec == ctx.symprec for members in ctx.loaded.values() for net, _ in members
    )
    index = {id(c): i for i, (c, _) in enumerate(usable)}
    docs: list[Any] = []
    for cand, fact in facts:
        if id(cand) not in index:
            docs.append(_failed_document(ctx, cand, cand.error or "unusable structure"))
            continue
        i = index[id(cand)]
        shared = {
            "timings": {t: per_structure.get(t, 0.0) for t in ctx.tasks},
            "point_group_info": result.point_groups[i] if same_tolerance else None,
            "domain_distance": {task: float(domain[task][i]) for task in ctx.tasks},
        }
        docs.append(
            _document(ctx, cand, fact, {t: r[i] for t, r in result.results.items()}, shared)
        )
    out = [d.to_store_dict() for d in docs]
    timings["documents"] = timings.get("documents", 0.0) + time.perf_counter() - t0
    return out


def _failed_document(ctx: _Context, cand: Candidate, reason: str) -> Any:
    from atomate2_gmt.schemas.prediction import GMTPredictionDoc, SourceProperties

    return GMTPredictionDoc.from_failure(
        cand.source,
        reason,
        cand.structure,
        tasks=ctx.tasks,
        model_version=ctx.version,
        symprec=ctx.symprec,
        provenance=cand.provenance,
        source_properties=SourceProperties(**cand.source_properties),
    )


def _document(
    ctx: _Context,
    cand: Candidate,
    fact: dict[str, Any],
    results: dict[str, dict[str, Any]],
    shared: dict[str, Any],
) -> Any:
    """The document of one usable structure from its models' ``results`` (``task`` or
    ``task@k`` of an ensemble's member k); a failure while it is built fails it alone."""
    from atomate2_gmt.schemas.derived import derived_quantities
    from atomate2_gmt.schemas.fields import DERIVED_FIELDS
    from atomate2_gmt.schemas.prediction import (
        GMTPredictionDoc,
        SourceProperties,
        compute_ieee_rotation,
    )

    assert cand.structure is not None
    try:  # any failure while one structure's document is built fails that structure alone
        predictions, uncertainty = {}, {}
        ieee = fact.get("ieee_rotation")
        for task, members in ctx.loaded.items():
            if len(members) == 1:
                predictions[task] = results[task]
                continue
            if ieee is None:  # the key step failed: computed here once, for every ensemble
                ieee = compute_ieee_rotation(cand.structure)
            rotation = None if ieee is None or isinstance(ieee, str) else ieee

            def derive(tensor: Any, task: str = task, rotation: Any = rotation) -> dict[str, Any]:
                derived = derived_quantities(task, tensor, rotation)
                return {name: derived.get(name) for name in DERIVED_FIELDS[task]}

            predictions[task], spread = combine_members(
                task,
                [results[f"{task}@{k}"] for k in range(len(members))],
                derive,
                ctx.spread_scale.get(task, 1.0),
            )
            uncertainty.update(spread)
        return GMTPredictionDoc.from_predictions(
            cand.structure,
            predictions,
            ctx.model_info,
            source=cand.source,
            model_version=ctx.version,
            symprec=ctx.symprec,
            device=ctx.device,
            provenance=cand.provenance,
            source_properties=SourceProperties(**cand.source_properties),
            structure_key=fact.get("structure_key"),
            ieee_rotation=fact.get("ieee_rotation"),
            metallicity=fact.get("metallicity"),
            uncertainty=uncertainty,
            **shared,
        )
    except Exception as exc:
        logger.warning("document of %s could not be built: %r", cand.source, exc)
        reason = f"document could not be built ({type(exc).__name__}: {exc})"[:500]
        return _failed_document(ctx, cand, reason)
