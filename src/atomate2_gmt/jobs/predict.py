"""``GMTPredictMaker``: one jobflow job that predicts crystal tensors for a list of structures.

One job per large batch, not per structure: the models are loaded once, every structure's graph
and point group are built once for all tasks, and the forward passes run in batches on the
chosen device. Each structure becomes one :class:`~atomate2_gmt.schemas.prediction.
GMTPredictionDoc`; a bad structure becomes a failed document with its reason and never sinks the
batch.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobflow import Maker, job

from atomate2_gmt.candidates import Candidate, InputLimits, candidates_from_files, check_structure
from atomate2_gmt.data.records import TASKS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from maggma.core import Store

    from atomate2_gmt.model.gmtnet import GMTNet
    from atomate2_gmt.settings import GMTSettings

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TASKS",
    "GMTPredictMaker",
    "as_candidates",
    "close_model_pool",
    "predict_documents",
]

DEFAULT_TASKS: tuple[str, ...] = ("dielectric", "piezo", "elastic")
"""Tasks predicted when none are named: the three tensors (ε∞, e_ij, C_ij)."""

CandidateLike = Candidate | Any  # Candidate, Structure, Structure dict, or a file path


def as_candidates(items: Sequence[CandidateLike], first_index: int = 0) -> list[Candidate]:
    """Normalise job inputs to :class:`Candidate` s: candidates pass through, structures (or
    their dicts) are named ``structure-<i>`` (i counted from ``first_index``), strings and paths
    are read as structure files (unreadable ones become failed candidates with the reason)."""
    from pymatgen.core import Structure

    out: list[Candidate] = []
    limits: InputLimits | None = None
    for i, item in enumerate(items, start=first_index):
        if isinstance(item, Candidate):
            out.append(item)
        elif isinstance(item, str | Path):
            out.extend(candidates_from_files([item]))
        elif isinstance(item, Structure | dict):
            structure: Any = item
            if isinstance(item, dict):
                try:
                    structure = Structure.from_dict(item)
                except Exception as exc:
                    out.append(
                        Candidate(
                            source=f"structure-{i}",
                            error=f"not a Structure dict ({type(exc).__name__})",
                        )
                    )
                    continue
            limits = limits or InputLimits.from_settings()
            reason = check_structure(structure, limits.max_sites)
            out.append(
                Candidate(source=f"structure-{i}", error=reason)
                if reason
                else Candidate(source=f"structure-{i}", structure=structure)
            )
        else:
            out.append(
                Candidate(
                    source=f"input-{i}",
                    error=f"cannot screen a {type(item).__name__}: give a Structure, a file "
                    "path or a Candidate",
                )
            )
    return out


_MODEL_CACHE: dict[tuple[str, str, int, int], tuple[Any, dict[str, Any]]] = {}


def _load_cached(path: Path, task: str) -> tuple[GMTNet, dict[str, Any]]:
    """``load_checkpoint`` once per process and file version (path, size, mtime): the chunk
    jobs of a flow run in one process by ``run_locally`` build each model once (building the
    e3nn layers takes seconds). A changed file is loaded again."""
    from atomate2_gmt.model.checkpoint import load_checkpoint

    stat = path.stat()
    key = (str(path.resolve()), task, stat.st_size, stat.st_mtime_ns)
    if key not in _MODEL_CACHE:
        if len(_MODEL_CACHE) >= 8:
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _MODEL_CACHE[key] = load_checkpoint(path, task=task)
    return _MODEL_CACHE[key]


@dataclass
class GMTPredictMaker(Maker):
    """Predict crystal tensors for many structures in ONE job (batched, on one device).

    Args:
        name: job name (jobflow-remote workers are chosen by it: ``gmt_predict*``).
        tasks: tasks to predict; None → :data:`DEFAULT_TASKS` that have a model (a default task
            without a model is skipped with a warning; a named task without one is an error).
        models: task → ``"pretrained"``, ``"registry"`` or a checkpoint path; tasks not given
            use the settings' ``MODELS``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...; None → the settings' ``DEVICE``.
        batch_size: structures per forward pass; None → the settings' ``BATCH_SIZE``.
        symprec: symmetry tolerance (Å) of the documents' symmetry data and structure keys;
            None → the settings' ``SYMPREC``.
        write_to_store: upsert the documents into ``store`` (checked before any prediction).
        store: the prediction store; None → the settings' candidate store, built on the worker
            (so credentials come from the worker's settings, never from the job document).
        return_documents: the job returns the documents (store dicts); False → a summary with
            the prediction ids and the failures (what the screening flow uses, so that large
            documents are not copied into the job store).
        workers: processes that read files and compute structure keys and IEEE rotations while
            the models predict (None → one if the machine has ≥ 2 cores; 0 → all in-process).
        model_workers: on a CPU device, forked processes (one torch thread each) that run the
            forward passes and build the documents of sub-parts of at most
            :data:`MODEL_PART_SIZE` structures, so
            every core computes instead of one multi-threaded forward pass competing with the
            file workers (None → one per core when there are >= 2 cores, the device is the CPU
            and the platform forks; 0 → in the job's process). Ignored on a GPU.
        part_size: structures per pipelined part; with ``write_to_store`` each part is upserted
            as soon as it is predicted, so a job that dies keeps the parts it finished.
        skip_existing: with ``write_to_store``, a structure whose successful document with the
            same model version (same ``prediction_id``) is already in the store is not predicted
            again: a re-run after a crash predicts only what is missing. False → predict all.
        ensemble: task → model specs of an ensemble (≥ 2, e.g. the same model trained with
            different seeds): the prediction is the members' mean tensor (still exactly
            symmetric) and the document's ``uncertainty`` holds the members' standard deviation
            of each derived field, which ``SelectionPolicy(strategy="ucb")`` uses.

    Override :meth:`load_model` to put another model in (tests use small random models).
    """

    name: str = "gmt_predict"
    tasks: tuple[str, ...] | None = None
    models: dict[str, str] = field(default_factory=dict)
    device: str | None = None
    batch_size: int | None = None
    symprec: float | None = None
    write_to_store: bool = False
    store: Store | None = None
    return_documents: bool = True
    workers: int | None = None
    model_workers: int | None = None
    part_size: int = 64
    skip_existing: bool = True
    ensemble: dict[str, list[str]] = field(default_factory=dict)

    def settings(self) -> GMTSettings:
        """The settings in force (environment, ``~/.atomate2_gmt.yaml``)."""
        from atomate2_gmt.settings import GMTSettings

        return GMTSettings()

    def model_spec(self, task: str) -> str:
        """``"pretrained"``, ``"registry"`` or a checkpoint path for ``task``."""
        return self.models.get(task) or self.settings().model_for(task)

    def load_model(self, task: str) -> tuple[GMTNet, dict[str, Any]]:
        """The model of ``task`` and its info (name, version, checkpoint hash, spec).

        Raises a ``ValueError`` naming the task when no model is available for it.
        """
        return self.load_spec(task, self.model_spec(task))

    def load_ensemble(self, task: str) -> list[tuple[GMTNet, dict[str, Any]]]:
        """The members of ``task``'s ensemble (see ``ensemble``)."""
        specs = self.ensemble.get(task) or []
        if len(specs) < 2:
            raise ValueError(f"the ensemble of task {task!r} needs >= 2 models, got {len(specs)}")
        return [self.load_spec(task, spec) for spec in specs]

    def load_spec(self, task: str, spec: str) -> tuple[GMTNet, dict[str, Any]]:
        """Load one model spec (``pretrained``, ``registry`` or a checkpoint path)."""
        path: Any = None
        if spec == "pretrained":
            from atomate2_gmt.pretrained import pretrained_path

            path = pretrained_path(task)
        registry_meta: dict[str, Any] = {}
        if spec == "registry":  # the promoted version; its registry label names the documents
            from atomate2_gmt.registry.registry import ModelRegistry

            registry = ModelRegistry(settings=self.settings())
            try:
                path, registry_meta = registry.resolve(task)
            finally:
                registry.close()
        elif spec != "pretrained":
            path = Path(spec).expanduser()
            if not path.is_file():
                raise ValueError(f"model for task {task!r}: checkpoint {str(path)!r} not found")
        net, meta = _load_cached(Path(path), task)
        info = {
            "name": meta.get("name") or f"gmtnet-{task}",
            "version": registry_meta.get("version") or meta.get("version"),
            "checkpoint_hash": meta.get("checkpoint_sha256"),
            "spec": spec if not registry_meta else f"registry:{registry_meta['model_id']}",
        }
        return net, info

    def resolve_tasks(self) -> tuple[str, ...]:
        """The tasks this maker predicts (see ``tasks``)."""
        if self.tasks is not None:
            unknown = sorted(set(self.tasks) - set(TASKS))
            if unknown or not self.tasks:
                raise ValueError(
                    f"unknown or no tasks {unknown or list(self.tasks)}; valid: {', '.join(TASKS)}"
                )
            return tuple(t for t in TASKS if t in self.tasks)
        available = []
        for task in DEFAULT_TASKS:
            if self.model_spec(task) == "pretrained":
                from atomate2_gmt.pretrained import available as shipped

                if task not in shipped():
                    logger.warning("no shipped model for task %r: not predicted", task)
                    continue
            available.append(task)
        if not available:
            raise ValueError("no model is available for any of the default tasks")
        return tuple(available)

    @job
    def make(self, candidates: Sequence[CandidateLike]) -> list[dict[str, Any]] | dict[str, Any]:
        """Predict every candidate (Candidate, Structure, Structure dict or file path).

        Returns the documents' store dicts (``return_documents``) or a summary:
        ``{"n", "n_documents" (distinct crystals: inputs that are the same crystal share one
        document, whose ``sources`` name them all), "n_successful", "n_failed", "n_skipped"
        (already in the store), "prediction_ids",
        "failures": [[source, reason]],
        "model_version", "tasks", "device", "timings", "written"}``.
        """
        return predict_documents(self, candidates)


def structure_facts(
    items: Sequence[CandidateLike], first_index: int, symprec: float
) -> list[tuple[Candidate, dict[str, Any]]]:
    """The model-free part of a document for each input: read files, check structures, structure
    key and IEEE rotation (both from one spglib search per structure,
    :func:`~atomate2_gmt.schemas.prediction.key_and_ieee_rotation`; a key that fails is None and
    ``from_predictions`` records why). Runs in a worker process while the models predict the
    previous part (top-level and picklable for that reason)."""
    from atomate2_gmt.schemas.prediction import key_and_ieee_rotation

    out = []
    for cand in as_candidates(items, first_index=first_index):
        facts: dict[str, Any] = {}
        if cand.state == "successful" and cand.structure is not None:
            key, ieee = key_and_ieee_rotation(cand.structure, symprec)
            facts["structure_key"] = key
            facts["ieee_rotation"] = ieee
        out.append((cand, facts))
    return out


#: Length of the first pipelined part: small, so the models start while the worker reads on.
FIRST_PART_SIZE = 32
#: Structures per model-worker task: small, so both workers stay busy to the end of a part.
MODEL_PART_SIZE = 32


def _parts(items: Sequence[Any], size: int) -> list[tuple[int, list[Any]]]:
    """(first index, items) parts: the first at most :data:`FIRST_PART_SIZE`, then ``size``."""
    if not items:
        return []
    first = min(size, FIRST_PART_SIZE)
    starts = [0, *range(first, len(items), size)]
    ends = [*starts[1:], len(items)]
    return [(a, list(items[a:b])) for a, b in zip(starts, ends, strict=True)]


def predict_documents(
    maker: GMTPredictMaker, candidates: Sequence[CandidateLike]
) -> list[dict[str, Any]] | dict[str, Any]:
    """The body of :meth:`GMTPredictMaker.make`, callable without jobflow.

    Pipelined: the inputs are split into parts (a short first one, then ``part_size``); while
    the models load and predict, ``workers`` processes read and key the next parts
    (:func:`structure_facts`).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from atomate2_gmt.model.predict import resolve_device
    from atomate2_gmt.stores import candidate_store, check_store

    settings = maker.settings()
    store = None
    if maker.write_to_store:  # fail before any prediction if the store is unreachable
        store = maker.store if maker.store is not None else candidate_store(settings)
        check_store(store, timeout_s=settings.STORE_TIMEOUT_S)
    tasks = maker.resolve_tasks()
    symprec = maker.symprec if maker.symprec is not None else settings.SYMPREC
    device = str(resolve_device(maker.device or settings.DEVICE))
    batch_size = maker.batch_size or settings.BATCH_SIZE
    parts = _parts(list(candidates), maker.part_size)
    n_workers = maker.workers if maker.workers is not None else min(2, os.cpu_count() or 1) - 1
    pool = None
    futures = []
    if n_workers > 0 and len(parts) > 1:  # the workers read and key files while models load
        method = "fork" if _forks() else "spawn"
        pool = ProcessPoolExecutor(
            n_workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_init_worker,
            initargs=(1, os.getpid()),
        )
        futures = [pool.submit(structure_facts, part, i, symprec) for i, part in parts]
    try:
        return _predict_parts(maker, store, tasks, symprec, device, batch_size, parts, futures)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _predict_parts(
    maker: GMTPredictMaker,
    store: Any,
    tasks: tuple[str, ...],
    symprec: float,
    device: str,
    batch_size: int,
    parts: list[tuple[int, list[Any]]],
    futures: list[Any],
) -> list[dict[str, Any]] | dict[str, Any]:
    """Load the models, then predict (and store) part by part; ``futures`` hold the parts' facts
    when a worker pool computes them, else they are computed here."""
    from atomate2_gmt import progress
    from atomate2_gmt.schemas.prediction import derive_model_version
    from atomate2_gmt.stores import add_sources, upsert_predictions

    progress.phase(f"loading the {', '.join(tasks)} models", logger)
    loaded: dict[str, list[tuple[Any, dict[str, Any]]]] = {
        task: maker.load_ensemble(task) if task in maker.ensemble else [maker.load_model(task)]
        for task in tasks
    }
    model_info = {task: _ensemble_info(task, members) for task, members in loaded.items()}
    version = derive_model_version(model_info, list(tasks))
    context = _Context(tasks, loaded, model_info, version, symprec, device, batch_size)

    start = time.perf_counter()
    docs: list[Any] = []
    skipped: list[str] = []  # prediction ids already in the store (not predicted again)
    timings: dict[str, float] = {}
    written = 0
    model_pool = _model_pool(maker, context, sum(len(p) for _, p in parts))
    pending: deque[Any] = deque()  # model-pool futures, in input order
    bar = progress.task("predicting", sum(len(p) for _, p in parts), unit="structures")

    def keep(part_docs: list[Any]) -> None:
        nonlocal written
        docs.extend(part_docs)
        bar.advance(len(part_docs))
        if store is not None and part_docs:  # written now: a job that dies keeps this part
            t0 = time.perf_counter()
            written += upsert_predictions(store, part_docs)
            timings["store"] = timings.get("store", 0.0) + time.perf_counter() - t0

    def collect(block: bool) -> None:
        while pending and (block or pending[0].done()):
            part_docs, part_timings = pending.popleft().result()
            for key, value in part_timings.items():
                timings[key] = timings.get(key, 0.0) + value
            keep(part_docs)

    def run_part(facts: list[tuple[Candidate, dict[str, Any]]]) -> None:
        if store is not None and maker.skip_existing:
            t0 = time.perf_counter()
            done = _already_predicted(store, facts, version)
            names: dict[str, list[str]] = {}
            for cand, _ in facts:
                if id(cand) in done:
                    names.setdefault(done[id(cand)], []).append(cand.source)
            add_sources(store, names)  # a skipped crystal keeps the name it has in this run
            timings["store"] = timings.get("store", 0.0) + time.perf_counter() - t0
            skipped.extend(done.values())
            bar.advance(len(done))
            facts = [(c, f) for c, f in facts if id(c) not in done]
        if not facts:
            return
        if model_pool is None:
            keep(_documents(context, facts, timings))
            return
        step = min(batch_size, MODEL_PART_SIZE)
        for a in range(0, len(facts), step):
            pending.append(model_pool.submit(_worker_documents, facts[a : a + step]))
        collect(block=False)

    try:
        if futures:
            for future in futures:
                run_part(future.result())
        else:
            for i, part in parts:
                run_part(structure_facts(part, i, symprec))
        collect(block=True)
    except BaseException:
        if model_pool is not None:  # workers may still be busy with this job's parts
            close_model_pool()
        raise
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    failures = [[d.source, d.error or ""] for d in docs if d.state == "failed"]
    logger.info(
        "predicted %d structures (%d failed, %d already in the store) for %s in %.1f s on %s",
        len(docs),
        len(failures),
        len(skipped),
        ", ".join(tasks),
        elapsed,
        device,
    )
    if maker.return_documents:
        out_docs = [d.to_store_dict() for d in docs]
        if skipped:
            found = store.query({"prediction_id": {"$in": skipped}})  # type: ignore[union-attr]
            out_docs.extend({k: v for k, v in d.items() if k != "_id"} for d in found)
        return out_docs
    n = len(docs) + len(skipped)
    ids = [d.prediction_id for d in docs] + skipped
    return {
        "n": n,
        "n_documents": len(set(ids)),
        "n_successful": n - len(failures),
        "n_failed": len(failures),
        "n_skipped": len(skipped),
        "prediction_ids": ids,
        "failures": failures,
        "model_version": version,
        "tasks": list(tasks),
        "device": device,
        "timings": {"total_s": elapsed, **{f"{k}_s": v for k, v in timings.items()}},
        "written": written,
    }


def _already_predicted(
    store: Store, facts: list[tuple[Candidate, dict[str, Any]]], version: str
) -> dict[int, str]:
    """``id(candidate)`` → ``prediction_id`` of the candidates of one part whose successful
    document with model ``version`` is already in ``store``. Such a document of an older schema
    version is migrated in place (its derived fields recomputed from its stored tensors, every
    other field, e.g. DFPT results, kept: ``schemas.prediction.migrate_prediction_dict``)."""
    from atomate2_gmt.schemas.fields import PREDICTION_SCHEMA_VERSION
    from atomate2_gmt.schemas.prediction import migrate_prediction_dict
    from atomate2_gmt.stores import StoreConnectionError, describe_store, store_error_reason

    wanted = {
        f"{f['structure_key']}:{version}": id(c)
        for c, f in facts
        if c.state == "successful" and f.get("structure_key")
    }
    if not wanted:
        return {}
    try:
        store.connect()
        found = list(
            store.query(
                {"prediction_id": {"$in": list(wanted)}, "state": "successful"},
                properties=["prediction_id", "schema_version"],
            )
        )
        old = [
            d["prediction_id"]
            for d in found
            if d.get("schema_version") != PREDICTION_SCHEMA_VERSION
        ]
        if old:
            docs = [
                migrate_prediction_dict(d) for d in store.query({"prediction_id": {"$in": old}})
            ]
            store.update(docs, key="prediction_id")
        return {wanted[d["prediction_id"]]: d["prediction_id"] for d in found}
    except Exception as exc:
        raise StoreConnectionError(
            f"cannot read the existing predictions from {describe_store(store)}: "
            f"{store_error_reason(exc)}"
        ) from exc


def _ensemble_info(task: str, members: list[tuple[Any, dict[str, Any]]]) -> dict[str, Any]:
    """Model info of a task: the model's own, or one describing the ensemble."""
    import hashlib

    if len(members) == 1:
        return members[0][1]
    label = "|".join(str(info.get("checkpoint_hash") or info.get("name")) for _, info in members)
    digest = hashlib.sha256(label.encode()).hexdigest()
    return {
        "name": f"ensemble-{task}",
        "version": f"ens{len(members)}-{digest[:12]}",
        "checkpoint_hash": digest,
        "spec": f"ensemble of {len(members)}: "
        + ", ".join(str(info.get("version") or info.get("name")) for _, info in members),
    }


def _combine_members(
    task: str, results: list[dict[str, Any]], ieee_rotation: Any = None
) -> tuple[dict[str, Any], dict]:
    """One task's result from its ensemble members' results (mean tensor) and the standard
    deviation of each numeric derived field over the members (``ieee_rotation``: the
    structure's rotation to the IEEE frame, for the fields defined there)."""
    import numpy as np

    from atomate2_gmt.schemas.fields import DERIVED_FIELDS
    from atomate2_gmt.schemas.prediction import derived_quantities
    from atomate2_gmt.tensors.conventions import full_to_voigt, kind_of

    failed = [r for r in results if r["state"] != "successful"]
    if failed:
        return failed[0], {}
    tensors = [np.asarray(r["tensor"], dtype=float) for r in results]
    mean = np.mean(tensors, axis=0)
    spread: dict[str, float] = {}
    derived = [derived_quantities(task, t, ieee_rotation) for t in tensors]
    for name in DERIVED_FIELDS[task]:
        values = [d.get(name) for d in derived]
        numbers = [float(v) for v in values if isinstance(v, float) and np.isfinite(v)]
        if len(numbers) == len(values):
            spread[name] = float(np.std(numbers))
    combined = {
        **results[0],
        "tensor": mean.tolist(),
        "voigt": full_to_voigt(mean, kind_of(task)).tolist(),
    }
    return combined, spread


@dataclass
class _Context:
    """What every part of a prediction job shares."""

    tasks: tuple[str, ...]
    loaded: dict[str, list[tuple[Any, dict[str, Any]]]]
    model_info: dict[str, dict[str, Any]]
    version: str
    symprec: float
    device: str
    batch_size: int


def _forks() -> bool:
    """Whether worker processes are forked here (Linux), inheriting the parent's memory."""
    import sys

    return sys.platform.startswith("linux")


#: The context a forked model worker inherits (set in the job's process just before the fork).
_WORKER_CONTEXT: _Context | None = None


def _init_worker(threads: int = 1, parent: int | None = None) -> None:
    """Worker initialiser: ``threads`` torch threads and ONE BLAS thread (idle OpenBLAS threads
    spin: with its default of one per core, numpy's BLAS cost a single-threaded worker about a
    quarter of its CPU in spinning, taken from the other processes), and the worker exits when
    its parent process ``parent`` dies (:func:`_exit_with_parent`)."""
    import torch
    from threadpoolctl import threadpool_limits

    _exit_with_parent(parent)
    torch.set_num_threads(threads)
    threadpool_limits(limits=1, user_api="blas")


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
#: cannot be reused). The next job with the same models and settings reuses the warm workers;
#: any other job replaces the pool.
_POOL: dict[str, Any] = {"key": None, "pool": None}


def _pool_key(ctx: _Context, n: int) -> tuple[Any, ...]:
    import json

    members = tuple((task, tuple(id(net) for net, _ in m)) for task, m in ctx.loaded.items())
    info = json.dumps(ctx.model_info, sort_keys=True, default=str)
    return (ctx.tasks, members, info, ctx.version, ctx.symprec, ctx.device, ctx.batch_size, n)


def close_model_pool() -> None:
    """Shut down this process's model workers (at exit, after a failed job, or to free them)."""
    global _WORKER_CONTEXT
    pool = _POOL["pool"]
    _POOL.update(key=None, pool=None)
    _WORKER_CONTEXT = None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(close_model_pool)


def _model_pool(maker: GMTPredictMaker, ctx: _Context, n_items: int) -> Any:
    """The forked pool of model workers that inherit the loaded models (see ``model_workers``),
    or None when the job predicts in its own process (GPU, one core, no fork, small input).
    A pool forked for the same models and settings by an earlier job is reused."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from atomate2_gmt.data.domain import domain_reference

    global _WORKER_CONTEXT
    cores = os.cpu_count() or 1
    n = maker.model_workers
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
) -> list[Any]:
    """Predict one part and build its documents; adds the part's stage times to ``timings``."""
    from atomate2_gmt.model.predict import predict_many
    from atomate2_gmt.schemas.prediction import GMTPredictionDoc, compute_ieee_rotation

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
    )
    from atomate2_gmt.data.domain import domain_distances

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
            docs.append(
                GMTPredictionDoc.from_failure(
                    cand.source,
                    cand.error or "unusable structure",
                    cand.structure,
                    tasks=ctx.tasks,
                    model_version=ctx.version,
                    symprec=ctx.symprec,
                    provenance=cand.provenance,
                    e_above_hull=cand.e_above_hull,
                )
            )
            continue
        i = index[id(cand)]
        assert cand.structure is not None
        predictions, uncertainty = {}, {}
        for task, members in ctx.loaded.items():
            if len(members) == 1:
                predictions[task] = result.results[task][i]
                continue
            ieee = fact.get("ieee_rotation")
            if ieee is None:  # the key step failed: the document computes its own rotation
                ieee = compute_ieee_rotation(cand.structure)
            predictions[task], spread = _combine_members(
                task,
                [result.results[f"{task}@{k}"][i] for k in range(len(members))],
                None if ieee is None or isinstance(ieee, str) else ieee,
            )
            uncertainty.update(spread)
        try:  # any failure while one structure's document is built fails that structure alone
            doc = GMTPredictionDoc.from_predictions(
                cand.structure,
                predictions,
                ctx.model_info,
                source=cand.source,
                model_version=ctx.version,
                symprec=ctx.symprec,
                device=ctx.device,
                timings={t: per_structure.get(t, 0.0) for t in ctx.tasks},
                provenance=cand.provenance,
                e_above_hull=cand.e_above_hull,
                structure_key=fact.get("structure_key"),
                point_group_info=result.point_groups[i] if same_tolerance else None,
                ieee_rotation=fact.get("ieee_rotation"),
                uncertainty=uncertainty,
                domain_distance={task: float(domain[task][i]) for task in ctx.tasks},
            )
        except Exception as exc:
            logger.warning("document of %s could not be built: %r", cand.source, exc)
            doc = GMTPredictionDoc.from_failure(
                cand.source,
                f"document could not be built ({type(exc).__name__}: {exc})"[:500],
                cand.structure,
                tasks=ctx.tasks,
                model_version=ctx.version,
                symprec=ctx.symprec,
                provenance=cand.provenance,
                e_above_hull=cand.e_above_hull,
            )
        docs.append(doc)
    timings["documents"] = timings.get("documents", 0.0) + time.perf_counter() - t0
    return docs
