"""What the web app reads from the stores, as plain (JSON-safe) Python: used by the REST API
(:mod:`atomate2_gmt.web.api`) and the pages (:mod:`atomate2_gmt.web.pages`) alike.

Read-only: nothing here writes a document. Request values reach the stores only through
allow-lists (property, sort field, crystal system, DFPT state, task, part, code) or as plain
equality values (element symbols checked by pymatgen, model version, source, keys); every
MongoDB operator in a criteria dict is written here or in
:meth:`atomate2_gmt.query.CandidateQuery.criteria`.
Store descriptions shown to users go through :func:`atomate2_gmt.stores.describe_store`, which
masks passwords. The DFPT, training and model-registry readers are in
:mod:`atomate2_gmt.web.records`, the tensor pictures in :mod:`atomate2_gmt.web.figures`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atomate2_gmt.query import (
    CandidateQuery,
    candidate_row,
    find_document,
    ranked_documents,
)
from atomate2_gmt.schemas.fields import DERIVED_FIELDS, PREDICTION_KEY, SORT_FIELDS, TASKS
from atomate2_gmt.settings import GMTSettings, mask_secrets, resolve_settings
from atomate2_gmt.web.common import UNITS, NotFoundError

if TYPE_CHECKING:
    from maggma.core import Store

    from atomate2_gmt.stores import MatchCount
    from atomate2_gmt.web.records import DFPTComparisons

__all__ = [
    "MatchCounts",
    "WebStores",
    "candidate_page",
    "candidate_view",
    "get_candidate",
    "sort_choices",
    "structure_view",
]


@dataclass
class WebStores:
    """The stores the app reads: candidates (predictions), training documents, model registry.

    Built from :class:`~atomate2_gmt.settings.GMTSettings` (embedded SQLite in ``PROJECT_DIR``
    by default, MongoDB with ``MONGO_URI``). ``description`` names each store with any password
    masked.
    """

    candidates: Store
    training: Store
    registry: Store
    cache_dir: Path
    comparisons: DFPTComparisons = field(default_factory=lambda: _comparisons())
    counts: MatchCounts = field(default_factory=lambda: MatchCounts())

    @classmethod
    def from_settings(cls, settings: GMTSettings | None = None) -> WebStores:
        """The configured stores (not connected); pictures are cached in
        ``PROJECT_DIR/web_cache``."""
        from atomate2_gmt.stores import candidate_store, registry_store, training_store

        settings = settings or resolve_settings()
        return cls(
            candidates=candidate_store(settings),
            training=training_store(settings),
            registry=registry_store(settings),
            cache_dir=Path(settings.PROJECT_DIR).expanduser() / "web_cache",
        )

    def description(self) -> dict[str, str]:
        """Store → one-line description, passwords masked."""
        from atomate2_gmt.stores import describe_store

        return {
            "candidates": describe_store(self.candidates),
            "training": describe_store(self.training),
            "registry": describe_store(self.registry),
        }


def _comparisons() -> DFPTComparisons:
    from atomate2_gmt.web.records import DFPTComparisons

    return DFPTComparisons()


# --------------------------------------------------------------------------------------------
# the candidate table
# --------------------------------------------------------------------------------------------


class MatchCounts:
    """Numbers of matches per query (:func:`~atomate2_gmt.stores.count_matches`: exact within a
    time budget, else estimated from a random sample and marked), kept while an embedded store
    is unchanged.

    SQLite's ``PRAGMA data_version`` on the app's own (read-only) connection changes whenever
    another connection commits, so a kept count is used only while nothing was written. Other
    stores (MongoDB: ``maxTimeMS``-bounded counts, else ``$sample`` estimates) are counted every
    time.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str], tuple[int, MatchCount]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _data_version(store: Store) -> int | None:
        from atomate2_gmt.stores import EmbeddedStore

        if not isinstance(store, EmbeddedStore):
            return None
        return int(store._collection.execute("PRAGMA data_version").fetchone()[0])

    def _key(self, store: Store, criteria: dict[str, Any]) -> tuple[int, str]:
        import orjson

        return (id(store), orjson.dumps(criteria, option=orjson.OPT_SORT_KEYS).decode())

    def _kept(self, key: tuple[int, str], version: int) -> MatchCount | None:
        with self._lock:
            hit = self._counts.get(key)
        return hit[1] if hit is not None and hit[0] == version else None

    def _keep(self, key: tuple[int, str], version: int, n: MatchCount) -> None:
        with self._lock:
            if len(self._counts) > 4096:
                self._counts.clear()
            self._counts[key] = (version, n)

    def count(self, store: Store, criteria: dict[str, Any]) -> MatchCount:
        """One count of :meth:`count_each` (exact within the budget, else estimated), from
        memory while the store is unchanged."""
        return self.count_each(store, [criteria])[0]

    def count_each(self, store: Store, criteria: list[dict[str, Any]]) -> list[MatchCount]:
        """:func:`~atomate2_gmt.stores.counting.count_matches_each` (one budget, one sample for
        the counts not kept), each count from memory while the store is unchanged."""
        from atomate2_gmt.stores.counting import count_matches_each

        version = self._data_version(store)
        if version is None:
            return count_matches_each(store, criteria)
        keys = [self._key(store, c) for c in criteria]
        counts = [self._kept(k, version) for k in keys]
        todo = [i for i, n in enumerate(counts) if n is None]
        for i, n in zip(todo, count_matches_each(store, [criteria[i] for i in todo]), strict=True):
            self._keep(keys[i], version, n)
            counts[i] = n
        return [n for n in counts if n is not None]


