"""``atomate2-gmt screen PATH`` and ``atomate2-gmt show KEY``.

``screen`` runs the screening flow (:class:`~atomate2_gmt.flows.screen.GMTScreenMaker`) locally
with jobflow's ``run_locally`` into the configured candidate store and prints the ranking;
``show`` prints one stored document and writes a picture of its tensors.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from atomate2_gmt.cli.context import ProjectDirOption, cli_settings

if TYPE_CHECKING:
    from atomate2_gmt.settings import GMTSettings

__all__ = ["print_screening", "report", "run_screening", "screen", "show"]


def run_screening(
    candidates: Any,
    tasks: tuple[str, ...] | None = None,
    chunk_size: int = 500,
    top: int = 10,
    device: str | None = None,
    batch_size: int | None = None,
    store: Any = None,
    settings: GMTSettings | None = None,
    relax_top: int = 0,
) -> dict[str, Any]:
    """Build the screening flow for ``candidates`` and run it with ``run_locally``; returns the
    ranking job's output plus ``"job_failures"``: ``[job name, exception]`` of every job that
    failed. ``relax_top`` > 0 runs the relaxation funnel instead
    (:class:`~atomate2_gmt.flows.funnel.GMTFunnelMaker`: that many documents per property
    relaxed with CHGNet and predicted again; generated crystals ranked only once relaxed).
    When a job failed, the output is summed from the chunk jobs that finished (no ranking)
    and ``"n_not_stored"`` counts the inputs of the failed chunks.

    ``settings`` (default: built from the environment) give the store (unless ``store`` is
    given), the models, device and batch size of the run; an unreachable store raises
    :class:`~atomate2_gmt.stores.StoreConnectionError` before anything is predicted."""
    from atomate2_gmt import progress

    progress.phase("setting up the screening flow (jobflow, the candidate store)")
    with progress.heartbeat("setting up the screening flow"):
        from jobflow import run_locally

        from atomate2_gmt.flows.screen import GMTScreenMaker
        from atomate2_gmt.jobs.rank import distinct_documents
        from atomate2_gmt.known_warnings import known_warnings_ignored
        from atomate2_gmt.schemas.run import PredictionRunDoc
        from atomate2_gmt.settings import resolve_settings
        from atomate2_gmt.sources import n_inputs
        from atomate2_gmt.stores import candidate_store, check_store

        settings = settings if settings is not None else resolve_settings()
        store = store if store is not None else candidate_store(settings)
        check_store(store, timeout_s=settings.STORE_TIMEOUT_S)
        store.close()
        maker = GMTScreenMaker(
            predict_maker=_predict_maker(
                settings, tasks=tasks, device=device, batch_size=batch_size
            ),
            chunk_size=chunk_size,
            top=top,
            store=store,
            check_store=False,
            work_dir=str(Path(settings.PROJECT_DIR).expanduser() / "sources"),
            read_ahead=True,  # run_locally: the chunk jobs run one after another here
        )
    if relax_top > 0:
        return _run_funnel(maker, candidates, relax_top)
    flow = maker.make(candidates)
    chunks = [list(getattr(j, "function_args", [[]])[0]) for j in flow.jobs[:-1]]
    total = sum(n_inputs(chunk) for chunk in chunks)
    with (
        _JobFailureLog() as failure_log,
        known_warnings_ignored(),
        progress.overall("screening", total, unit="structures", parts=len(chunks)),
    ):
        responses = run_locally(flow, ensure_success=False, log=False)
    failed = [job for job in flow.jobs if job.uuid not in responses]
    job_failures = [[job.name, failure_log.reason(job.uuid)] for job in failed]
    rank_job = flow.jobs[-1]
    if rank_job.uuid in responses:
        return {**dict(responses[rank_job.uuid][1].output), "job_failures": job_failures}
    summaries = [
        PredictionRunDoc.model_validate(responses[j.uuid][1].output)
        for j in flow.jobs[:-1]
        if j.uuid in responses
    ]
    lost = sum(n_inputs(getattr(j, "function_args", [[]])[0]) for j in failed if j is not rank_job)
    n_documents, _ = distinct_documents(summaries)
    return {
        "ranking": {},
        "n": sum(s.n for s in summaries),
        "n_successful": sum(s.n_successful for s in summaries),
        "n_failed": sum(s.n_failed for s in summaries),
        "n_skipped": sum(s.n_skipped for s in summaries),
        "n_documents": n_documents,
        "n_not_stored": lost,
        "failures": [list(f) for s in summaries for f in s.failures],
        "replaced": [list(r) for s in summaries for r in s.replaced],
        "model_version": summaries[0].model_version if summaries else None,
        "tasks": sorted({t for s in summaries for t in s.tasks}),
        "store": _store_name(store),
        "job_failures": job_failures,
    }


def _run_funnel(screen_maker: Any, candidates: Any, shortlist: int) -> dict[str, Any]:
    """Run the relaxation funnel of ``screen_maker`` locally; its final ranking's output plus
    ``"job_failures"`` (a failed relaxation is not one: it is in ``funnel["failures"]``)."""
    import contextlib
    import io

    from atomate2_gmt import progress

    with progress.heartbeat("setting up the relaxation funnel (atomate2)"):
        from jobflow import JobStore, run_locally
        from maggma.stores import MemoryStore

        from atomate2_gmt.flows.funnel import GMTFunnelMaker
        from atomate2_gmt.known_warnings import known_warnings_ignored

        flow = GMTFunnelMaker(screen_maker=screen_maker, shortlist=shortlist).make(candidates)
    # the jobs' outputs: the final ranking is a reference resolved through the job store, and
    # atomate2's force-field jobs keep their (optional) trajectories in its "data" store
    job_store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    # CHGNet prints two lines for every calculator it builds (model size, device): the funnel's
    # summary line names the potential instead. Progress and errors go to stderr.
    with (
        _JobFailureLog() as failure_log,
        _JobProgress(),
        known_warnings_ignored(),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        responses = run_locally(flow, ensure_success=False, log=False, store=job_store)
    funnel_job = flow.jobs[-1]
    if funnel_job.uuid in responses and len(responses[funnel_job.uuid]) > 1:
        output = job_store.get_output(funnel_job.uuid, which="last", load=True)
        # a failed relaxation is in the funnel's own failures
        return {**dict(output), "job_failures": failure_log.failures(except_kind="relax")}
    return {
        "ranking": {},
        "n": 0,
        "n_successful": 0,
        "n_failed": 0,
        "failures": [],
        "model_version": None,
        "tasks": [],
        "store": _store_name(screen_maker.store),
        "funnel": None,
        "job_failures": failure_log.failures()
        or [[funnel_job.name, failure_log.reason(funnel_job.uuid)]],
    }


def _predict_maker(settings: GMTSettings, **kwargs: Any) -> Any:
    """A :class:`~atomate2_gmt.jobs.predict.GMTPredictMaker` with the invocation's settings as
    its own fields: the models, device, batch size and symmetry tolerance they name (``kwargs``
    take precedence) and their project folder (embedded stores, registry, caches)."""
    from atomate2_gmt.jobs.predict import GMTPredictMaker

    fields: dict[str, Any] = {
        "models": dict(settings.MODELS),
        "device": settings.DEVICE,
        "batch_size": settings.BATCH_SIZE,
        "symprec": settings.SYMPREC,
        "project_dir": str(settings.PROJECT_DIR),
    }
    fields.update({k: v for k, v in kwargs.items() if v is not None})
    return GMTPredictMaker(**fields)


def _store_name(store: Any) -> str:
    from atomate2_gmt.stores import describe_store

    return str(describe_store(store))


def _logging_job() -> Any:
    """The jobflow job a jobflow log record being handled is about, or None.

    jobflow's records ("Starting job - <name> (<uuid>)", "<name> failed with exception")
    carry the job's name only, and jobs are told apart by their metadata (``routing.KIND_KEY``,
    set where each job is made), never by their names. The job is a local of the frame that
    logs the record: ``self`` of ``Job.run``, ``job`` of ``run_locally``'s job runner; a
    handler finds it a few frames above its ``emit``."""
    import sys
    from types import FrameType

    from jobflow import Job

    frame: FrameType | None = sys._getframe(1)
    for _ in range(24):
        if frame is None:
            return None
        for local in ("self", "job"):
            candidate = frame.f_locals.get(local)
            if isinstance(candidate, Job):
                return candidate
        frame = frame.f_back
    return None


def _kind(job: Any) -> str | None:
    from atomate2_gmt.routing import KIND_KEY

    return (getattr(job, "metadata", None) or {}).get(KIND_KEY)


class _JobFailureLog:
    """Collects the exceptions jobflow's ``run_locally`` logs for failed jobs (it reports them
    only as log records) without printing jobflow's other log lines: ``records`` maps each
    failed job's uuid to ``(name, kind, exception)``."""

    def __init__(self) -> None:
        import logging

        self.records: dict[str, tuple[str, str | None, str]] = {}
        self.logger = logging.getLogger("jobflow.managers.local")
        outer = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:  # a display error must never fail a job or the run (logging's contract)
                    message = record.getMessage()
                    name, sep, trace = message.partition(" failed with exception:")
                    if sep:
                        lines = [ln for ln in trace.strip().splitlines() if ln.strip()]
                        job = _logging_job()
                        uuid = job.uuid if job is not None else name
                        reason = lines[-1].strip() if lines else "unknown error"
                        outer.records[uuid] = (name, _kind(job), reason)
                except Exception:
                    self.handleError(record)

        self.handler = _Handler()

    def __enter__(self) -> _JobFailureLog:
        import logging

        self._saved = (self.logger.level, self.logger.propagate, self.logger.disabled)
        logging.getLogger("jobflow").setLevel(logging.WARNING)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        # a logging.config.dictConfig elsewhere in the process (jobflow-remote's runner does one)
        # disables every logger that exists at the time; the failure records are needed here
        self.logger.disabled = False
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self._saved[0])
        self.logger.propagate = self._saved[1]
        self.logger.disabled = self._saved[2]

    def reason(self, uuid: str) -> str:
        """The failed job's exception (``Type: message``), or why it did not run."""
        record = self.records.get(uuid)
        return record[2] if record else "not run: a job it depends on failed"

    def failures(self, *, except_kind: str | None = None) -> list[list[str]]:
        """``[job name, exception]`` of each failed job (but those of ``except_kind``)."""
        return [
            [name, reason]
            for name, kind, reason in self.records.values()
            if except_kind is None or kind != except_kind
        ]


