"""``rank_predictions``: the job that turns a screening run's store contents into its ranking."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobflow import job

from atomate2_gmt.routing import job_role
from atomate2_gmt.schemas.fields import DEFAULT_SORT

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
    summaries: list[dict[str, Any]],
    top: int = 20,
    store: Store | None = None,
    query: dict[str, Any] | None = None,
    funnel: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Rank the predictions a screening run wrote (``summaries``: outputs of the chunk jobs).

    Returns ``{"ranking": task → rows, "n", "n_successful", "n_failed", "n_documents" (distinct
    documents stored: inputs that are the same crystal share one), "failures", "replaced" (stored
    documents whose content disagreed with their identity, predicted again), "n_likely_metal"
    (stored crystals flagged ``likely_metal``), "model_version", "tasks", "store"}``; the rows
    are those of ``atomate2-gmt query`` (likely metals left out of the dielectric and piezo
    rankings unless ``query`` has ``include_metals``), and ``"funnel"``: the relaxation
    funnel's counts when ranking after it (:mod:`atomate2_gmt.flows.funnel`), else None.
    """
    from atomate2_gmt.settings import GMTSettings
    from atomate2_gmt.stores import candidate_store, describe_store

    settings = GMTSettings()
    store = store if store is not None else candidate_store(settings)
    versions = sorted({s["model_version"] for s in summaries})
    tasks = sorted({t for s in summaries for t in s["tasks"]}, key=list(DEFAULT_SORT).index)
    version = versions[0] if len(versions) == 1 else None
    store.connect()
    try:
        rows = ranking(store, tasks, version, top=top, query=query)
        ids = sorted({pid for s in summaries for pid in s["prediction_ids"]})
        n_metal = store.count({"prediction_id": {"$in": ids}, "likely_metal": True}) if ids else 0
    finally:
        store.close()
    return {
        "ranking": rows,
        "n": sum(s["n"] for s in summaries),
        "n_successful": sum(s["n_successful"] for s in summaries),
        "n_failed": sum(s["n_failed"] for s in summaries),
        "n_documents": len({pid for s in summaries for pid in s["prediction_ids"]}),
        "failures": [f for s in summaries for f in s["failures"]],
        "replaced": [r for s in summaries for r in s.get("replaced", [])],
        "n_likely_metal": n_metal,
        "model_version": version,
        "tasks": tasks,
        "store": describe_store(store),
        "funnel": funnel,
    }
