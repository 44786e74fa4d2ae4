"""Selecting screened candidates for DFPT, and the job that adds one DFPT flow per pick.

:class:`SelectionPolicy` says what is promising (a property, thresholds and top-k on its derived
scalars, crystal-system and element filters, diversity across chemical systems, a cost cap on
the cell size) and how to score it (``exploit``: the predicted value; ``ucb``: value + κ·spread
when the documents carry an ensemble spread ``uncertainty.<field>``). Candidates already computed (a
``dfpt`` field, written by the feedback job) or in flight (a ``dfpt_selected`` mark, written
here when a candidate is picked) are never picked twice.

:func:`select_for_dfpt` is the one selection job: it picks, marks and returns a
``Response`` with one DFPT flow and one feedback job per pick, as an addition or (``detour``) as
a detour that the jobs after it wait for; the feedback job runs with ``OnMissing.NONE``
so that a DFPT flow that dies is recorded as failed on its candidate and never blocks the others.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from jobflow import Flow, Maker, OnMissing, Response, job
from monty.json import MSONable

from atomate2_gmt.query import PRESETS, CandidateQuery, figure_of_merit, ranked_documents
from atomate2_gmt.routing import job_role, route_new_jobs
from atomate2_gmt.schemas.fields import PREDICTION_KEY, resolve_sort_field

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from maggma.core import Store

    from atomate2_gmt.schemas.prediction import DFPTSelection

logger = logging.getLogger(__name__)

__all__ = [
    "SelectionPolicy",
    "carry_marks",
    "rank_candidates",
    "select_candidates",
    "select_for_dfpt",
]


@dataclass
class SelectionPolicy(MSONable):
    """Which candidates go to DFPT (MSONable: it travels as a jobflow job input).

    Args:
        query: what is a candidate: a :class:`~atomate2_gmt.query.CandidateQuery` (its dict,
            or a preset or property name: ``"mp-piezo"``, ``"piezo"``). Its property, sort
            field, filters, bounds on the sort field (``min_value``/``max_value``) and preset
            are the policy's; candidates already computed or in flight are never picked.
        top_k: how many to pick.
        max_per_chemsys: at most this many picks per chemical system (diversity).
        max_sites: skip cells with more sites (DFPT cost grows ~ N³); the query's own
            ``max_sites`` applies too.
        strategy: ``exploit`` (best predicted value first; a preset's figure of merit less its
            ensemble σ where it has one) or ``ucb`` (value + kappa·σ, needs the ensemble spread
            ``uncertainty.<sort>`` on the documents: ``GMTPredictMaker(ensemble=...)``).
        kappa: exploration weight of ``ucb``.
        pool: how many top documents are read before the diversity cap (≥ top_k).
    """

    query: CandidateQuery | dict[str, Any] | str = "piezo"
    top_k: int = 5
    max_per_chemsys: int = 1
    max_sites: int | None = 40
    strategy: Literal["exploit", "ucb"] = "exploit"
    kappa: float = 1.0
    pool: int = 500

    def __post_init__(self) -> None:
        if isinstance(self.query, str):
            name = self.query
            self.query = CandidateQuery.build(
                **({"preset": name} if name in PRESETS else {"prop": name})
            )
        elif isinstance(self.query, dict):
            self.query = CandidateQuery.build(
                **{k: v for k, v in self.query.items() if not k.startswith("@")}
            )
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.max_per_chemsys < 1:
            raise ValueError(f"max_per_chemsys must be >= 1, got {self.max_per_chemsys}")
        if self.strategy not in ("exploit", "ucb"):
            raise ValueError(f"unknown strategy {self.strategy!r}; valid: 'exploit', 'ucb'")
        if self.pool < self.top_k:
            raise ValueError(f"pool ({self.pool}) must be >= top_k ({self.top_k})")

    @property
    def candidate_query(self) -> CandidateQuery:
        """The query (validated in ``__post_init__``)."""
        assert isinstance(self.query, CandidateQuery)
        return self.query

    @property
    def prop(self) -> str:
        """The property the policy selects on."""
        return self.candidate_query.task

    @property
    def sort_field(self) -> str:
        """The derived field the policy ranks on."""
        return resolve_sort_field(self.prop, self.candidate_query.sort)

    def selection_query(self) -> CandidateQuery:
        """The query of the selection: successful predictions, no DFPT result yet, at most
        ``max_sites`` sites, the ``pool`` best."""
        q = self.candidate_query
        sites = [n for n in (q.max_sites, self.max_sites) if n is not None]
        return q.model_copy(
            update={
                "state": "successful",
                "dfpt": "none",
                "max_sites": min(sites) if sites else None,
                "top": self.pool,
            }
        )

    def criteria(self) -> dict[str, Any]:
        """The store filter of this policy (not yet computed, not in flight, in range)."""
        criteria = self.selection_query().criteria()
        criteria["dfpt_selected"] = {"$exists": False}
        return criteria

    def summary(self) -> dict[str, Any]:
        """The policy as plain JSON (recorded on the picks and in the job output)."""
        out = {k: v for k, v in asdict(self).items() if k != "query"}
        out["query"] = self.candidate_query.model_dump(mode="json", exclude_defaults=True)
        return out


def _score(doc: dict[str, Any], policy: SelectionPolicy) -> float:
    preset = policy.candidate_query.preset_rule
    if preset is not None and preset.figure is not None:
        value, spread = figure_of_merit(preset, doc)
        if value is None:
            return -math.inf
        if policy.strategy == "exploit":
            return value - (spread or 0.0)  # the preset's risk-aware rank
        where = f"{preset.figure} (from uncertainty.dielectric_total_mean)"
    else:
        value = float(doc[policy.sort_field])
        if policy.strategy == "exploit":
            return value
        spread = (doc.get("uncertainty") or {}).get(policy.sort_field)
        where = f"uncertainty.{policy.sort_field}"
    if spread is None:
        raise ValueError(
            f"strategy 'ucb' needs the ensemble spread {where} on the candidate documents "
            f"(GMTPredictMaker(ensemble=...)); {doc.get(PREDICTION_KEY)} has none"
        )
    return value + policy.kappa * float(spread)


def rank_candidates(
    docs: Iterable[dict[str, Any]], policy: SelectionPolicy
) -> list[dict[str, Any]]:
    """The documents ``policy`` picks from ``docs`` (documents of its query), best first: the
    one ranking of production (:func:`select_candidates`) and of the simulated campaign
    (:mod:`atomate2_gmt.active_learning.simulate`).

    At most the ``pool`` best documents by the sort field are considered (ties: the larger key
    first, the store's order; the store query already reads no more), scored (``exploit``:
    the value; ``ucb``: value + κ·spread), then taken best score first (ties: the smaller
    key), at most ``max_per_chemsys`` per chemical system and one per structure key, until
    ``top_k`` are picked.
    """
    docs = list(docs)
    if len(docs) > policy.pool:
        field = policy.sort_field
        docs.sort(key=lambda d: (float(d[field]), d[PREDICTION_KEY]), reverse=True)
        docs = docs[: policy.pool]
    docs.sort(key=lambda d: (-_score(d, policy), d[PREDICTION_KEY]))
    picked: list[dict[str, Any]] = []
    per_chemsys: dict[str, int] = {}
    seen_keys: set[str] = set()
    for doc in docs:
        chemsys = str(doc.get("chemsys"))
        key = doc.get("structure_key") or doc[PREDICTION_KEY]
        if per_chemsys.get(chemsys, 0) >= policy.max_per_chemsys or key in seen_keys:
            continue
        per_chemsys[chemsys] = per_chemsys.get(chemsys, 0) + 1
        seen_keys.add(key)
        picked.append(doc)
        if len(picked) == policy.top_k:
            break
    return picked


def select_candidates(store: Store, policy: SelectionPolicy) -> list[dict[str, Any]]:
    """The candidate documents the policy picks, best first (the store is connected here):
    the ``pool`` best documents of the policy's query (never computed or in flight), ranked
    by :func:`rank_candidates`."""
    query = policy.selection_query()
    docs, _ = ranked_documents(
        store,
        query,
        full_documents=True,
        extra={"dfpt_selected": {"$exists": False}},
        with_total=False,
    )
    return rank_candidates(docs, policy)


def _backend_code(maker: Maker) -> str:
    """'abinit' or 'vasp' for the project's DFPT Makers (their ``code`` attribute
    or their module), else the Maker's class name."""
    code = getattr(maker, "code", None)
    if isinstance(code, str) and code:
        return code
    module = type(maker).__module__
    for name in ("abinit", "vasp"):
        if f".{name}" in module:
            return name
    return type(maker).__name__