class _JobProgress:
    """Progress lines for the jobs ``run_locally`` runs, read from jobflow's "Starting job" /
    "Finished job" log records and told apart by their metadata (``routing.KIND_KEY``): each
    relaxation (one atomate2 job that can take seconds) and each other job of the funnel but
    the prediction and ranking jobs (which report their own counts) gets a start line, and
    every job a line whenever nothing was written for 2 s while it runs (a prediction between
    two counts, a relaxation); a relaxation also gets a line with its time."""

    QUIET_KINDS = ("predict", "rank")

    def __init__(self) -> None:
        import logging

        self.logger = logging.getLogger("jobflow.core.job")
        self.current: tuple[str, float, str | None, str] | None = None
        outer = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:  # a display error must never fail a job (logging's contract)
                    outer.on_record(record.getMessage(), _logging_job())
                except Exception:
                    self.handleError(record)

        self.handler = _Handler()

    @staticmethod
    def _label(job: Any, name: str) -> str:
        """What a line calls the job: a relaxation by its position and source."""
        if _kind(job) == "relax":
            position = job.metadata.get("position") or ()
            where = "/".join(str(p) for p in position) or "?"
            return f"{where}: {job.metadata.get('source', name)}"
        return name

    def on_record(self, message: str, job: Any) -> None:
        """Print the line of one jobflow record (``job``: the job it is about)."""
        from atomate2_gmt import progress

        what, sep, rest = message.partition(" job - ")
        if not sep:
            return
        name = rest.rsplit(" (", 1)[0]
        kind = _kind(job)
        if what == "Starting":
            self.current = (name, time.perf_counter(), kind, self._label(job, name))
            if kind == "relax":
                progress.phase(f"relaxing {self.current[3]}")
            elif kind not in self.QUIET_KINDS:
                progress.phase(f"running {name}")
        elif what == "Finished" and self.current is not None:
            started = self.current[1]
            self.current = None
            if kind == "relax":
                source = job.metadata.get("source", name)
                progress.phase(f"relaxed {source} in {time.perf_counter() - started:.1f} s")

    def _beat(self) -> None:
        from atomate2_gmt import progress

        current = self.current
        if current is None or progress.idle_s() < 2.0:  # other lines are flowing
            return
        name, started, kind, label = current
        elapsed = time.perf_counter() - started
        if kind == "relax":
            progress.phase(f"relaxing {label} ({elapsed:.0f} s)")
        else:
            progress.phase(f"running {name} ({elapsed:.0f} s)")

    def __enter__(self) -> _JobProgress:
        import contextlib
        import logging

        from atomate2_gmt import progress

        self._saved = (self.logger.level, self.logger.propagate, self.logger.disabled)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self.logger.disabled = False
        self.logger.addHandler(self.handler)
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(progress.polling(self._beat, interval_s=0.5))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self._saved[0])
        self.logger.propagate = self._saved[1]
        self.logger.disabled = self._saved[2]


