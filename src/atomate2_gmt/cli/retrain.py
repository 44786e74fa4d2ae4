"""``atomate2-gmt retrain``: retrain a task once enough new DFPT documents arrived (cron-safe)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from atomate2_gmt.cli.context import cli_settings
from atomate2_gmt.model.config import TASK_KIND

if TYPE_CHECKING:
    from atomate2_gmt.jobs.retrain import GMTRetrainMaker


@contextlib.contextmanager
def retrain_lock(project_dir: Path, task: str) -> Iterator[bool]:
    """Non-blocking exclusive lock ``PROJECT_DIR/locks/retrain-<task>.lock`` (``filelock``, an
    OS lock); yields whether this process holds it (released on exit, also if the process
    dies)."""
    from filelock import FileLock, Timeout

    path = Path(project_dir).expanduser() / "locks" / f"retrain-{task}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def retrain(
    task: str = typer.Option(..., help=f"one of {', '.join(TASK_KIND)}"),
    if_new: int = typer.Option(1, "--if-new", help="retrain only if at least N new documents"),
    epochs: int | None = typer.Option(None, help="default 20 (fine-tune) / 200 (from scratch)"),
    lr: float | None = typer.Option(None, help="default 2e-4 (fine-tune) / 1e-3 (from scratch)"),
    batch_size: int = typer.Option(64),
    from_scratch: bool = typer.Option(False, "--from-scratch", help="do not fine-tune"),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda', 'cuda:1'"),
    tolerance: float = typer.Option(0.0, help="promote if held-out Fnorm ≤ promoted + this"),
    submit: bool = typer.Option(False, "--submit", help="submit via jobflow-remote instead"),
    project: str | None = typer.Option(None, help="jobflow-remote project (with --submit)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="report and build, do not run/submit"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Fine-tune (or retrain) the promoted model of TASK on shipped + feedback data when at
    least --if-new new DFPT documents arrived; register it, promote it if not worse."""
    from atomate2_gmt.jobs.retrain import GMTRetrainMaker, count_new_documents

    settings = cli_settings(ctx)
    with retrain_lock(settings.PROJECT_DIR, task) as held:
        if not held:
            typer.echo(f"another retrain of {task} is running (lock held); nothing done")
            return
        counts = count_new_documents(task, settings)
        if counts.get("seeded"):  # the shipped model became v1 of the registry just now
            typer.echo(f"{task}: {counts['seeded']}")
        n_new, need = counts["n_new"], max(1, if_new)
        if n_new < need:
            typer.echo(
                f"{task}: {n_new} new training document(s) since {counts['promoted']}, "
                f"{need} needed; nothing to do"
            )
            return
        maker = GMTRetrainMaker(
            task=task,
            from_scratch=from_scratch,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            device=device,
            min_new=need,
            tolerance=tolerance,
        )
        typer.echo(
            f"{task}: {n_new} new training document(s) since {counts['promoted']} (≥ {need} needed)"
        )
        if submit:
            _submit(maker, project, dry_run)
            return
        if dry_run:
            typer.echo(f"dry run: would retrain with {maker}")
            return
        from atomate2_gmt import progress
        from atomate2_gmt.jobs.retrain import retrain as run_retrain

        with progress.reporting(quiet=quiet):
            summary = run_retrain(maker, settings)
        typer.echo(json.dumps(summary, indent=1, default=str))
        typer.echo(outcome_line(summary))


def outcome_line(summary: dict[str, Any]) -> str:
    """One line on what a retraining did: nothing (and why), or the new version and whether it
    was promoted."""
    task = summary["task"]
    if summary.get("version") is None:
        return f"{task}: nothing retrained ({summary['reason']})"
    verdict = "promoted" if summary.get("promoted") else "registered, not promoted"
    return f"{task}: retrained → {summary['version']}, {verdict}: {summary['reason']}"


def _submit(maker: GMTRetrainMaker, project: str | None, dry_run: bool) -> None:
    from jobflow import Flow

    flow = Flow([maker.make()], name="gmt_retrain")
    if dry_run:
        typer.echo(f"dry run: would submit flow {flow.name} ({len(flow.jobs)} job), not submitted")
        return
    try:
        from jobflow_remote import submit_flow
    except ImportError:
        typer.echo("--submit needs jobflow-remote (pip install jobflow-remote)", err=True)
        raise typer.Exit(1) from None
    ids = submit_flow(flow, project=project)
    typer.echo(f"submitted {flow.name}: {ids}")