def _mark_selected(store: Store, docs: list[dict[str, Any]], mark: DFPTSelection) -> None:
    value = mark.model_dump(exclude_none=True)
    rows = [{**{k: v for k, v in d.items() if k != "_id"}, "dfpt_selected": value} for d in docs]
    if rows:
        store.update(rows, key=PREDICTION_KEY)


def carry_marks(store: Store, done_keys: Sequence[str] = ()) -> int:
    """Mark ``dfpt_selected`` on every document whose structure was computed or selected under
    another document (earlier model version), or is in ``done_keys`` (the structures picked in
    earlier rounds: a re-screen under the same model-version label replaces the documents and
    their marks); returns how many were marked. Connects ``store``."""
    from atomate2_gmt.schemas.prediction import DFPTSelection

    store.connect()
    done: dict[str, str] = {k: "earlier round" for k in done_keys}
    for d in store.query(
        criteria={"$or": [{"dfpt": {"$exists": True}}, {"dfpt_selected": {"$exists": True}}]},
        properties=[PREDICTION_KEY, "structure_key"],
    ):
        if d.get("structure_key"):
            done.setdefault(d["structure_key"], d[PREDICTION_KEY])
    if not done:
        return 0
    rows = []
    for d in store.query(
        criteria={
            "structure_key": {"$in": sorted(done)},
            "dfpt": {"$exists": False},
            "dfpt_selected": {"$exists": False},
        }
    ):
        row = {k: v for k, v in d.items() if k != "_id"}
        row["dfpt_selected"] = DFPTSelection(
            at=datetime.now(UTC).isoformat(), carried_from=done[d["structure_key"]]
        ).model_dump(exclude_none=True)
        rows.append(row)
    if rows:
        store.update(rows, key=PREDICTION_KEY)
    return len(rows)