def print_screening(output: dict[str, Any], elapsed: float | None = None) -> None:
    """Print the ranking tables and the failures of a screening run."""
    from rich.console import Console

    from atomate2_gmt.cli.query import render_rows
    from atomate2_gmt.query import METAL_EXCLUDED

    console = Console(width=160)
    rate = f", {output['n'] / elapsed:.0f} structures/s" if elapsed else ""
    skipped = output.get("n_skipped") or 0
    again = f" ({skipped} of them already in the store: not predicted again)" if skipped else ""
    console.print(
        f"screened {output['n']} candidates: {output['n_successful']} predicted{again}, "
        f"{output['n_failed']} failed (tasks: {', '.join(output['tasks'])}; model version "
        f"{output['model_version']}; store {output['store']}{rate})"
    )
    n_docs = output.get("n_documents")
    if n_docs is not None and n_docs < output["n"]:
        console.print(
            f"stored as {n_docs} documents: {output['n'] - n_docs} inputs are the same crystal "
            "as another input (one document per crystal; its 'sources' keep every name)"
        )
    n_metal = output.get("n_likely_metal") or 0
    if n_metal and any(t in METAL_EXCLUDED for t in output["ranking"]):
        console.print(
            f"{n_metal} likely metals (docs/screening.md) are left out of the "
            f"{', '.join(t for t in output['ranking'] if t in METAL_EXCLUDED)} rankings; "
            "`atomate2-gmt query --property dielectric --include-metals` lists them"
        )
    funnel = output.get("funnel")
    if funnel:
        console.print(
            f"relaxation funnel ({funnel['potential']} through atomate2's ForceFieldRelaxMaker): "
            f"{funnel['n_shortlisted']} shortlisted, {funnel['n_relaxed']} relaxed "
            f"({funnel['n_converged']} converged, {funnel['relaxation_time_s']:.0f} s of "
            f"relaxation"
            + (
                f"; {funnel['n_reused']} relaxed in an earlier run, reused"
                if funnel.get("n_reused")
                else ""
            )
            + f"), {funnel['n_predicted']} predicted again, {funnel['n_mlip_hull']} with "
            f"an MLIP energy above the hull of {funnel['n_known_phases']} known phases; generated "
            "crystals that were not relaxed are left out of the ranking"
        )
        for source, reason in funnel["failures"][:10]:
            console.print(f"  not relaxed: {source}: {reason}")
    for task, rows in output["ranking"].items():
        if rows:
            console.print(render_rows(rows, task, "table"), end="")
    for pid, reason in output.get("replaced") or []:
        console.print(f"  replaced stored document {pid}: {reason}")
    for source, reason in output["failures"][:10]:
        console.print(f"  failed: {source}: {reason}")
    if len(output["failures"]) > 10:
        console.print(f"  ... and {len(output['failures']) - 10} more failures")
    for name, reason in output.get("job_failures") or []:
        console.print(f"[red]job {name} failed:[/red] {reason}", markup=True, highlight=False)
    if output.get("job_failures"):
        console.print(
            f"kept: the documents of the {output['n']} inputs above are in the store; "
            f"{output.get('n_not_stored', 0)} inputs of failed jobs were not stored (a failed job "
            "keeps the parts it finished). Fix the cause and run the same command again: what is "
            "stored is not predicted again."
        )


