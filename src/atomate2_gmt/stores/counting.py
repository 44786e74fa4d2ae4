"""Counting the matches of a query at any store size: exact where the store finishes the count
within a time budget, otherwise estimated from a random sample and marked as such.

An exact count of a filter that no index answers alone reads every matching document (an
embedded store at 10⁶ documents: seconds), so a page of results never waits for one:
:func:`count_matches` asks the store for the exact number within ``budget_s`` (SQLite: a
progress handler on a separate connection interrupts the count; MongoDB: ``maxTimeMS``) and,
past it, estimates the number from ``sample`` documents drawn at random (SQLite: random row ids;
MongoDB: ``$sample``) times the number of documents (MongoDB: its collection metadata). An
estimate is a :class:`MatchCount` with ``estimated=True`` and reads "about 2.5e5".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from atomate2_gmt.stores.embedded import EmbeddedStore

if TYPE_CHECKING:
    from maggma.core import Store

__all__ = [
    "COUNT_BUDGET_S",
    "COUNT_SAMPLE",
    "MatchCount",
    "count_matches",
    "count_matches_each",
    "mongo_estimate",
]

COUNT_BUDGET_S = 0.06
"""Seconds an exact count may take before the number is estimated instead."""

COUNT_SAMPLE = 400
"""Documents drawn for an estimate (relative error ≈ sqrt((1 − f)/(f · 400)) at match fraction f:
5 % at f = 0.5)."""


@dataclass(frozen=True)
class MatchCount:
    """A number of matching documents: exact, or ``estimated`` from ``hits`` of ``sampled``
    random documents (``n`` = hits / sampled × the number of documents)."""

    n: int
    estimated: bool = False
    sampled: int = 0
    hits: int = 0

    def label(self) -> str:
        """``"1234"`` when exact; ``"about 2.5e5"`` when estimated (``"about 480"`` below 1000);
        ``"fewer than about 2.5e3"`` when the sample held no match (the number of documents
        over the sample size)."""
        if not self.estimated:
            return str(self.n)
        if self.hits == 0:
            bound = self.n if self.n else 0
            return f"fewer than about {_round(bound)}" if bound else "about 0"
        return f"about {_round(self.n)}"

    def as_dict(self) -> dict[str, Any]:
        """JSON form: ``{"n", "estimated", "label"}``."""
        return {"n": self.n, "estimated": self.estimated, "label": self.label()}


def _round(n: int) -> str:
    if n < 1000:
        return str(n)
    exponent = math.floor(math.log10(n))
    return f"{n / 10**exponent:.1f}e{exponent}"


def _mongo_collection(store: Store) -> Any:
    """The pymongo collection of a connected maggma Mongo store, else None."""
    coll = getattr(store, "_coll", None)
    if coll is None or not hasattr(coll, "count_documents"):
        return None
    return coll


def count_matches(
    store: Store,
    criteria: dict[str, Any],
    budget_s: float | None = None,
    sample: int | None = None,
) -> MatchCount:
    """The number of documents of ``store`` matching ``criteria`` (a connected store): exact
    within ``budget_s`` seconds (default :data:`COUNT_BUDGET_S`), else estimated from ``sample``
    random documents (default :data:`COUNT_SAMPLE`). Stores other than the embedded and
    MongoDB ones are counted exactly (``store.count``)."""
    budget_s = COUNT_BUDGET_S if budget_s is None else budget_s
    sample = COUNT_SAMPLE if sample is None else sample
    if isinstance(store, EmbeddedStore):
        exact = store.count_within(criteria, budget_s)
        if exact is not None:
            return MatchCount(exact)
        n, sampled, hits = store.estimate_count(criteria, sample)
        if hits == 0:  # no match in the sample: the bound the sample gives
            n = store.estimate_count({}, sample)[0] // max(sampled, 1)
        return MatchCount(n, estimated=True, sampled=sampled, hits=hits)
    coll = _mongo_collection(store)
    if coll is None:
        return MatchCount(int(store.count(criteria)))
    from pymongo.errors import ExecutionTimeout

    try:
        return MatchCount(
            int(coll.count_documents(criteria, maxTimeMS=max(1, int(budget_s * 1000))))
        )
    except ExecutionTimeout:
        return mongo_estimate(coll, criteria, sample)


def count_matches_each(
    store: Store,
    criteria: list[dict[str, Any]],
    budget_s: float | None = None,
    sample: int | None = None,
) -> list[MatchCount]:
    """:func:`count_matches` of each filter of ``criteria`` (a query's left-out counts) within
    one time budget for them all: each exact count gets an equal share of what is left of
    ``budget_s`` (a slow count does not starve a quick one), and the filters not counted in
    time are estimated together, from one draw of ``sample`` documents on the embedded store
    (its rows read once: three counts past the budget cost one budget and one sample read,
    not three of each); on MongoDB each is estimated from its own ``$sample``. With a shared
    budget, more of several counts are estimates than each would be alone."""
    budget_s = COUNT_BUDGET_S if budget_s is None else budget_s
    sample = COUNT_SAMPLE if sample is None else sample
    if not isinstance(store, EmbeddedStore):
        deadline = time.monotonic() + budget_s
        return [
            count_matches(
                store, crit, max((deadline - time.monotonic()) / (len(criteria) - k), 0.001), sample
            )
            for k, crit in enumerate(criteria)
        ]
    deadline = time.monotonic() + budget_s
    counts: list[MatchCount | None] = []
    for k, crit in enumerate(criteria):
        share = (deadline - time.monotonic()) / (len(criteria) - k)
        exact = store.count_within(crit, share) if share > 0 else None
        counts.append(None if exact is None else MatchCount(exact))
    missing = [i for i, c in enumerate(counts) if c is None]
    if missing:
        estimates = store.estimate_counts([{}, *(criteria[i] for i in missing)], sample)
        documents = estimates[0][0]
        for i, (n, sampled, hits) in zip(missing, estimates[1:], strict=True):
            if hits == 0:  # no match in the sample: the bound the sample gives
                n = documents // max(sampled, 1)
            counts[i] = MatchCount(n, estimated=True, sampled=sampled, hits=hits)
    return [c for c in counts if c is not None]


def mongo_estimate(coll: Any, criteria: dict[str, Any], sample: int) -> MatchCount:
    """The matches of ``criteria`` in a pymongo collection estimated from ``$sample`` documents
    and the collection's document count from its metadata (``estimated_document_count``)."""
    total = int(coll.estimated_document_count())
    size = min(sample, total)
    if size == 0:
        return MatchCount(0, estimated=True)
    result = list(
        coll.aggregate([{"$sample": {"size": size}}, {"$match": criteria}, {"$count": "n"}])
    )
    hits = int(result[0]["n"]) if result else 0
    n = round(total * hits / size) if hits else total // size
    return MatchCount(n, estimated=True, sampled=size, hits=hits)