@job(name="gmt_select", **job_role("gmt"))
def select_for_dfpt(
    policy: SelectionPolicy | dict[str, Any],
    dfpt_maker: Maker,
    store: Store | None = None,
    upstream: Any = None,
    detour: bool = False,
    screen: dict[str, Any] | None = None,
    done_keys: Sequence[str] | None = None,
) -> Response:
    """Pick candidates by ``policy`` and add one ``dfpt_maker`` flow + feedback job per pick.

    ``dfpt_maker.make(structure, candidate_id=...)`` must return a Job/Flow whose output is a
    :class:`~atomate2_gmt.schemas.dfpt.DFPTResultDoc`. ``upstream`` only orders this job after
    another (e.g. the screening flow's ranking). ``detour``: the DFPT and feedback jobs run
    as a detour, so the jobs after this one wait for them (discovery, campaign); otherwise
    they are an addition. ``screen``: a screening flow's output, whose ``model_version``
    restricts the selection when the policy names none (a campaign round selects among the
    documents of its own model). ``done_keys`` (a campaign; None: not one): structure keys
    picked in earlier rounds; those and every structure computed or in flight under another
    document are marked first (:func:`carry_marks`), so none is picked twice.

    Output: the picks (prediction_id, formula, value, source) and the policy; with
    ``done_keys``, also the picks' ``structure_keys`` and ``n_carried_marks``.
    """
    from pymatgen.core import Structure

    from atomate2_gmt.jobs.feedback import feedback_job
    from atomate2_gmt.schemas.prediction import DFPTSelection
    from atomate2_gmt.stores import candidate_store

    if isinstance(policy, dict):
        policy = SelectionPolicy(**policy)
    version = (screen or {}).get("model_version")
    if policy.candidate_query.model_version is None and version:
        query = policy.candidate_query.model_copy(update={"model_version": version})
        policy = replace(policy, query=query)
    store = store if store is not None else candidate_store()
    carried = carry_marks(store, done_keys) if done_keys is not None else 0
    picks = select_candidates(store, policy)
    sort_field = policy.sort_field
    code = _backend_code(dfpt_maker)
    _mark_selected(
        store,
        picks,
        DFPTSelection(at=datetime.now(UTC).isoformat(), code=code, policy=policy.summary()),
    )
    store.close()
    jobs: list[Any] = []
    for doc in picks:
        structure = Structure.from_dict(doc["structure"])
        dfpt = dfpt_maker.make(structure, candidate_id=doc[PREDICTION_KEY])
        feedback = feedback_job(
            dfpt.output,
            candidate_id=doc[PREDICTION_KEY],
            structure=doc["structure"],
            code=code if code in ("abinit", "vasp") else "abinit",
        )
        feedback.config.on_missing_references = OnMissing.NONE
        feedback.name = f"dfpt_feedback_{doc.get('formula_pretty')}"
        jobs.extend([dfpt, feedback])
    logger.info("selected %d candidates for DFPT by %s", len(picks), sort_field)
    output: dict[str, Any] = {
        "selected": [
            {
                PREDICTION_KEY: d[PREDICTION_KEY],
                "formula": d.get("formula_pretty"),
                sort_field: d.get(sort_field),
                "source": d.get("source"),
            }
            for d in picks
        ],
        "policy": policy.summary(),
    }
    if done_keys is not None:
        output["structure_keys"] = [d.get("structure_key") for d in picks]
        output["n_carried_marks"] = carried
    if not jobs:
        return Response(output=output)
    added = route_new_jobs(Flow(jobs, name="dfpt"))  # routed like this job's flow, if it was
    if detour:
        return Response(output=output, detour=added)
    return Response(output=output, addition=added)