def screen(
    path: Annotated[
        Path,
        typer.Argument(
            help="Folder of CIF/POSCAR/JSON files, or one file: a structure, or a collection "
            "(MP-style summary JSON list or JSON lines, Alexandria entries, OPTIMADE response, "
            "extended XYZ; gzip or not)."
        ),
    ],
    tasks: Annotated[
        str | None,
        typer.Option(help="Comma-separated tasks (default: dielectric, piezo, elastic)."),
    ] = None,
    chunk_size: Annotated[int, typer.Option(min=1, help="Structures per prediction job.")] = 500,
    top: Annotated[int, typer.Option(min=1, help="Rows per property.")] = 10,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda (default: settings).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    relax_top: Annotated[
        int,
        typer.Option(
            min=0,
            help="Relax the best N per property with CHGNet and predict them again before the "
            "final ranking (0: no relaxation).",
        ),
    ] = 0,
    project_dir: ProjectDirOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Screen structure files into the candidate store (run locally) and print the ranking."""
    from atomate2_gmt import progress
    from atomate2_gmt.stores import StoreConnectionError

    settings = cli_settings(ctx, project_dir)
    task_list = tuple(t.strip() for t in tasks.split(",") if t.strip()) if tasks else None
    start = time.perf_counter()
    try:
        with progress.reporting(quiet=quiet):
            output = run_screening(
                path,
                task_list,
                chunk_size=chunk_size,
                top=top,
                device=device,
                batch_size=batch_size,
                settings=settings,
                relax_top=relax_top,
            )
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None
    except StoreConnectionError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from None
    print_screening(output, time.perf_counter() - start)
    if output.get("job_failures"):
        raise typer.Exit(1)
    if output["n_successful"] == 0:
        typer.echo(
            f"Error: nothing could be predicted: all {output['n']} inputs failed (reasons above)",
            err=True,
        )
        raise typer.Exit(1)


def _checked_store(ctx: typer.Context | None, project_dir: Path | None) -> tuple[Any, Any]:
    """(settings, connected candidate store); an unreachable store exits 1 with the reason."""
    from atomate2_gmt.stores import StoreConnectionError, candidate_store, check_store

    settings = cli_settings(ctx, project_dir)
    store = candidate_store(settings)
    try:
        check_store(store, timeout_s=settings.STORE_TIMEOUT_S)
    except StoreConnectionError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from None
    return settings, store


def show(
    key: Annotated[
        str,
        typer.Argument(
            help="prediction_id, structure_key, source name, or a structure file (predicted on "
            "demand when its crystal is not in the store)."
        ),
    ],
    picture: Annotated[
        Path | None, typer.Option(help="PNG to write (default: <project>/figures/<key>.png).")
    ] = None,
    project_dir: ProjectDirOption = None,
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Print one prediction document and write a picture of its tensors.

    Exit status: 0 shown; 1 the store cannot be reached or the file cannot be read or
    predicted; 2 nothing matches ``KEY`` (and it is no file) or the file holds several
    structures."""

    from atomate2_gmt.plotting import plot_tensor_surfaces
    from atomate2_gmt.query import find_document

    settings, store = _checked_store(ctx, project_dir)
    try:
        doc = find_document(store, key)
    except (KeyError, ValueError) as exc:
        if not Path(key).is_file():
            typer.echo(f"Error: {exc.args[0]}", err=True)
            raise typer.Exit(2) from None
        doc = _document_of_file(Path(key), store, settings)
    sym = doc.get("symmetry") or {}
    typer.echo(
        f"{doc.get('formula_pretty')}  {sym.get('symbol')} ({sym.get('number')}), point group "
        f"{sym.get('point_group')}, {sym.get('crystal_system')}; source {doc.get('source')}\n"
        f"prediction_id {doc.get('prediction_id')}\nstate {doc.get('state')}"
        + (f" ({doc.get('error')})" if doc.get("error") else "")
    )
    typer.echo(_source_line(doc))
    if doc.get("likely_metal") and doc.get("band_gap") is None:
        typer.echo(
            f"likely metal ({doc.get('likely_metal_reason')}): its ε and e predictions, made as "
            "for an insulator, mean little (docs/screening.md, Likely metals)"
        )
    tensors = {}
    for task, pred in (doc.get("predictions") or {}).items():
        if pred.get("state") != "successful":
            typer.echo(f"\n{task}: failed: {pred.get('error')}")
            continue
        tensors[task] = pred["tensor"]
        typer.echo(f"\n{task} ({pred.get('units')}), Voigt xx,yy,zz,yz,xz,xy, structure frame:")
        for row in pred["voigt"]:
            typer.echo("  " + " ".join(f"{v:10.4f}" for v in row))
        for line in _value_lines(doc, task):
            typer.echo("  " + line)
    if "piezo" in tensors and "elastic" in tensors:
        typer.echo(_d_line(tensors["piezo"], tensors["elastic"]))
    if not tensors:
        typer.echo("no successful prediction to draw")
        return
    if picture is None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:80]
        picture = Path(settings.PROJECT_DIR).expanduser() / "figures" / f"{safe}.png"
    try:
        out = plot_tensor_surfaces(tensors, picture, title=str(doc.get("formula_pretty")))
    except ValueError as exc:  # e.g. a singular elastic tensor: draw the others
        tensors.pop("elastic", None)
        if not tensors:
            typer.echo(f"no picture: {exc}")
            return
        out = plot_tensor_surfaces(tensors, picture, title=str(doc.get("formula_pretty")))
    typer.echo(f"\npicture: {out}")


