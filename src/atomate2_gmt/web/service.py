"""What the web app reads from the stores, as plain (JSON-safe) Python: used by the REST API
(:mod:`atomate2_gmt.web.api`) and the pages (:mod:`atomate2_gmt.web.pages`) alike.

Read-only: nothing here writes a document. Request values reach the stores only through
allow-lists (property, sort field, crystal system, DFPT state, task, part, code) or as plain
equality values (element symbols checked by pymatgen, model version, source, keys); every
MongoDB operator in a criteria dict is written here or in :func:`atomate2_gmt.query.build_criteria`.
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
    CRYSTAL_SYSTEMS,
    build_criteria,
    candidate_row,
    find_document,
    several_versions,
)
from atomate2_gmt.schemas.fields import (
    DERIVED_FIELDS,
    PREDICTION_KEY,
    SORT_FIELDS,
    SUMMARY_FIELDS,
    TASKS,
    resolve_sort_field,
)
from atomate2_gmt.settings import GMTSettings, mask_secrets
from atomate2_gmt.tensors.tasks import DFPT_PART_KIND, TASK_SPECS

if TYPE_CHECKING:
    from maggma.core import Store

    from atomate2_gmt.web.records import DFPTComparisons

__all__ = [
    "CODES",
    "CRYSTAL_SYSTEMS",
    "DFPT_FILTERS",
    "DFPT_PARTS",
    "FIELD_UNITS",
    "PREDICTION_STATES",
    "UNITS",
    "CandidateFilters",
    "MatchCounts",
    "NotFoundError",
    "WebStores",
    "candidate_page",
    "candidate_view",
    "get_candidate",
    "sort_choices",
    "structure_view",
]

DFPT_FILTERS: tuple[str, ...] = ("accepted", "rejected", "failed", "none", "any")
"""Values of the candidate table's DFPT filter: a DFPT outcome, ``none`` (no DFPT result yet)
or ``any`` (some DFPT result)."""

PREDICTION_STATES: tuple[str, ...] = ("successful", "failed")
CODES: tuple[str, ...] = ("abinit", "vasp")
DFPT_PARTS: tuple[str, ...] = tuple(DFPT_PART_KIND)
UNITS = {t: spec.unit_label or "dimensionless" for t, spec in TASK_SPECS.items()}
FIELD_UNITS: dict[str, str] = {
    f.name: f.unit_label for spec in TASK_SPECS.values() for f in spec.derived
}


class NotFoundError(LookupError):
    """Nothing in the store has this key (the message names it)."""


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

        settings = settings or GMTSettings()
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


def _element_list(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.replace(" ", ",").split(",")
    return tuple(s.strip() for s in value if s and s.strip())


@dataclass(frozen=True)
class CandidateFilters:
    """The candidate-table query: the filters of ``atomate2-gmt query`` plus a DFPT filter.

    ``prop``: one of :data:`TASKS`; ``sort``: a derived field of it (or its alias; None → the
    property's default); ``crystal_system``: one of ``CRYSTAL_SYSTEMS``; elements: symbols;
    ``non_centrosymmetric``: True/False/None (both); ``born_stable``: only Born-stable crystals;
    ``state``: ``successful`` or ``failed``; ``max_e_above_hull``: eV/atom; ``dfpt``: one of
    :data:`DFPT_FILTERS` or None; ``include_metals``: keep crystals flagged ``likely_metal``
    (None: the query's default, left out of the dielectric and piezo tables);
    ``max_domain_distance``: keep crystals at most this far from the task's training data.
    :meth:`store_query` raises ``ValueError`` naming a bad value.
    """

    prop: str = "dielectric"
    sort: str | None = None
    ascending: bool = False
    crystal_system: str | None = None
    include_elements: tuple[str, ...] = ()
    exclude_elements: tuple[str, ...] = ()
    non_centrosymmetric: bool | None = None
    born_stable: bool = False
    state: str = "successful"
    max_e_above_hull: float | None = None
    model_version: str | None = None
    dfpt: str | None = None
    include_metals: bool | None = None
    max_domain_distance: float | None = None

    @classmethod
    def build(cls, **values: Any) -> CandidateFilters:
        """Filters from request values (element lists as "Pb,Cd" or lists; blanks → unset)."""
        clean = {
            k: (None if isinstance(v, str) and not v.strip() else v) for k, v in values.items()
        }
        for name in ("include_elements", "exclude_elements"):
            clean[name] = _element_list(clean.get(name))
        for name in ("crystal_system", "sort", "model_version", "dfpt"):
            if clean.get(name) is not None:
                clean[name] = str(clean[name]).strip()
        return cls(**{k: v for k, v in clean.items() if v is not None})

    def sort_field(self) -> str:
        """The document field the table is sorted on (``state=successful``) or ``source``."""
        if self.state == "successful":
            return resolve_sort_field(self.prop, self.sort)
        resolve_sort_field(self.prop, self.sort)  # still reject a bad sort key
        return "source"

    def store_query(self) -> dict[str, Any]:
        """``{"criteria", "sort", "properties"}`` for the store (maggma's STORE_PARAMS)."""
        if self.state not in PREDICTION_STATES:
            raise ValueError(
                f"state must be one of {', '.join(PREDICTION_STATES)}, got {self.state!r}"
            )
        if self.dfpt is not None and self.dfpt not in DFPT_FILTERS:
            raise ValueError(f"dfpt must be one of {', '.join(DFPT_FILTERS)}, got {self.dfpt!r}")
        sort_field = self.sort_field()
        criteria = build_criteria(
            self.prop,
            sort_field=sort_field if self.state == "successful" else None,
            crystal_system=self.crystal_system,
            exclude_elements=self.exclude_elements,
            include_elements=self.include_elements,
            non_centrosymmetric=self.non_centrosymmetric,
            stable_only=self.born_stable,
            state=self.state,
            max_e_above_hull=self.max_e_above_hull,
            model_version=self.model_version,
            max_domain_distance=self.max_domain_distance,
            include_metals=self.include_metals,
        )
        if self.dfpt == "none":
            criteria["dfpt"] = {"$exists": False}
        elif self.dfpt == "any":
            criteria["dfpt"] = {"$exists": True}
        elif self.dfpt is not None:
            criteria["dfpt.state"] = self.dfpt
        direction = 1 if self.ascending else -1
        properties = [
            *SUMMARY_FIELDS,
            *DERIVED_FIELDS[self.prop],
            "uncertainty",
            "likely_metal",
            "likely_metal_reason",
            f"domain_distance.{self.prop}",
            "dfpt.state",
            "last_updated",
            f"predictions.{self.prop}.state",
            f"predictions.{self.prop}.error",
        ]
        return {
            "criteria": criteria,
            "sort": {sort_field: direction, PREDICTION_KEY: direction},
            "properties": properties,
        }

    def as_params(self) -> dict[str, str]:
        """The filters as URL query parameters (what the table's links carry)."""
        out: dict[str, str] = {"property": self.prop}
        if self.sort:
            out["sort"] = self.sort
        if self.ascending:
            out["ascending"] = "true"
        if self.crystal_system:
            out["crystal_system"] = self.crystal_system
        if self.include_elements:
            out["include_elements"] = ",".join(self.include_elements)
        if self.exclude_elements:
            out["exclude_elements"] = ",".join(self.exclude_elements)
        if self.non_centrosymmetric is not None:
            out["non_centrosymmetric"] = str(self.non_centrosymmetric).lower()
        if self.born_stable:
            out["born_stable"] = "true"
        if self.state != "successful":
            out["state"] = self.state
        if self.max_e_above_hull is not None:
            out["max_e_above_hull"] = f"{self.max_e_above_hull:g}"
        if self.model_version:
            out["model_version"] = self.model_version
        if self.dfpt:
            out["dfpt"] = self.dfpt
        if self.include_metals is not None:
            out["include_metals"] = str(self.include_metals).lower()
        if self.max_domain_distance is not None:
            out["max_domain_distance"] = f"{self.max_domain_distance:g}"
        return out


def _latest_only(store: Store, criteria: dict[str, Any]) -> dict[str, Any]:
    """``criteria`` restricted to each structure's latest prediction when the matches come from
    several model versions (as :func:`atomate2_gmt.query.query_candidates` does)."""
    if "model_version" in criteria or not several_versions(store, criteria):
        return criteria
    latest: dict[str, tuple[str, str]] = {}
    for doc in store.query(criteria, properties=[PREDICTION_KEY, "structure_key", "last_updated"]):
        key = doc.get("structure_key") or doc[PREDICTION_KEY]
        stamp = str(doc.get("last_updated") or "")
        if key not in latest or stamp > latest[key][0]:
            latest[key] = (stamp, doc[PREDICTION_KEY])
    return {**criteria, PREDICTION_KEY: {"$in": [v[1] for v in latest.values()]}}


def _row(doc: dict[str, Any], prop: str, rank: int) -> dict[str, Any]:
    """:func:`atomate2_gmt.query.candidate_row` plus the table's uncertainty, metal reason and
    DFPT state."""
    row = candidate_row(doc, prop, rank)
    spread = doc.get("uncertainty") or {}
    row["uncertainty"] = {f: spread[f] for f in DERIVED_FIELDS[prop] if f in spread}
    row["likely_metal_reason"] = doc.get("likely_metal_reason")
    row["dfpt_state"] = (doc.get("dfpt") or {}).get("state")
    return row


class MatchCounts:
    """Numbers of matches per query, kept while an embedded store is unchanged.

    Counting matches scans every document of an embedded store (≈ 17 ms per 1000 documents),
    while a page walks one index. SQLite's ``PRAGMA data_version`` on the app's own (read-only)
    connection changes whenever another connection commits, so a kept count is used only while
    nothing was written. Other stores (MongoDB counts on its indexes) are counted every time.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str], tuple[int, int]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _data_version(store: Store) -> int | None:
        from atomate2_gmt.stores import EmbeddedStore

        if not isinstance(store, EmbeddedStore):
            return None
        return int(store._collection.execute("PRAGMA data_version").fetchone()[0])

    def count(self, store: Store, criteria: dict[str, Any]) -> int:
        """``store.count(criteria)``, from memory while the store is unchanged."""
        import orjson

        version = self._data_version(store)
        if version is None:
            return int(store.count(criteria))
        key = (id(store), orjson.dumps(criteria, option=orjson.OPT_SORT_KEYS).decode())
        with self._lock:
            hit = self._counts.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        n = int(store.count(criteria))
        with self._lock:
            if len(self._counts) > 4096:
                self._counts.clear()
            self._counts[key] = (version, n)
        return n


def candidate_page(
    store: Store,
    filters: CandidateFilters,
    skip: int = 0,
    limit: int = 20,
    counts: MatchCounts | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """(rows ``skip`` … ``skip + limit`` of the ranked table, number of matches).

    Rows: rank, prediction_id, structure_key, formula, space group (symbol, number), crystal
    system, point group, centrosymmetry, the property's derived fields (units in
    :data:`FIELD_UNITS`), ``uncertainty`` (ensemble standard deviation per field, where
    present), state, error, energy_above_hull, source, nsites, model_version, likely_metal (+
    reason), domain_distance (of the property's model), dfpt_state.
    """
    if skip < 0 or limit <= 0:
        raise ValueError(f"skip must be >= 0 and limit > 0, got skip={skip}, limit={limit}")
    query = filters.store_query()
    store.connect()
    criteria = _latest_only(store, query["criteria"])
    docs = list(
        store.query(
            criteria=criteria,
            properties=query["properties"],
            sort=query["sort"],
            skip=skip,
            limit=limit,
        )
    )
    if len(docs) < limit and (docs or skip == 0):  # the last page: no count needed
        total = skip + len(docs)
    elif counts is not None:
        total = counts.count(store, criteria)
    else:
        total = int(store.count(criteria))
    rows = [_row(d, filters.prop, skip + i + 1) for i, d in enumerate(docs)]
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


def __getattr__(name: str) -> Any:
    """The feedback-record readers and the tensor pictures, importable from here as well
    (:mod:`atomate2_gmt.web.records`, :mod:`atomate2_gmt.web.figures`)."""
    from atomate2_gmt.web import figures, records

    for module in (records, figures):
        if name in module.__all__:
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
