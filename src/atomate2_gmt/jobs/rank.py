"""``rank_predictions``: the job that turns a screening run's store contents into its ranking."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobflow import job

from atomate2_gmt.routing import job_role
from atomate2_gmt.schemas.fields import DEFAULT_SORT
from atomate2_gmt.schemas.run import PredictionRunDoc

if TYPE_CHECKING:
    from maggma.core import Store

__all__ = ["rank_predictions", "ranking"]


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


@job(name="gmt_rank", **job_role("gmt"))
def rank_predictions(
    summaries: list[PredictionRunDoc | dict[str, Any]],
    top: int = 20,
    store: Store | None = None,
    query: dict[str, Any] | None = None,
    funnel: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Rank the predictions a screening run wrote (``summaries``: the chunk jobs' output
    documents).

    Returns ``{"ranking": task → rows, "n", "n_successful", "n_failed", "n_documents" (distinct
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
        ids = sorted({pid for r in runs for pid in r.prediction_ids})
        n_metal = store.count({"prediction_id": {"$in": ids}, "likely_metal": True}) if ids else 0
    finally:
        store.close()
    return {
        "ranking": rows,
        "n": sum(r.n for r in runs),
        "n_successful": sum(r.n_successful for r in runs),
        "n_failed": sum(r.n_failed for r in runs),
        "n_documents": len({pid for r in runs for pid in r.prediction_ids}),
        "failures": [list(f) for r in runs for f in r.failures],
        "replaced": [list(x) for r in runs for x in r.replaced],
        "n_likely_metal": n_metal,
        "model_version": version,
        "tasks": tasks,
        "store": describe_store(store),
        "funnel": funnel,
    }