def _source_line(doc: dict[str, Any]) -> str:
    """What the candidate source said of the crystal (never predicted; "not given" if absent)."""
    parts = []
    for field, unit in (("band_gap", "eV"), ("energy_above_hull", "eV/atom")):
        value = doc.get(field)
        parts.append(f"{field} {'not given' if value is None else f'{value:.4g} {unit}'}")
    if doc.get("material_id"):
        parts.insert(0, f"material_id {doc['material_id']}")
    return "source values: " + ", ".join(parts)


def _value_lines(doc: dict[str, Any], task: str) -> list[str]:
    """The task's derived values with units and their calibrated ensemble σ (or that the
    prediction had none: a single model)."""
    from atomate2_gmt.cli.query import header, with_sigma
    from atomate2_gmt.schemas.fields import DERIVED_FIELDS

    spread = doc.get("uncertainty") or {}
    note = None if spread else "single model"
    lines = [
        f"{header(f)} = {with_sigma(doc.get(f), spread.get(f), note)}"
        for f in DERIVED_FIELDS[task]
        if doc.get(f) is not None
    ]
    if note:
        lines.append("σ n/a (single model): no ensemble predicted, so no uncertainty")
    return lines


def _d_line(piezo: Any, elastic: Any) -> str:
    """The piezoelectric strain coefficients d = e·S from the predicted e and C (pC/N)."""
    from atomate2_gmt.tensors.properties import (
        compliance_from_elastic,
        piezo_d_from_e,
        piezo_longitudinal_max,
    )

    try:
        d = piezo_d_from_e(piezo, compliance_from_elastic(elastic))
    except ValueError as exc:  # a singular elastic tensor has no compliance
        return f"\nd = e·S: not available ({exc})"
    d_long, direction = piezo_longitudinal_max(d)
    along = ", ".join(f"{x:.3f}" for x in direction)
    return (
        f"\nd = e·S from the predicted e and C: largest longitudinal d = {d_long:.4g} pC/N "
        f"along ({along}) (structure frame)"
    )