def candidate_page(
    store: Store,
    query: CandidateQuery,
    skip: int = 0,
    limit: int = 20,
    counts: MatchCounts | None = None,
    after: tuple[Any, str] | None = None,
) -> tuple[list[dict[str, Any]], MatchCount]:
    """(rows ``skip`` … ``skip + limit`` of the ranked table, number of matches: exact, or
    estimated and marked so when the store cannot count them within its time budget).

    Rows are :func:`atomate2_gmt.query.candidate_row`: rank, prediction_id, structure_key,
    formula, material_id, space group (symbol, number), crystal system, point group,
    centrosymmetry, the property's derived fields (units in
    :data:`atomate2_gmt.query.FIELD_UNITS`) with their ensemble σ (``uncertainty``;
    ``uncertainty_note`` when a single model predicted), a
    preset's figure of merit, the source's band_gap and energy_above_hull, state, error,
    source, nsites, model_version, likely_metal (+ reason), domain_distance and
    out_of_domain, dfpt_state. ``after``: the (sort value, prediction_id) of row ``skip``
    (the previous page's last row), so that a deep page walks no more of the index than
    page 1 (:func:`atomate2_gmt.query.ranked_documents`).
    """
    docs, total = ranked_documents(
        store, query, skip, limit, count=counts.count if counts is not None else None, after=after
    )
    rows = [
        candidate_row(d, query.task, skip + i + 1, query.preset_rule) for i, d in enumerate(docs)
    ]
    sort_field = query.sort_field()
    for row, doc in zip(rows, docs, strict=True):
        row["sort_value"] = doc.get(sort_field)  # with the prediction_id: the page's cursor
    assert total is not None  # counted (or the last page)
    return mask_secrets(rows), total


# --------------------------------------------------------------------------------------------
# one candidate
# --------------------------------------------------------------------------------------------


def get_candidate(store: Store, key: str) -> dict[str, Any]:
    """The prediction document of ``key`` (prediction_id, structure_key or source), JSON-safe
    apart from datetimes; :class:`NotFoundError` if none."""
    try:
        doc = find_document(store, key)
    except KeyError as exc:
        raise NotFoundError(exc.args[0]) from None
    doc = {k: v for k, v in doc.items() if k != "_id"}
    return mask_secrets(doc)  # type: ignore[no-any-return]


def _structure(doc: dict[str, Any]) -> Any:
    from pymatgen.core import Structure

    if not doc.get("structure"):
        raise NotFoundError(f"the document {doc.get(PREDICTION_KEY)!r} stores no structure")
    return Structure.from_dict(doc["structure"])


def structure_view(doc: dict[str, Any]) -> dict[str, Any]:
    """The structure for the 3-D viewer: lattice (Å, rows a, b, c), parameters, the sites of
    the cell plus their periodic images on the cell faces (Cartesian Å, the document's frame),
    and CIF text."""
    import numpy as np
    from pymatgen.io.cif import CifWriter

    s = _structure(doc)
    sites = []
    for site in s:
        frac = np.mod(site.frac_coords, 1.0)
        frac[np.isclose(frac, 1.0, atol=1e-6)] = 0.0
        shifts = [[0.0], [0.0], [0.0]]
        for axis in range(3):
            if abs(frac[axis]) < 1e-6:
                shifts[axis].append(1.0)
        for dx in shifts[0]:
            for dy in shifts[1]:
                for dz in shifts[2]:
                    f = frac + np.array([dx, dy, dz])
                    sites.append(
                        {
                            "species": site.specie.symbol,
                            "xyz": [round(float(x), 6) for x in s.lattice.get_cartesian_coords(f)],
                            "image": bool(dx or dy or dz),
                        }
                    )
    lat = s.lattice
    return {
        PREDICTION_KEY: doc.get(PREDICTION_KEY),
        "formula": s.composition.reduced_formula,
        "nsites": len(s),
        "lattice": lat.matrix.round(6).tolist(),
        "abc": [round(float(x), 4) for x in lat.abc],
        "angles": [round(float(x), 3) for x in lat.angles],
        "volume": round(float(lat.volume), 4),
        "sites": sites,
        "cif": str(CifWriter(s)),
    }


def candidate_view(store: Store, key: str) -> dict[str, Any]:
    """Everything the candidate page shows: the document's summary, symmetry, per-task tensors
    (Voigt in the structure's frame and the IEEE 176 frame, units, derived values, model),
    provenance, the DFPT comparison and the DFPT parts not compared (with the reason)."""
    from atomate2_gmt.report import document_comparison, missing_parts

    doc = get_candidate(store, key)
    tasks = []
    for task in TASKS:
        pred = (doc.get("predictions") or {}).get(task)
        if pred is None:
            continue
        tasks.append(
            {
                "task": task,
                "state": pred.get("state"),
                "error": pred.get("error"),
                "units": UNITS[task],
                "voigt": pred.get("voigt"),
                "voigt_ieee": pred.get("voigt_ieee"),
                "ieee_error": pred.get("ieee_error"),
                "derived": {f: doc.get(f) for f in DERIVED_FIELDS[task]},
                "uncertainty": {
                    f: v
                    for f, v in (doc.get("uncertainty") or {}).items()
                    if f in DERIVED_FIELDS[task]
                },
                "model": pred.get("model") or {},
                "time_s": pred.get("time_s"),
            }
        )
    dfpt = doc.get("dfpt")
    comparison = document_comparison(doc) if dfpt else []
    return {
        "document": doc,
        "tasks": tasks,
        "dfpt": dfpt,
        "comparison": comparison,
        "missing": missing_parts(doc) if dfpt else [],
    }


def sort_choices(prop: str) -> tuple[str, ...]:
    """The derived fields a table of ``prop`` can be sorted on."""
    if prop not in SORT_FIELDS:
        raise ValueError(f"unknown property {prop!r}; valid properties: {', '.join(TASKS)}")
    return SORT_FIELDS[prop]
