"""``GMTPredictMaker``: one jobflow job that predicts crystal tensors for a list of structures.

One job per large batch, not per structure: the models are loaded once, every structure's graph
and point group are built once for all tasks, and the forward passes run in batches on the
chosen device (the engine, :mod:`atomate2_gmt.engine`). Each structure becomes one
:class:`~atomate2_gmt.schemas.prediction.GMTPredictionDoc`; a bad structure becomes a failed
document with its reason and never sinks the batch. The Maker is plain data: ``make`` builds the
engine's :class:`~atomate2_gmt.engine.EngineSettings` from its fields and runs the engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobflow import Maker, job

from atomate2_gmt.candidates import CandidateLike, InputLimits
from atomate2_gmt.data.records import TASKS
from atomate2_gmt.engine import EngineSettings
from atomate2_gmt.routing import job_role
from atomate2_gmt.schemas.run import PredictionRunDoc
from atomate2_gmt.tensors.tasks import TASK_SPECS

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from maggma.core import Store

    from atomate2_gmt.model.tensor_model import TensorModel
    from atomate2_gmt.settings import GMTSettings

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TASKS",
    "GMTPredictMaker",
    "chunk_marker",
    "finished_chunk",
    "predict_documents",
    "write_chunk_marker",
]

MARKER_FORMAT = 1
"""Version of the done markers' naming and content (:func:`chunk_marker`)."""

DEFAULT_TASKS: tuple[str, ...] = tuple(t for t, spec in TASK_SPECS.items() if spec.screen_default)
"""Tasks predicted when none are named (``TaskSpec.screen_default``): ε∞, e_ijk and C_ijkl."""


@dataclass
class GMTPredictMaker(Maker):
    """Predict crystal tensors for many structures in ONE job (batched, on one device).

    Args:
        name: job name (shown in logs; workers are chosen by the job's role, ``routing``).
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
        return_documents: the output document carries the documents (store dicts); False →
            only their counts, ids and failures (what the screening flow uses, so that large
            documents are not copied into the job store).
        workers: processes that read files and compute structure keys and IEEE rotations while
            the models predict (None → one if the machine has ≥ 2 cores; 0 → all in-process).
        model_workers: on a CPU device, forked processes (one torch thread each) that run the
            forward passes and build the documents of sub-parts of at most
            :data:`~atomate2_gmt.engine.MODEL_PART_SIZE` structures, so
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
        ensemble_spread_scale: task → calibration factor of its ensemble's standard deviation
            (default 1, the raw spread; e.g. the ``calibrating_scale`` that ``atomate2-gmt
            evaluate --member`` fits on a validation split). Part of the ensemble's version.
        done_dir: with ``write_to_store``, the folder of the jobs' done markers (a screening
            flow sets it): a job whose inputs are files (paths or
            :class:`~atomate2_gmt.sources.SourceSlice` parts) writes, when it ends, a marker
            named by its inputs (paths, sizes, modification times), model version, symmetry
            tolerance and document schema that holds its summary and its documents' keys; the
            job's output then leaves the keys out (``ids_file``), so that a screening run's
            job outputs do not grow with its inputs. A re-run of a job whose marker records no
            failure and whose documents are all in the store (as successful documents of the
            current schema) returns that summary without reading its inputs
            (:func:`chunk_marker`, :func:`finished_chunk`). None → no markers.
        read_ahead: the inputs of the job this process runs next (files or
            :class:`~atomate2_gmt.sources.SourceSlice` parts; a screening flow run by
            ``run_locally`` sets it to the next chunk's): once this job's inputs are queued, its
            reading workers read those (:func:`atomate2_gmt.engine.predict_documents`), unless
            the next job's done marker is there already. None → nothing read ahead (the
            default: under jobflow-remote each job runs in its own process, where the reading
            would be lost).
        project_dir: the project folder whose settings file-backed defaults (embedded stores,
            registry, caches) the job uses; None → the worker's ``PROJECT_DIR``. The only part
            of the settings a job document names: the rest (credentials included) is resolved
            on the worker when the job starts (:func:`atomate2_gmt.settings.resolve_settings`)
            and passed down.

    The job's output is a :class:`~atomate2_gmt.schemas.run.PredictionRunDoc`. With
    ``write_to_store`` the documents are upserted by the job itself, part by part, rather than
    returned for a later job to store: a job that dies keeps the parts it finished, a re-run
    skips them (``skip_existing``), and the documents never pass through the jobflow job store.

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
    ensemble_spread_scale: dict[str, float] = field(default_factory=dict)
    done_dir: str | None = None
    read_ahead: list[Any] | None = None
    project_dir: str | None = None

    def settings(self) -> GMTSettings:
        """The settings of this maker's jobs: those in force where it runs, with its
        ``project_dir``."""
        from atomate2_gmt.settings import resolve_settings

        return resolve_settings(self.project_dir)

    def model_spec(self, task: str, settings: GMTSettings | None = None) -> str:
        """``"pretrained"``, ``"registry"`` or a checkpoint path for ``task``."""
        return self.models.get(task) or (settings or self.settings()).model_for(task)

    def load_model(self, task: str) -> tuple[TensorModel, dict[str, Any]]:
        """The model of ``task`` and its info (name, version, checkpoint hash, spec).

        Raises a ``ValueError`` naming the task when no model is available for it.
        """
        return self.load_spec(task, self.model_spec(task))

    def load_ensemble(self, task: str) -> list[tuple[TensorModel, dict[str, Any]]]:
        """The members of ``task``'s ensemble (see ``ensemble``)."""
        specs = self.ensemble.get(task) or []
        if len(specs) < 2:
            raise ValueError(f"the ensemble of task {task!r} needs >= 2 models, got {len(specs)}")
        return [self.load_spec(task, spec) for spec in specs]

    def load_spec(self, task: str, spec: str) -> tuple[TensorModel, dict[str, Any]]:
        """Load one model spec (``pretrained``, ``registry`` or a checkpoint path)."""
        from atomate2_gmt.registry.loading import load_model_spec

        return load_model_spec(task, spec, self.settings() if spec == "registry" else None)

    def load_members(self, task: str, specs: tuple[str, ...] = ()) -> list[tuple[TensorModel, Any]]:
        """The loaded model of ``task``, or its ensemble's members (the engine's loader;
        ``specs`` are those of :meth:`engine_settings`, read here through the overridable
        :meth:`load_model` / :meth:`load_ensemble`)."""
        return self.load_ensemble(task) if task in self.ensemble else [self.load_model(task)]

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

    def engine_settings(self, settings: GMTSettings | None = None) -> EngineSettings:
        """The plain settings of the inference engine: this maker's fields, defaults from
        ``settings`` (default: :meth:`settings`), tasks resolved, the device resolved."""
        from atomate2_gmt.model.predict import resolve_device

        settings = settings or self.settings()
        tasks = self.resolve_tasks()
        return EngineSettings(
            tasks=tasks,
            models={
                t: tuple(self.ensemble[t]) if t in self.ensemble else (self.model_spec(t),)
                for t in tasks
            },
            device=str(resolve_device(self.device or settings.DEVICE)),
            batch_size=self.batch_size or settings.BATCH_SIZE,
            symprec=self.symprec if self.symprec is not None else settings.SYMPREC,
            part_size=self.part_size,
            workers=self.workers,
            model_workers=self.model_workers,
            skip_existing=self.skip_existing,
            return_documents=self.return_documents,
            spread_scale=dict(self.ensemble_spread_scale),
            limits=InputLimits.from_settings(settings),
        )

    @job(output_schema=PredictionRunDoc, **job_role("gmt", "predict"))
    def make(self, candidates: Sequence[CandidateLike]) -> PredictionRunDoc:
        """Predict every candidate (Candidate, Structure, Structure dict or file path).

        Returns a :class:`~atomate2_gmt.schemas.run.PredictionRunDoc` (counts, keys, failures,
        timings; the documents' store dicts with ``return_documents``).
        """
        return predict_documents(self, candidates)