def _document_of_file(path: Path, store: Any, settings: GMTSettings) -> dict[str, Any]:
    """The document of the one structure in ``path``: the stored one of the same crystal (its
    structure key), else predicted now with the settings' models (not stored). A file that
    cannot be read exits 1 with the reason; a file of several structures exits 2."""
    from atomate2_gmt.candidates import candidates_from_files
    from atomate2_gmt.jobs.predict import predict_documents
    from atomate2_gmt.query import find_document
    from atomate2_gmt.schemas.prediction import key_and_ieee_rotation

    cands = candidates_from_files([path])
    if len(cands) != 1:
        typer.echo(
            f"Error: {path.name} holds {len(cands)} structures; `show` takes one (screen the "
            "file, then show a record by its id)",
            err=True,
        )
        raise typer.Exit(2)
    cand = cands[0]
    if cand.structure is None or cand.error is not None:
        typer.echo(f"Error: cannot read {path}: {cand.error}", err=True)
        raise typer.Exit(1)
    structure_key, _ = key_and_ieee_rotation(cand.structure, settings.SYMPREC)
    if structure_key is not None:
        try:
            doc = find_document(store, structure_key)
            typer.echo(
                f"{path.name}: the same crystal as the stored {doc.get('source')}; its tensors "
                f"are in the frame of {doc.get('source')}'s structure, not of {path.name} "
                "(the IEEE-frame Voigt forms and the derived scalars do not depend on it)"
            )
            return doc
        except KeyError:
            pass
    maker = _predict_maker(settings, return_documents=True, workers=0, model_workers=0)
    try:
        docs = predict_documents(maker, [cand]).documents
    except (ValueError, OSError) as exc:
        typer.echo(f"Error: cannot predict {path}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{path.name} is not in the store: predicted on demand, not stored "
        "(`atomate2-gmt screen` stores it)"
    )
    return dict(docs[0])


