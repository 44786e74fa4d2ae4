"""Queries of the prediction store, used by the CLI and by candidate selection.

:func:`query_candidates` returns the best candidates for one property, sorted on one of its
derived scalars (see :mod:`atomate2_gmt.schemas.fields`), as flat rows. "Stable" means Born
(mechanically) stable, from the predicted elastic tensor: thermodynamic stability (energy above
the hull) is not predicted; documents that carry an ``energy_above_hull`` from their candidate
source can be filtered on it with ``max_e_above_hull``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from atomate2_gmt.data.criteria import ALLOWED_OPERATORS, check_criteria
from atomate2_gmt.schemas.fields import (
    DERIVED_FIELDS,
    PREDICTION_KEY,
    PREDICTION_SCHEMA_VERSION,
    SUMMARY_FIELDS,
    TASKS,
    resolve_sort_field,
)
from atomate2_gmt.tensors.symmetry import CRYSTAL_SYSTEMS
from atomate2_gmt.tensors.tasks import TASK_SPECS

if TYPE_CHECKING:
    from collections.abc import Iterable

    from maggma.core import Store

__all__ = [
    "ALLOWED_OPERATORS",
    "CRYSTAL_SYSTEMS",
    "MAX_TOP",
    "build_criteria",
    "check_criteria",
    "find_document",
    "query_candidates",
]

_STATES = ("successful", "failed")

METAL_EXCLUDED: tuple[str, ...] = tuple(t for t, s in TASK_SPECS.items() if s.excludes_metals)
"""Properties whose queries leave out likely metals unless asked (a metal has no ε or e)."""

#: Largest ``top`` (a bound that every store's integer type holds).
MAX_TOP = 1_000_000_000


def _plain(name: str, value: Any, kinds: tuple[type, ...], what: str) -> None:
    """``value`` is None or a plain value of ``kinds`` (bools only where ``kinds`` has bool):
    a dict (an operator such as ``{"$ne": None}``) or any other type is refused."""
    if value is None:
        return
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise ValueError(
            f"{name} must be {what}, got {type(value).__name__} {value!r}: filters take plain "
            "values, never query operators"
        )


def _elements(symbols: Iterable[str] | str, what: str) -> list[str]:
    from pymatgen.core import Element

    if isinstance(symbols, str):
        symbols = [s for s in symbols.replace(" ", ",").split(",") if s]
    out = []
    for s in symbols:
        s = str(s).strip()
        if not Element.is_valid_symbol(s):
            raise ValueError(f"unknown element symbol {s!r} in {what}")
        out.append(s)
    return out


def build_criteria(
    prop: str,
    sort_field: str | None = None,
    crystal_system: str | None = None,
    exclude_elements: Iterable[str] | str = (),
    include_elements: Iterable[str] | str = (),
    non_centrosymmetric: bool | None = None,
    stable_only: bool = False,
    state: str | None = "successful",
    max_e_above_hull: float | None = None,
    model_version: str | None = None,
    max_domain_distance: float | None = None,
    include_metals: bool | None = None,
) -> dict[str, Any]:
    """The MongoDB-style filter behind :func:`query_candidates` (validated; see there). Every
    argument is a plain value: a dict such as ``{"$ne": None}`` is refused, never passed on."""
    _plain("prop", prop, (str,), "a property name")
    _plain("sort_field", sort_field, (str,), "a field name")
    _plain("crystal_system", crystal_system, (str,), "a crystal system name")
    _plain("non_centrosymmetric", non_centrosymmetric, (bool,), "True, False or None")
    _plain("stable_only", stable_only, (bool,), "True or False")
    _plain("state", state, (str,), "'successful', 'failed' or None")
    _plain("max_e_above_hull", max_e_above_hull, (int, float), "a number (eV/atom)")
    _plain("model_version", model_version, (str,), "a model version label")
    _plain("max_domain_distance", max_domain_distance, (int, float), "a number")
    _plain("include_metals", include_metals, (bool,), "True, False or None")
    for name, value in (
        ("exclude_elements", exclude_elements),
        ("include_elements", include_elements),
    ):
        if not isinstance(value, str):
            for item in value:
                _plain(name, item, (str,), "element symbols")
    if prop not in TASKS:
        raise ValueError(f"unknown property {prop!r}; valid properties: {', '.join(TASKS)}")
    # documents of an older schema define some fields differently: never mixed in
    criteria: dict[str, Any] = {"schema_version": PREDICTION_SCHEMA_VERSION}
    if state is None:
        criteria[f"predictions.{prop}"] = {"$exists": True}
    elif state in _STATES:
        criteria[f"predictions.{prop}.state"] = state
    else:
        raise ValueError(f"state must be 'successful', 'failed' or None, got {state!r}")
    if sort_field is not None and state == "successful":
        criteria[sort_field] = {"$ne": None}
    if crystal_system is not None:
        cs = str(crystal_system).strip().lower()
        if cs not in CRYSTAL_SYSTEMS:
            raise ValueError(
                f"unknown crystal system {crystal_system!r}; valid: {', '.join(CRYSTAL_SYSTEMS)}"
            )
        criteria["symmetry.crystal_system"] = cs.capitalize()
    excluded = _elements(exclude_elements, "exclude_elements")
    included = _elements(include_elements, "include_elements")
    overlap = sorted(set(excluded) & set(included))
    if overlap:
        raise ValueError(f"elements {overlap} are both included and excluded")
    if excluded:
        criteria["elements"] = {"$nin": excluded}
    if included:
        criteria.setdefault("elements", {})["$all"] = included
    if non_centrosymmetric is not None:
        criteria["is_centrosymmetric"] = not non_centrosymmetric
    if stable_only:
        criteria["born_stable"] = True
    if max_e_above_hull is not None:
        if not max_e_above_hull >= 0:
            raise ValueError(f"max_e_above_hull must be >= 0 eV/atom, got {max_e_above_hull}")
        criteria["energy_above_hull"] = {"$lte": float(max_e_above_hull)}
    if model_version is not None:
        criteria["model_version"] = model_version
    if include_metals is None:  # default: metals only where their prediction means something
        include_metals = prop not in METAL_EXCLUDED
    if not include_metals:  # None (rule not applicable) is kept
        criteria["likely_metal"] = {"$ne": True}
    if max_domain_distance is not None:
        if not max_domain_distance > 0:
            raise ValueError(f"max_domain_distance must be > 0, got {max_domain_distance}")
        criteria[f"domain_distance.{prop}"] = {"$lte": float(max_domain_distance)}
    return criteria


def candidate_row(doc: dict[str, Any], prop: str, rank: int) -> dict[str, Any]:
    """The flat row of a candidate document for property ``prop`` (the rows of
    :func:`query_candidates` without tensors; the web app's table adds its own columns)."""
    sym = doc.get("symmetry") or {}
    row: dict[str, Any] = {
        "rank": rank,
        "formula": doc.get("formula_pretty"),
        "space_group": sym.get("symbol"),
        "space_group_number": sym.get("number"),
        "crystal_system": sym.get("crystal_system"),
        "point_group": sym.get("point_group"),
        "is_centrosymmetric": doc.get("is_centrosymmetric"),
    }
    for f in DERIVED_FIELDS[prop]:
        row[f] = doc.get(f)
    pred = (doc.get("predictions") or {}).get(prop) or {}
    row.update(
        {
            "state": pred.get("state"),
            "error": pred.get("error"),
            "energy_above_hull": doc.get("energy_above_hull"),
            "band_gap": doc.get("band_gap"),
            "material_id": doc.get("material_id"),
            "likely_metal": doc.get("likely_metal"),
            "domain_distance": (doc.get("domain_distance") or {}).get(prop),
            "source": doc.get("source"),
            "nsites": doc.get("nsites"),
            "structure_key": doc.get("structure_key"),
            "model_version": doc.get("model_version"),
            PREDICTION_KEY: doc.get(PREDICTION_KEY),
        }
    )
    return row


def _row(doc: dict[str, Any], prop: str, rank: int, include_tensors: bool) -> dict[str, Any]:
    row = candidate_row(doc, prop, rank)
    if include_tensors:
        pred = (doc.get("predictions") or {}).get(prop) or {}
        row["units"] = pred.get("units")
        row["voigt"] = pred.get("voigt")
        row["voigt_ieee"] = pred.get("voigt_ieee")
        row["tensor"] = pred.get("tensor")
    return row


def several_versions(store: Store, criteria: dict[str, Any]) -> bool:
    """Whether the matches come from more than one model version (two index look-ups when the
    whole store has a single version)."""
    ends = [
        next(store.query({}, properties=["model_version"], sort={"model_version": d}, limit=1), {})
        for d in (1, -1)
    ]
    if ends[0].get("model_version") == ends[1].get("model_version"):
        return False
    return len(store.distinct("model_version", criteria)) > 1


def query_candidates(
    store: Store,
    prop: str,
    sort: str | None = None,
    top: int = 20,
    crystal_system: str | None = None,
    exclude_elements: Iterable[str] | str = (),
    include_elements: Iterable[str] | str = (),
    non_centrosymmetric: bool | None = None,
    stable_only: bool = False,
    state: str | None = "successful",
    ascending: bool = False,
    max_e_above_hull: float | None = None,
    model_version: str | None = None,
    max_domain_distance: float | None = None,
    include_metals: bool | None = None,
    latest_only: bool = True,
    include_tensors: bool = False,
) -> list[dict[str, Any]]:
    """The ``top`` candidates for property ``prop``, best first, as flat dict rows.

    Args:
        store: prediction store (connected here if needed).
        prop: ``dielectric``, ``dielectric_total``, ``piezo`` or ``elastic``.
        sort: a derived field of ``prop`` (e.g. ``e_ij_max``, ``K_VRH``, ``dielectric_eig_max``
            or its alias ``eig_max``); None → the property's default.
        top: number of rows (> 0).
        crystal_system: keep one crystal system (case-insensitive, e.g. ``"hexagonal"``).
        exclude_elements / include_elements: element symbols (list or "Pb,Cd"); a hit contains
            none of the excluded and all of the included elements.
        non_centrosymmetric: True → only non-centrosymmetric crystals, False → only
            centrosymmetric, None → both.
        stable_only: only Born-stable crystals (needs the elastic prediction).
        state: the property's prediction state ("successful", "failed", or None for both).
            Failed predictions have no derived scalars and are listed by source.
        ascending: smallest first instead of largest first.
        max_e_above_hull: keep documents whose source gave ``energy_above_hull`` ≤ this (eV/atom).
        model_version: only predictions of this model version.
        max_domain_distance: keep crystals whose ``domain_distance`` for ``prop`` is at most
            this (:mod:`atomate2_gmt.data.domain`; ``IN_DOMAIN_MAX`` = 1.0 is "in domain").
        include_metals: keep crystals flagged ``likely_metal``
            (:mod:`atomate2_gmt.schemas.metallicity`); None → kept for ``elastic``, left out for
            the dielectric and piezo properties (:data:`METAL_EXCLUDED`), which a metal does not
            have.
        latest_only: with several model versions of one structure, keep its latest prediction.
        include_tensors: add the property's ``tensor``/``voigt``/``voigt_ieee`` to each row.

    Rows have ``rank``, ``formula``, space group, crystal and point group, the property's
    derived scalars, ``source``, ``structure_key``, ``model_version`` and ``prediction_id``
    (:func:`candidate_row`). Over 80 lines only through this docstring: the body is about 50.
    """
    if not isinstance(top, int) or isinstance(top, bool) or not 0 < top <= MAX_TOP:
        raise ValueError(f"top must be an integer from 1 to {MAX_TOP}, got {top!r}")
    _plain("sort", sort, (str,), "a sort field name")
    for name, flag in (
        ("ascending", ascending),
        ("latest_only", latest_only),
        ("include_tensors", include_tensors),
    ):
        _plain(name, flag, (bool,), "True or False")
    sort_field = resolve_sort_field(prop, sort)
    criteria = build_criteria(
        prop,
        sort_field=sort_field,
        crystal_system=crystal_system,
        exclude_elements=exclude_elements,
        include_elements=include_elements,
        non_centrosymmetric=non_centrosymmetric,
        stable_only=stable_only,
        state=state,
        max_e_above_hull=max_e_above_hull,
        model_version=model_version,
        max_domain_distance=max_domain_distance,
        include_metals=include_metals,
    )
    direction = 1 if ascending else -1
    order: dict[str, Any] = {sort_field if state == "successful" else "source": direction}
    order[PREDICTION_KEY] = direction  # deterministic ties, one direction: index-friendly
    properties = [
        *SUMMARY_FIELDS,
        *DERIVED_FIELDS[prop],
        "last_updated",
        "likely_metal",
        f"domain_distance.{prop}",
        f"predictions.{prop}.state",
        f"predictions.{prop}.error",
        f"predictions.{prop}.units",
    ]
    if include_tensors:
        properties += [f"predictions.{prop}.{f}" for f in ("tensor", "voigt", "voigt_ieee")]

    store.connect()
    if latest_only and model_version is None and several_versions(store, criteria):
        latest: dict[str, tuple[Any, str]] = {}
        for doc in store.query(
            criteria=criteria, properties=[PREDICTION_KEY, "structure_key", "last_updated"]
        ):
            key = doc.get("structure_key") or doc[PREDICTION_KEY]
            stamp = str(doc.get("last_updated") or "")
            if key not in latest or stamp > latest[key][0]:
                latest[key] = (stamp, doc[PREDICTION_KEY])
        criteria = {**criteria, PREDICTION_KEY: {"$in": [v[1] for v in latest.values()]}}
    docs = store.query(criteria=criteria, properties=properties, sort=order, limit=top)
    return [_row(doc, prop, i + 1, include_tensors) for i, doc in enumerate(docs)]


def find_document(store: Store, key: str) -> dict[str, Any]:
    """One prediction document by ``prediction_id``, ``structure_key`` or any of its input names
    (``source``, ``sources``; the latest when several match). ``KeyError`` naming ``key`` if
    nothing matches."""
    if not isinstance(key, str) or not key.strip():
        raise ValueError("key must be a non-empty string")
    store.connect()
    for field in (PREDICTION_KEY, "structure_key", "source", "sources"):
        docs = list(store.query({field: key}))
        if docs:
            docs.sort(key=lambda d: str(d.get("last_updated") or ""))
            return docs[-1]
    raise KeyError(
        f"no prediction document with prediction_id, structure_key or input name {key!r}"
    )