def predict_documents(
    maker: GMTPredictMaker, candidates: Sequence[CandidateLike]
) -> PredictionRunDoc:
    """The body of :meth:`GMTPredictMaker.make`, callable without jobflow: the store is
    built and checked (before any prediction), then :func:`atomate2_gmt.engine.
    predict_documents` runs with :meth:`GMTPredictMaker.engine_settings` and the maker's
    model loader. The job closes the store when it is done (its own connection)."""
    from atomate2_gmt.stores import candidate_store, check_store

    settings = maker.settings()
    store = None
    if maker.write_to_store:  # fail before any prediction if the store is unreachable
        store = maker.store if maker.store is not None else candidate_store(settings)
        check_store(store, timeout_s=settings.STORE_TIMEOUT_S)
    from atomate2_gmt import engine

    try:
        # the whole job, not only the engine's run, collects garbage less often (loading the
        # models and checking the done marker allocate too; frozen objects stay shared with
        # the workers the job forks)
        with engine.fewer_gc_passes():
            return _predict_chunk(maker, candidates, settings, store)
    finally:
        # the job's own connection: closed, or a screen of many chunks holds one per chunk
        # (an SQLite connection and its page cache of up to 2 MB, a file descriptor each)
        if store is not None:
            store.close()


def _predict_chunk(
    maker: GMTPredictMaker,
    candidates: Sequence[CandidateLike],
    settings: GMTSettings,
    store: Store | None,
) -> PredictionRunDoc:
    """The body of :func:`predict_documents` once its store (if any) is connected and
    checked: the done marker of a finished chunk, or the engine's run."""
    from atomate2_gmt import engine, progress

    engine_settings = maker.engine_settings(settings)
    loaded: dict[tuple[str, tuple[str, ...]], Any] = {}

    def load(task: str, specs: tuple[str, ...]) -> Any:  # each model loaded once per job
        if (task, specs) not in loaded:
            loaded[task, specs] = maker.load_members(task, specs)
        return loaded[task, specs]

    marker = None
    if store is not None and maker.done_dir is not None:
        version = model_version(engine_settings, load)
        marker = chunk_marker(maker.done_dir, candidates, version, engine_settings)
    if marker is not None and maker.skip_existing:
        done = finished_chunk(marker, store, version)  # type: ignore[arg-type]
        if done is not None:
            engine.drop_read_ahead()  # if the job before read this chunk ahead
            logger.info("%d structures of a finished chunk (%s): not read again", done.n, marker)
            with progress.task("predicting", done.n, unit="structures") as bar:
                bar.skip(done.n)
            return done
    read_ahead = maker.read_ahead
    if read_ahead and marker is not None and maker.skip_existing:
        following = chunk_marker(maker.done_dir, read_ahead, version, engine_settings)  # type: ignore[arg-type]
        if following is None or following.exists():  # not files, or finished already
            read_ahead = None
    run = engine.predict_documents(
        engine_settings, candidates, store=store, load=load, read_ahead=read_ahead
    )
    if marker is None:
        return run
    try:
        write_chunk_marker(marker, run)
    except OSError as exc:  # the documents are stored: only a re-run's shortcut is lost
        logger.warning("no done marker written (%s): the output keeps the keys", exc)
        return run
    return run.model_copy(update={"prediction_ids": [], "ids_file": str(marker)})


