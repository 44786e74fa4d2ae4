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
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from jobflow import Flow, Maker, OnMissing, Response, job
from monty.json import MSONable

from atomate2_gmt.query import build_criteria
from atomate2_gmt.routing import job_role, route_new_jobs
from atomate2_gmt.schemas.fields import PREDICTION_KEY, resolve_sort_field

if TYPE_CHECKING:
    from collections.abc import Sequence

    from maggma.core import Store

logger = logging.getLogger(__name__)

__all__ = ["SelectionPolicy", "carry_marks", "select_candidates", "select_for_dfpt"]


@dataclass
class SelectionPolicy(MSONable):
    """Which candidates go to DFPT (MSONable: it travels as a jobflow job input).

    Args:
        prop: ``dielectric``, ``dielectric_total``, ``piezo`` or ``elastic``.
        sort: its derived field to rank on (default: the property's, e.g. ``e_ij_max``).
        top_k: how many to pick.
        min_value, max_value: keep candidates whose ``sort`` value lies in [min, max].
        crystal_system, exclude_elements, include_elements, non_centrosymmetric, stable_only,
            max_e_above_hull, model_version: as in :func:`atomate2_gmt.query.query_candidates`.
        max_per_chemsys: at most this many picks per chemical system (diversity).
        max_sites: skip cells with more sites (DFPT cost grows ~ N³).
        strategy: ``exploit`` (largest predicted value first) or ``ucb`` (value + kappa·std,
            needs the ensemble spread ``uncertainty.<sort>`` on the documents:
            ``GMTPredictMaker(ensemble=...)``).
        kappa: exploration weight of ``ucb``.
        pool: how many top documents are read before filtering (≥ top_k).
    """

    prop: str = "piezo"
    sort: str | None = None
    top_k: int = 5
    min_value: float | None = None
    max_value: float | None = None
    crystal_system: str | None = None
    exclude_elements: list[str] = field(default_factory=list)
    include_elements: list[str] = field(default_factory=list)
    non_centrosymmetric: bool | None = None
    stable_only: bool = False
    max_e_above_hull: float | None = None
    model_version: str | None = None
    max_per_chemsys: int = 1
    max_sites: int | None = 40
    strategy: Literal["exploit", "ucb"] = "exploit"
    kappa: float = 1.0
    pool: int = 500

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.max_per_chemsys < 1:
            raise ValueError(f"max_per_chemsys must be >= 1, got {self.max_per_chemsys}")
        if self.strategy not in ("exploit", "ucb"):
            raise ValueError(f"unknown strategy {self.strategy!r}; valid: 'exploit', 'ucb'")
        if self.pool < self.top_k:
            raise ValueError(f"pool ({self.pool}) must be >= top_k ({self.top_k})")
        resolve_sort_field(self.prop, self.sort)  # unknown property / sort field: error now

    def criteria(self) -> dict[str, Any]:
        """The store filter of this policy (not yet computed, not in flight, in range)."""
        sort_field = resolve_sort_field(self.prop, self.sort)
        criteria = build_criteria(
            self.prop,
            sort_field=sort_field,
            crystal_system=self.crystal_system,
            exclude_elements=self.exclude_elements,
            include_elements=self.include_elements,
            non_centrosymmetric=self.non_centrosymmetric,
            stable_only=self.stable_only,
            max_e_above_hull=self.max_e_above_hull,
            model_version=self.model_version,
        )
        bounds: dict[str, Any] = {"$ne": None}
        if self.min_value is not None:
            bounds["$gte"] = float(self.min_value)
        if self.max_value is not None:
            bounds["$lte"] = float(self.max_value)
        criteria[sort_field] = bounds
        criteria["dfpt"] = {"$exists": False}
        criteria["dfpt_selected"] = {"$exists": False}
        if self.max_sites is not None:
            criteria["nsites"] = {"$lte": int(self.max_sites)}
        return criteria


def _score(doc: dict[str, Any], sort_field: str, policy: SelectionPolicy) -> float:
    value = float(doc[sort_field])
    if policy.strategy == "exploit":
        return value
    spread = (doc.get("uncertainty") or {}).get(sort_field)
    if spread is None:
        raise ValueError(
            f"strategy 'ucb' needs the ensemble spread uncertainty.{sort_field} on the "
            f"candidate documents (GMTPredictMaker(ensemble=...)); {doc.get(PREDICTION_KEY)} "
            "has none"
        )
    return value + policy.kappa * float(spread)


def select_candidates(store: Store, policy: SelectionPolicy) -> list[dict[str, Any]]:
    """The candidate documents the policy picks, best first (the store is connected here).

    Reads the ``pool`` best documents by the sort field, scores them, then keeps at most
    ``max_per_chemsys`` per chemical system until ``top_k`` are picked.
    """
    sort_field = resolve_sort_field(policy.prop, policy.sort)
    store.connect()
    docs = list(
        store.query(
            criteria=policy.criteria(),
            sort={sort_field: -1, PREDICTION_KEY: -1},
            limit=policy.pool,
        )
    )
    docs.sort(key=lambda d: (-_score(d, sort_field, policy), d[PREDICTION_KEY]))
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


def _mark_selected(store: Store, docs: list[dict[str, Any]], mark: dict[str, Any]) -> None:
    rows = [{**{k: v for k, v in d.items() if k != "_id"}, "dfpt_selected": mark} for d in docs]
    if rows:
        store.update(rows, key=PREDICTION_KEY)


def carry_marks(store: Store, done_keys: Sequence[str] = ()) -> int:
    """Mark ``dfpt_selected`` on every document whose structure was computed or selected under
    another document (earlier model version), or is in ``done_keys`` (the structures picked in
    earlier rounds: a re-screen under the same model-version label replaces the documents and
    their marks); returns how many were marked. Connects ``store``."""
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
        row["dfpt_selected"] = {
            "at": datetime.now(UTC).isoformat(),
            "carried_from": done[d["structure_key"]],
        }
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
    from atomate2_gmt.stores import candidate_store

    if isinstance(policy, dict):
        policy = SelectionPolicy(**policy)
    version = (screen or {}).get("model_version")
    if policy.model_version is None and version:
        policy = replace(policy, model_version=version)
    store = store if store is not None else candidate_store()
    carried = carry_marks(store, done_keys) if done_keys is not None else 0
    picks = select_candidates(store, policy)
    sort_field = resolve_sort_field(policy.prop, policy.sort)
    code = _backend_code(dfpt_maker)
    _mark_selected(
        store,
        picks,
        {"at": datetime.now(UTC).isoformat(), "code": code, "policy": asdict(policy)},
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
        "policy": asdict(policy),
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
