"""``GMTDiscoveryMaker``: screen → select → DFPT → feedback → results, as one jobflow Flow.

The flow's output is that of its last job, :func:`discovery_results`: the selection and, for
each pick, the DFPT result as the feedback job stored it on the candidate's document (state,
tensors, validation reasons, training record ids). The selection job detours through the DFPT
and feedback jobs it creates, so the results job runs after all of them. The same results can be
read from the candidate store at any time with the query in the output's ``query`` field
(``{"prediction_id": {"$in": [...]}}``, the ``dfpt`` field of each document) or compared with
the predictions by ``atomate2-gmt report``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobflow import Flow, Maker, job

from atomate2_gmt.flows.screen import GMTScreenMaker
from atomate2_gmt.jobs.select import SelectionPolicy, select_for_dfpt
from atomate2_gmt.routing import job_role
from atomate2_gmt.schemas.fields import PREDICTION_KEY

if TYPE_CHECKING:
    from maggma.core import Store

__all__ = ["GMTDiscoveryMaker", "discovery_results"]

#: Fields of a candidate's ``dfpt`` record copied into the discovery flow's output.
RESULT_FIELDS = (
    "state",
    "code",
    "functional",
    "tensors",
    "reasons",
    "training_record_ids",
    "error",
    "job_uuid",
)


@job(name="gmt_discovery_results", **job_role("gmt"))
def discovery_results(selection: dict[str, Any], store: Store | None = None) -> dict[str, Any]:
    """The selection with each pick's DFPT result, read from the candidate store.

    Returns ``{"selected", "policy", "results": [{"prediction_id", "formula", "dfpt": {state,
    code, functional, tensors (task → full Cartesian tensor: ε dimensionless, e C/m², C GPa),
    reasons, training_record_ids, error, job_uuid} or None}], "n_accepted", "n_rejected",
    "n_failed", "n_missing", "query"}``. ``dfpt`` is None when no result reached the candidate
    (``n_missing``); ``query`` fetches the same documents from the candidate store later.
    """
    from atomate2_gmt.stores import candidate_store

    ids = [s[PREDICTION_KEY] for s in selection.get("selected") or []]
    query = {PREDICTION_KEY: {"$in": ids}}
    own = store if store is not None else candidate_store()
    found: dict[str, dict[str, Any]] = {}
    if ids:
        own.connect()
        try:
            docs = own.query(query, properties=[PREDICTION_KEY, "formula_pretty", "dfpt"])
            found = {d[PREDICTION_KEY]: d for d in docs}
        finally:
            own.close()
    results = []
    for pick in selection.get("selected") or []:
        doc = found.get(pick[PREDICTION_KEY]) or {}
        dfpt = doc.get("dfpt")
        results.append(
            {
                PREDICTION_KEY: pick[PREDICTION_KEY],
                "formula": pick.get("formula"),
                "dfpt": {k: dfpt.get(k) for k in RESULT_FIELDS} if dfpt else None,
            }
        )
    states = [(r["dfpt"] or {}).get("state") for r in results]
    return {
        "selected": selection.get("selected") or [],
        "policy": selection.get("policy"),
        "results": results,
        "n_accepted": states.count("accepted"),
        "n_rejected": states.count("rejected"),
        "n_failed": states.count("failed"),
        "n_missing": states.count(None),
        "query": query,
    }


@dataclass
class GMTDiscoveryMaker(Maker):
    """Screen candidates, pick the promising ones by ``policy`` and run ``dfpt_maker`` on each;
    the DFPT results come back as training documents, on the candidates' documents and in the
    flow's output (:func:`discovery_results`).

    Args:
        name: flow name.
        screen_maker: the screening flow (chunked predictions into the candidate store).
        policy: which candidates go to DFPT (:class:`~atomate2_gmt.jobs.select.SelectionPolicy`).
        dfpt_maker: any DFPT backend Maker whose ``make(structure, candidate_id=...)`` returns a
            Job/Flow with a ``DFPTResultDoc`` output (ABINIT, VASP through atomate2, ...).
    """

    name: str = "gmt_discovery"
    screen_maker: GMTScreenMaker = field(default_factory=GMTScreenMaker)
    policy: SelectionPolicy = field(default_factory=SelectionPolicy)
    dfpt_maker: Maker | None = None

    def make(self, candidates: Any) -> Flow:
        """The flow for ``candidates``; its output is :func:`discovery_results`' (the selection
        and each pick's DFPT result; the DFPT flows are added when the selection job runs)."""
        if self.dfpt_maker is None:
            raise ValueError("GMTDiscoveryMaker needs a dfpt_maker (e.g. the ABINIT DFPT maker)")
        screen = self.screen_maker.make(candidates)
        select = select_for_dfpt(
            self.policy,
            self.dfpt_maker,
            store=self.screen_maker.store,
            upstream=screen.output,
            detour=True,
        )
        results = discovery_results(select.output, store=self.screen_maker.store)
        return Flow([screen, select, results], output=results.output, name=self.name)