def model_version(settings: EngineSettings, load: Callable[[str, tuple[str, ...]], Any]) -> str:
    """The model version a run with ``settings`` gives its documents (the models loaded with
    ``load``, as the engine loads them: cached, so the engine's own load is free)."""
    from atomate2_gmt.model.ensemble import ensemble_info
    from atomate2_gmt.schemas.prediction import derive_model_version

    info = {
        task: ensemble_info(
            task,
            load(task, tuple(settings.models.get(task) or ())),
            settings.spread_scale.get(task, 1.0),
        )
        for task in settings.tasks
    }
    return derive_model_version(info, list(settings.tasks))


def chunk_marker(
    done_dir: str | os.PathLike[str],
    candidates: Sequence[CandidateLike],
    version: str,
    settings: EngineSettings,
) -> Path | None:
    """The done marker of a job over ``candidates``: a file in ``done_dir`` named by a hash of
    the inputs (each a file path or a :class:`~atomate2_gmt.sources.SourceSlice`: its resolved
    path, size and modification time, and the slice's bounds), the model ``version``, the tasks,
    the symmetry tolerance, the document schema and structure-key versions. None when an input
    is no file (a structure in memory) or cannot be stat'ed."""
    from atomate2_gmt.schemas.fields import PREDICTION_SCHEMA_VERSION
    from atomate2_gmt.sources import file_identity
    from atomate2_gmt.tensors.symmetry.keys import KEY_VERSION

    ident = file_identity(list(candidates))
    if ident is None:
        return None
    tag = json.dumps(
        [ident, version, list(settings.tasks), settings.symprec, PREDICTION_SCHEMA_VERSION,
         KEY_VERSION, MARKER_FORMAT],
        default=str,
    )  # fmt: skip
    return Path(done_dir) / f"chunk-{hashlib.sha256(tag.encode()).hexdigest()[:32]}.json"


def finished_chunk(marker: Path, store: Store, version: str) -> PredictionRunDoc | None:
    """The summary of the finished job that ``marker`` records, as a re-run's output (every
    input counted as skipped, nothing written), or None when there is no such marker, it
    records a failure (failed inputs are tried again), it is of another model version, or a
    document it names is not in ``store`` as a successful document of the current schema that
    can be trusted (:func:`~atomate2_gmt.schemas.prediction.identity_problem`: identity fields,
    formula and ``content_hash`` checked, as the engine checks what it skips). Then the chunk
    runs, and the engine replaces and reports what it cannot trust."""
    from atomate2_gmt.schemas.fields import PREDICTION_SCHEMA_VERSION
    from atomate2_gmt.schemas.prediction import identity_problem

    try:
        done = PredictionRunDoc.model_validate_json(marker.read_text())
    except (OSError, ValueError):
        return None
    if done.model_version != version or done.n_failed or not done.prediction_ids:
        return None
    ids = sorted(set(done.prediction_ids))
    store.connect()
    found = 0
    for a in range(0, len(ids), 500):
        for doc in store.query(
            {
                "prediction_id": {"$in": ids[a : a + 500]},
                "state": "successful",
                "schema_version": PREDICTION_SCHEMA_VERSION,
            }
        ):
            if identity_problem(doc, version) is not None:
                return None
            found += 1
    if found != len(ids):
        return None
    return done.model_copy(
        update={
            "n_skipped": done.n,
            "written": 0,
            "replaced": [],
            "timings": {"total_s": 0.0},
            "prediction_ids": [],
            "ids_file": str(marker),
        }
    )


def write_chunk_marker(marker: Path, run: PredictionRunDoc) -> None:
    """Write the done marker ``marker`` of a finished job's ``run`` (its summary and keys,
    without documents), atomically."""
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(run.model_dump_json(exclude={"documents"}))
    tmp.replace(marker)