def report(
    out: Annotated[
        Path, typer.Option(help="Folder for report.md, report.json, parity.png.")
    ] = Path("gmt_report"),
    include_rejected: Annotated[
        bool, typer.Option(help="Also list DFPT results that failed validation.")
    ] = False,
    project_dir: ProjectDirOption = None,
    predict_missing: Annotated[
        bool,
        typer.Option(
            help="Predict the DFPT parts that the screening did not predict with the current "
            "models (marked 'on demand'); otherwise they are listed with the reason."
        ),
    ] = True,
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Predicted vs DFPT tensors for every candidate with a DFPT result (table + parity plot)."""
    from atomate2_gmt.report import dfpt_comparison, write_report

    settings, store = _checked_store(ctx, project_dir)
    states = ("accepted", "rejected") if include_rejected else ("accepted",)
    missing: list[dict[str, Any]] = []
    rows = dfpt_comparison(
        store,
        states,
        predict_missing=predict_missing,
        missing=missing,
        predict_maker=_predict_maker(settings) if predict_missing else None,
    )
    paths = write_report(rows, out, missing)
    typer.echo(paths["md"].read_text())
    on_demand = sum(1 for r in rows if r.get("prediction") != "screening")
    typer.echo(
        f"{len(rows)} comparisons ({on_demand} predicted on demand), {len(missing)} parts not "
        f"compared; wrote {', '.join(str(p) for p in paths.values())}"
    )
