"""``rank_predictions``: the job that turns a screening run's store contents into its ranking."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobflow import job

from atomate2_gmt.routing import job_role
from atomate2_gmt.schemas.fields import DEFAULT_SORT
from atomate2_gmt.schemas.run import PredictionRunDoc

if TYPE_CHECKING:
    from maggma.core import Store

__all__ = ["distinct_documents", "rank_predictions", "ranking"]


def distinct_documents(runs: list[PredictionRunDoc], store: Store | None = None) -> tuple[int, int]:
    """(distinct documents of ``runs``, how many of them ``store`` flags ``likely_metal``;
    0 without a store). The keys (read from each run's ``ids_file`` when it holds them) are
    collected in a temporary SQLite file, not in memory, and the store is asked in batches,
    so a run of any size costs the same memory."""
    import sqlite3
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="gmt_rank_") as tmp:
        db = sqlite3.connect(Path(tmp) / "ids.sqlite")
        try:
            db.execute("CREATE TABLE ids (id TEXT PRIMARY KEY) WITHOUT ROWID")
            for run in runs:
                db.executemany(
                    "INSERT OR IGNORE INTO ids VALUES (?)",
                    ((pid,) for pid in run.all_prediction_ids()),
                )
            n_documents = db.execute("SELECT COUNT(*) FROM ids").fetchone()[0]
            n_metal = 0
            cursor = db.execute("SELECT id FROM ids")
            while store is not None and (batch := [row[0] for row in cursor.fetchmany(500)]):
                n_metal += store.count({"prediction_id": {"$in": batch}, "likely_metal": True})
        finally:
            db.close()
    return int(n_documents), n_metal


def ranking(
    store: Store,
    tasks: list[str],
    model_version: str | None,
    top: int = 20,
    query: dict[str, Any] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Task → the ``top`` rows of :func:`atomate2_gmt.query.query_candidates` for the task's
    default sort field (ε∞ largest eigenvalue, max |e_ij|, K_VRH), restricted to
    ``model_version``; ``query`` adds filters (e.g. ``{"exclude_elements": "Pb,Cd"}``)."""
    from atomate2_gmt.query import query_candidates

    out: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        out[task] = query_candidates(
            store,
            task,
            sort=DEFAULT_SORT[task],
            top=top,
            model_version=model_version,
            **(query or {}),
        )
    return out


@job(name="gmt_rank", **job_role("gmt", "rank"))
def rank_predictions(
    summaries: list[PredictionRunDoc | dict[str, Any]],
    top: int = 20,
    store: Store | None = None,
    query: dict[str, Any] | None = None,
    funnel: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Rank the predictions a screening run wrote (``summaries``: the chunk jobs' output
    documents).

    Returns ``{"ranking": task → rows, "n", "n_successful", "n_failed", "n_skipped" (inputs
    whose document was already stored: not predicted again), "n_documents" (distinct
    documents stored: inputs that are the same crystal share one), "failures", "replaced" (stored
    documents whose content disagreed with their identity, predicted again), "n_likely_metal"
    (stored crystals flagged ``likely_metal``), "model_version", "tasks", "store"}``; the rows
    are those of ``atomate2-gmt query`` (likely metals left out of the dielectric and piezo
    rankings unless ``query`` has ``include_metals``), and ``"funnel"``: the relaxation
    funnel's counts when ranking after it (:mod:`atomate2_gmt.flows.funnel`), else None.
    """
    from atomate2_gmt.stores import candidate_store, describe_store

    store = store if store is not None else candidate_store()
    runs = [PredictionRunDoc.model_validate(s) for s in summaries]
    versions = sorted({r.model_version for r in runs})
    tasks = sorted({t for r in runs for t in r.tasks}, key=list(DEFAULT_SORT).index)
    version = versions[0] if len(versions) == 1 else None
    store.connect()
    try:
        rows = ranking(store, tasks, version, top=top, query=query)
        n_documents, n_metal = distinct_documents(runs, store)
    finally:
        store.close()
    return {
        "ranking": rows,
        "n": sum(r.n for r in runs),
        "n_successful": sum(r.n_successful for r in runs),
        "n_failed": sum(r.n_failed for r in runs),
        "n_skipped": sum(r.n_skipped for r in runs),
        "n_documents": n_documents,
        "failures": [list(f) for r in runs for f in r.failures],
        "replaced": [list(x) for r in runs for x in r.replaced],
        "n_likely_metal": n_metal,
        "model_version": version,
        "tasks": tasks,
        "store": describe_store(store),
        "funnel": funnel,
    }
