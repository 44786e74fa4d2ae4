"""Queries of the prediction store: one validated :class:`CandidateQuery` value, the named
study presets (:data:`PRESETS`) and the functions that run a query.

Every caller builds a :class:`CandidateQuery` from its own options (the ``query`` command, the
REST API, the web pages, :class:`~atomate2_gmt.jobs.select.SelectionPolicy`), and only
:meth:`CandidateQuery.criteria` writes the MongoDB-style filter: request values are plain,
validated values, never operators.

:func:`query_candidates` returns the best candidates for one property as flat rows. "Stable"
means Born (mechanically) stable, from the predicted elastic tensor: thermodynamic stability
(energy above the hull) is not predicted; documents that carry an ``energy_above_hull`` or a
``band_gap`` from their candidate source can be filtered on them (``max_e_above_hull``,
``min_band_gap``). A filter or preset that needs a value a document lacks leaves the document
out and says so: :func:`missing_values` counts them per reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

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
    from collections.abc import Callable

    from maggma.core import Store

    from atomate2_gmt.stores.counting import MatchCount

__all__ = [
    "ALLOWED_OPERATORS",
    "CRYSTAL_SYSTEMS",
    "DFPT_FILTERS",
    "FIELD_UNITS",
    "MAX_TOP",
    "PRESETS",
    "CandidateQuery",
    "Preset",
    "candidate_row",
    "check_criteria",
    "find_document",
    "missing_values",
    "query_candidates",
    "ranked_documents",
    "relaxation_label",
    "stability_label",
]

_STATES = ("successful", "failed")

METAL_EXCLUDED: tuple[str, ...] = tuple(t for t, s in TASK_SPECS.items() if s.excludes_metals)
"""Properties whose queries leave out likely metals unless asked (a metal has no ε or e)."""

#: Largest ``top`` (a bound that every store's integer type holds).
MAX_TOP = 1_000_000_000

DFPT_FILTERS: tuple[str, ...] = ("accepted", "rejected", "failed", "none", "any")
"""Values of the DFPT filter: a DFPT outcome, ``none`` (no DFPT result yet) or ``any``."""

SOURCE_UNITS: dict[str, str] = {
    "band_gap": "eV",
    "energy_above_hull": "eV/atom",
    "formation_energy_per_atom": "eV/atom",
}
"""Units of the candidate source's values carried on the documents (emmet's)."""

FIELD_UNITS: dict[str, str] = {
    **{f.name: f.unit_label for spec in TASK_SPECS.values() for f in spec.derived},
    **SOURCE_UNITS,
    "phi": "eV",
    "e_ij_abs_max": "C/m²",
    "mlip_energy_above_hull": "eV/atom",
}
"""Units of every column a ranked table shows ("" for dimensionless)."""


# --------------------------------------------------------------------------------------------
# presets: published selection rules
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """A value a preset or filter needs: documents without it are left out and counted.

    ``field``: the document field; ``what``: how it is named to the user; ``rule``: the
    condition on the field (a plain dict of fixed operators, written here, never user text).
    """

    field: str
    what: str
    rule: dict[str, Any]


@dataclass(frozen=True)
class Preset:
    """A named selection rule from a screening study (the citation is in docs/screening.md).

    ``options``: the :class:`CandidateQuery` fields it sets; ``requires``: the values it needs
    (each with its rule); ``figure``: the stored document field of its figure of merit (None:
    rank on the sort field), written with the document from the tensor and the source's values
    (:mod:`atomate2_gmt.schemas.fields`), so that the store filters and sorts on it with an
    index; ``rank_field``: the stored field ranked on (None: the figure); ``min_figure``: hits
    have a figure strictly above it (``figure_inclusive``: or equal); ``hint``: a stored field
    whose index finds the hits (a selective threshold), which are then ranked, instead of
    walking the rank's index until the page is full.
    """

    name: str
    study: str
    description: str
    options: dict[str, Any]
    requires: tuple[Requirement, ...] = ()
    figure: str | None = None
    rank_field: str | None = None
    min_figure: float | None = None
    figure_inclusive: bool = False
    hint: str | None = None

    def figure_rule(self) -> dict[str, Any]:
        """The threshold of the figure of merit as a filter ({} without a figure)."""
        if self.figure is None or self.min_figure is None:
            return {}
        return {self.figure: {"$gte" if self.figure_inclusive else "$gt": self.min_figure}}


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="mp-piezo",
            study="de Jong et al., Sci. Data 2, 150053 (2015)",
            description="Materials Project piezoelectric selection: non-centrosymmetric, source "
            "DFT band gap > 0.1 eV, ranked by e_ij_max",
            options={"prop": "piezo", "sort": "e_ij_max", "non_centrosymmetric": True},
            requires=(Requirement("band_gap", "the source's band gap", {"$gt": 0.1}),),
        ),
        Preset(
            name="jarvis-piezo",
            study="Choudhary et al., npj Comput. Mater. 6, 64 (2020)",
            description="JARVIS-DFT high piezoelectric: max|e_ij| >= 0.5 C/m² (largest "
            "component of the standard Voigt e_iJ in the IEEE frame)",
            options={"prop": "piezo", "sort": "e_ij_abs_max"},
            requires=(Requirement("e_ij_abs_max", "the IEEE-frame e_iJ", {"$ne": None}),),
            figure="e_ij_abs_max",
            min_figure=0.5,
            figure_inclusive=True,
        ),
        Preset(
            name="jarvis-dielectric",
            study="Choudhary et al., npj Comput. Mater. 6, 64 (2020)",
            description="JARVIS-DFT high dielectric: average total ε (ionic + electronic) >= 20",
            options={"prop": "dielectric_total", "sort": "dielectric_total_mean", "min_value": 20},
        ),
        Preset(
            name="riebesell-dielectric",
            study="Riebesell et al., arXiv:2401.05848 (2024)",
            description="dielectric figure of merit Φ = Eg·ε̄_total > 240 eV (Eg: the source's "
            "band gap, ε̄: mean eigenvalue of the predicted ε_total), source E_hull < 0.1 "
            "eV/atom, predicted ε∞ <= 100; ranked by Φ − σ_Φ (ensemble σ)",
            options={"prop": "dielectric_total", "sort": "dielectric_total_mean"},
            requires=(
                Requirement("band_gap", "the source's band gap", {"$gt": 0}),
                Requirement("energy_above_hull", "the source's energy_above_hull", {"$lt": 0.1}),
                Requirement("dielectric_mean", "the predicted ε∞ (task dielectric)", {"$lte": 100}),
            ),
            figure="phi",
            rank_field="phi_minus_sigma",
            min_figure=240.0,
            # Φ > 240 eV is selective (a few % of a screen at most): the hits are found on Φ's
            # index and ranked, rather than walking Φ − σ_Φ through every crystal below it
            hint="phi",
        ),
    )
}
"""The named presets (``--preset``), by name."""


FIGURE_INPUTS: dict[str, tuple[str, ...]] = {
    "phi": ("band_gap", "dielectric_total_mean"),
    "e_ij_abs_max": ("e_ij_abs_max",),
}
"""The document fields each stored figure of merit is derived from: a query counting the
documents that lack one of them drops the figure's threshold."""


def figure_of_merit(preset: Preset, doc: dict[str, Any]) -> tuple[float | None, float | None]:
    """(value, ensemble σ or None) of the preset's figure for one document: the stored figure
    (``phi``, ``e_ij_abs_max``); σ_Φ = Eg·σ(ε̄) (the band gap is the source's DFT value, without
    an ensemble σ)."""
    if preset.figure is None:
        raise ValueError(f"preset {preset.name!r} has no figure")
    value = doc.get(preset.figure)
    if value is None:
        return None, None
    sigma = None
    if preset.figure == "phi":
        gap = doc.get("band_gap")
        spread = (doc.get("uncertainty") or {}).get("dielectric_total_mean")
        if gap is not None and spread is not None:
            sigma = float(gap) * float(spread)
    return float(value), sigma


# --------------------------------------------------------------------------------------------
# the query value
# --------------------------------------------------------------------------------------------


def _operator_free(name: str, value: Any) -> None:
    """Refuse a dict (an operator such as ``{"$ne": None}``) anywhere in a filter value."""
    items = value if isinstance(value, list | tuple | set) else [value]
    for item in items:
        if isinstance(item, dict):
            raise ValueError(
                f"{name} must be a plain value, got {type(item).__name__} {item!r}: filters "
                "take plain values, never query operators"
            )


def _elements(value: Any, what: str) -> tuple[str, ...]:
    from pymatgen.core import Element

    if value is None:
        return ()
    if isinstance(value, str):
        value = [s for s in value.replace(" ", ",").split(",") if s]
    out = []
    for s in value:
        if not isinstance(s, str):
            raise ValueError(f"{what} takes element symbols, got {s!r}")
        s = s.strip()
        if not Element.is_valid_symbol(s):
            raise ValueError(f"unknown element symbol {s!r} in {what}")
        out.append(s)
    return tuple(out)


class CandidateQuery(BaseModel):
    """Every filter, sort and limit of a candidate query, validated once.

    Args:
        preset: a name of :data:`PRESETS`; it sets the property, sort and its own filters
            (an option that contradicts it is an error; other options narrow it further).
        prop: ``dielectric``, ``dielectric_total``, ``piezo`` or ``elastic``.
        sort: a derived field of ``prop`` (or its alias); None → the property's default.
        ascending: smallest first. top: number of rows (1 … :data:`MAX_TOP`).
        crystal_system: one of ``CRYSTAL_SYSTEMS`` (any case).
        include_elements / exclude_elements: symbols ("Pb,Cd" or a list); a hit contains all
            of the first and none of the second.
        non_centrosymmetric: True / False / None (both).
        born_stable: only Born-stable crystals (needs the elastic prediction).
        state: the property's prediction state (``successful``, ``failed``; None: both).
        max_e_above_hull: eV/atom, on the candidate source's ``energy_above_hull``.
        min_band_gap: eV, on the candidate source's ``band_gap`` (≥).
        min_value / max_value: bounds on the sort field.
        model_version: only predictions of this model version.
        max_domain_distance: at most this far from the property's training data (> 0).
        include_metals: keep crystals that are metals (True), leave them out (False) or the
            property's default (None: kept for ``elastic`` only). A crystal whose source gives
            a band gap is judged by it (> 0: never left out); the ``likely_metal`` heuristic
            decides only where the source gives neither a band gap nor ``is_metal``.
        max_sites: only cells with at most this many sites.
        dfpt: a DFPT status (:data:`DFPT_FILTERS`).
        latest_only: with several model versions of a structure, its latest prediction only.
        include_unrelaxed_hypothetical: keep generated crystals (``hypothetical``) predicted on
            their unrelaxed, guessed structure (the relaxation funnel's ranking sets False).
        include_superseded: keep documents whose crystal was relaxed and predicted again
            (``relaxed_prediction_id``); by default its relaxed document stands for it.
        relaxed: only documents of structures the funnel relaxed (True: those with a
            ``relaxation`` record), only the others (False: e.g. the funnel's shortlist, which
            is drawn from the first screening's predictions), or both (None).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str | None = None
    prop: str | None = None
    sort: str | None = None
    ascending: bool = False
    top: int = 20
    crystal_system: str | None = None
    include_elements: tuple[str, ...] = ()
    exclude_elements: tuple[str, ...] = ()
    non_centrosymmetric: bool | None = None
    born_stable: bool = False
    state: str | None = "successful"
    max_e_above_hull: float | None = None
    min_band_gap: float | None = None
    min_value: float | None = None
    max_value: float | None = None
    model_version: str | None = None
    max_domain_distance: float | None = None
    include_metals: bool | None = None
    max_sites: int | None = None
    dfpt: str | None = None
    latest_only: bool = True
    include_unrelaxed_hypothetical: bool = True
    include_superseded: bool = False
    relaxed: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain_values(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, value in data.items():
                _operator_free(str(name), value)
            if "stable_only" in data:  # the command line's name of born_stable
                data = {**data, "born_stable": data["stable_only"]}
                data.pop("stable_only")
        return data

    @field_validator("prop", "state", "dfpt")
    @classmethod
    def _allowed(cls, value: str | None, info: Any) -> str | None:
        valid = {"prop": TASKS, "state": _STATES, "dfpt": DFPT_FILTERS}[info.field_name]
        if value is not None and value not in valid:
            name = "property" if info.field_name == "prop" else info.field_name
            raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        return value

    @field_validator("include_elements", "exclude_elements", mode="before")
    @classmethod
    def _symbols(cls, value: Any, info: Any) -> tuple[str, ...]:
        return _elements(value, info.field_name)

    @field_validator("crystal_system", mode="before")
    @classmethod
    def _crystal_system(cls, value: Any) -> str | None:
        if value is None:
            return None
        cs = str(value).strip().lower()
        if cs not in CRYSTAL_SYSTEMS:
            raise ValueError(
                f"unknown crystal system {value!r}; valid: {', '.join(CRYSTAL_SYSTEMS)}"
            )
        return cs

    @field_validator("top", mode="before")
    @classmethod
    def _top(cls, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_TOP:
            raise ValueError(f"top must be an integer from 1 to {MAX_TOP}, got {value!r}")
        return value

    @field_validator(
        "max_e_above_hull", "min_band_gap", "min_value", "max_value", "max_domain_distance"
    )
    @classmethod
    def _finite(cls, value: float | None, info: Any) -> float | None:
        if value is None:
            return None
        if not math.isfinite(value):
            raise ValueError(f"{info.field_name} must be a finite number, got {value}")
        if info.field_name in ("max_e_above_hull", "min_band_gap") and value < 0:
            unit = SOURCE_UNITS[
                "band_gap" if info.field_name == "min_band_gap" else "energy_above_hull"
            ]
            raise ValueError(f"{info.field_name} must be >= 0 {unit}, got {value}")
        if info.field_name == "max_domain_distance" and value <= 0:
            raise ValueError(f"max_domain_distance must be > 0, got {value}")
        return value

    @field_validator("max_sites")
    @classmethod
    def _sites(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"max_sites must be >= 1, got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CandidateQuery:
        if self.preset is not None:
            preset = PRESETS.get(self.preset)
            if preset is None:
                raise ValueError(f"unknown preset {self.preset!r}; valid: {', '.join(PRESETS)}")
            for name, value in preset.options.items():
                given = getattr(self, name)
                if given is not None and given != value and name in self.model_fields_set:
                    raise ValueError(
                        f"preset {preset.name!r} sets {name}={value!r}; got {name}={given!r}"
                    )
                object.__setattr__(self, name, value)
        if self.prop is None:
            raise ValueError(f"a property (one of {', '.join(TASKS)}) or a preset is required")
        resolve_sort_field(self.prop, self.sort)  # unknown sort key: error now
        overlap = sorted(set(self.include_elements) & set(self.exclude_elements))
        if overlap:
            raise ValueError(f"elements {overlap} are both included and excluded")
        if (
            self.min_value is not None
            and self.max_value is not None
            and self.min_value > self.max_value
        ):
            raise ValueError(f"min_value {self.min_value} > max_value {self.max_value}")
        return self

    @classmethod
    def build(cls, **options: Any) -> CandidateQuery:
        """A query from request or command-line options: blanks are unset, and a bad value is a
        ``ValueError`` whose message names the option and says what is valid."""
        clean = {k: v for k, v in options.items() if not (isinstance(v, str) and not v.strip())}
        clean = {k: v for k, v in clean.items() if v is not None}
        try:
            return cls(**clean)
        except ValidationError as exc:
            reasons = []
            for err in exc.errors():
                where = ".".join(str(p) for p in err.get("loc", ()))
                msg = str(err.get("msg", "")).removeprefix("Value error, ")
                if str(err.get("type", "")).startswith("bool"):
                    msg = f"{where} must be true, false or empty"
                named = not where or msg.startswith(where) or where in msg.split(" ", 2)[:2]
                reasons.append(msg if named else f"{where}: {msg}")
            raise ValueError("; ".join(reasons)) from None

    # ---- what the store is asked -----------------------------------------------------------
    @property
    def task(self) -> str:
        """The property (set once validated)."""
        assert self.prop is not None
        return self.prop

    @property
    def preset_rule(self) -> Preset | None:
        """The preset, if one is named."""
        return PRESETS[self.preset] if self.preset else None

    def sort_field(self) -> str:
        """The field the ranking is sorted on: a preset's stored rank field (Φ − σ_Φ, max|e_ij|)
        or the sort field (``source`` for failed predictions)."""
        if self.state != "successful":
            return "source"
        preset = self.preset_rule
        if preset is not None and preset.figure is not None:
            return preset.rank_field or preset.figure
        return resolve_sort_field(self.task, self.sort)

    def requirements(self) -> tuple[Requirement, ...]:
        """The values this query needs, each with its rule (preset's and source filters)."""
        out = list(self.preset_rule.requires if self.preset_rule else ())
        if self.min_band_gap is not None:
            out.append(
                Requirement("band_gap", "the source's band gap", {"$gte": self.min_band_gap})
            )
        if self.max_e_above_hull is not None:
            out.append(
                Requirement(
                    "energy_above_hull",
                    "the source's energy_above_hull",
                    {"$lte": self.max_e_above_hull},
                )
            )
        return tuple(out)

    def criteria(self, without: str | None = None) -> dict[str, Any]:
        """The MongoDB-style filter (operators written here only). ``without``: leave out the
        requirements on this field (to count the documents that lack it)."""
        prop = self.task
        # documents of an older schema define some fields differently: never mixed in
        criteria: dict[str, Any] = {"schema_version": PREDICTION_SCHEMA_VERSION}
        if self.state is None:
            criteria[f"predictions.{prop}"] = {"$exists": True}
        else:
            criteria[f"predictions.{prop}.state"] = self.state
        and_: list[dict[str, Any]] = []
        if self.state == "successful":
            bounds: dict[str, Any] = {"$ne": None}
            if self.min_value is not None:
                bounds["$gte"] = self.min_value
            if self.max_value is not None:
                bounds["$lte"] = self.max_value
            value_field = resolve_sort_field(prop, self.sort)
            if value_field != without:
                criteria[value_field] = bounds
            preset = self.preset_rule
            figure = preset.figure if preset is not None else None
            if preset is not None and figure is not None and without not in FIGURE_INPUTS[figure]:
                rank = self.sort_field()
                if rank != value_field:
                    criteria[rank] = {"$ne": None}
                and_.append(preset.figure_rule())
        if self.crystal_system is not None:
            criteria["symmetry.crystal_system"] = self.crystal_system.capitalize()
        if self.exclude_elements:
            criteria["elements"] = {"$nin": list(self.exclude_elements)}
        if self.include_elements:
            criteria.setdefault("elements", {})["$all"] = list(self.include_elements)
        if self.non_centrosymmetric is not None:
            criteria["is_centrosymmetric"] = not self.non_centrosymmetric
        if self.born_stable:
            criteria["born_stable"] = True
        for req in self.requirements():
            if req.field != without:
                and_.append({req.field: dict(req.rule)})
        if self.model_version is not None:
            criteria["model_version"] = self.model_version
        include_metals = self.include_metals
        if include_metals is None:  # default: metals only where their prediction means something
            include_metals = prop not in METAL_EXCLUDED
        if not include_metals:
            # the source's band gap (or is_metal) decides where it is given; the likely_metal
            # heuristic only where neither is (None: rule not applicable, kept)
            and_.append(
                {
                    "$or": [
                        {"band_gap": {"$gt": 0}},
                        {"band_gap": None, "is_metal": False},
                        {"band_gap": None, "is_metal": None, "likely_metal": {"$ne": True}},
                    ]
                }
            )
        if self.max_domain_distance is not None:
            criteria[f"domain_distance.{prop}"] = {"$lte": self.max_domain_distance}
        if self.max_sites is not None:
            criteria["nsites"] = {"$lte": self.max_sites}
        if self.dfpt == "none":
            criteria["dfpt"] = {"$exists": False}
        elif self.dfpt == "any":
            criteria["dfpt"] = {"$exists": True}
        elif self.dfpt is not None:
            criteria["dfpt.state"] = self.dfpt
        if not self.include_superseded:  # a relaxed, re-predicted crystal: its relaxed document
            criteria["relaxed_prediction_id"] = None
        if self.relaxed is not None:
            criteria["relaxation"] = {"$ne": None} if self.relaxed else None
        if not self.include_unrelaxed_hypothetical:  # a generated crystal counts once relaxed
            and_.append({"$nor": [{"hypothetical": True, "relaxation": None}]})
        if and_:
            criteria["$and"] = and_
        return criteria

    def store_hint(self) -> dict[str, Any] | None:
        """The index the store should use when it is not the sort's (a preset's ``hint``)."""
        preset = self.preset_rule
        if preset is None or preset.hint is None or self.state != "successful":
            return None
        return {preset.hint: 1, PREDICTION_KEY: 1}

    def store_sort(self) -> dict[str, Any]:
        """The store's sort: the sort field, ties by key, one direction (index-friendly)."""
        direction = 1 if self.ascending else -1
        return {self.sort_field(): direction, PREDICTION_KEY: direction}

    def properties(self, include_tensors: bool = False) -> list[str]:
        """The document fields a ranked row needs."""
        prop = self.task
        out = [
            *SUMMARY_FIELDS,
            *DERIVED_FIELDS[prop],
            "last_updated",
            "uncertainty",
            "likely_metal",
            "likely_metal_reason",
            f"domain_distance.{prop}",
            "dfpt.state",
            f"predictions.{prop}.state",
            f"predictions.{prop}.error",
            f"predictions.{prop}.units",
        ]
        preset = self.preset_rule
        if preset is not None:
            out += [r.field for r in preset.requires if r.field not in out]
            if preset.figure is not None:
                out += [f for f in (preset.figure, preset.rank_field) if f and f not in out]
        if include_tensors:  # the stored form; the others are computed on read
            out += [f"predictions.{prop}.{f}" for f in ("tensor", "voigt", "voigt_ieee")]
            out += ["ieee_rotation", "timings"]
        return out

    def as_params(self) -> dict[str, str]:
        """The options that differ from the defaults, as URL query parameters (what the web
        table's links carry); a preset's own options are carried by its name."""
        preset_options = set(self.preset_rule.options) if self.preset_rule else set()
        out: dict[str, str] = {}
        if self.preset:
            out["preset"] = self.preset
        else:
            out["property"] = self.task
        for name in type(self).model_fields:
            if name in ("preset", "prop", "top") or name in preset_options:
                continue
            value = getattr(self, name)
            if value == type(self).model_fields[name].default:
                continue
            if isinstance(value, bool):
                out[name] = str(value).lower()
            elif isinstance(value, tuple):
                out[name] = ",".join(value)
            elif isinstance(value, float):
                out[name] = f"{value:g}"
            elif value is not None:
                out[name] = str(value)
        if self.state != "successful":
            out["state"] = str(self.state) if self.state else ""
        return out


# --------------------------------------------------------------------------------------------
# running a query
# --------------------------------------------------------------------------------------------


def _uncertainty_note(doc: dict[str, Any]) -> str | None:
    return None if doc.get("uncertainty") else "σ n/a (single model)"


def candidate_row(
    doc: dict[str, Any], prop: str, rank: int, preset: Preset | None = None
) -> dict[str, Any]:
    """The flat row of a candidate document for property ``prop``: its identity, symmetry, the
    property's derived scalars with their ensemble σ (``uncertainty``; ``uncertainty_note``
    says when the prediction had no ensemble), the source's values (``material_id``,
    ``band_gap``, ``energy_above_hull``; None when not given), the preset's figure of merit,
    the likely-metal and domain marks, the prediction state and error."""
    from atomate2_gmt.data.domain import IN_DOMAIN_MAX

    sym = doc.get("symmetry") or {}
    row: dict[str, Any] = {
        "rank": rank,
        "formula": doc.get("formula_pretty"),
        "material_id": doc.get("material_id"),
        "space_group": sym.get("symbol"),
        "space_group_number": sym.get("number"),
        "crystal_system": sym.get("crystal_system"),
        "point_group": sym.get("point_group"),
        "is_centrosymmetric": doc.get("is_centrosymmetric"),
    }
    for f in DERIVED_FIELDS[prop]:
        row[f] = doc.get(f)
    spread = doc.get("uncertainty") or {}
    uncertainty = {f: float(spread[f]) for f in DERIVED_FIELDS[prop] if f in spread}
    if preset is not None and preset.figure is not None:
        value, sigma = figure_of_merit(preset, doc)
        row[preset.figure] = value
        if sigma is not None:
            uncertainty[preset.figure] = sigma
    pred = (doc.get("predictions") or {}).get(prop) or {}
    distance = (doc.get("domain_distance") or {}).get(prop)
    row.update(
        {
            "uncertainty": uncertainty,
            "uncertainty_note": _uncertainty_note(doc),
            "state": pred.get("state"),
            "error": pred.get("error"),
            "band_gap": doc.get("band_gap"),
            "energy_above_hull": doc.get("energy_above_hull"),
            "mlip_energy_above_hull": doc.get("mlip_energy_above_hull"),
            "stability_source": doc.get("stability_source"),
            "hypothetical": doc.get("hypothetical"),
            "relaxed": relaxation_label(doc.get("relaxation")),
            "is_metal": doc.get("is_metal"),
            "likely_metal": doc.get("likely_metal"),
            "likely_metal_reason": doc.get("likely_metal_reason"),
            "domain_distance": distance,
            "out_of_domain": None if distance is None else bool(distance > IN_DOMAIN_MAX),
            "source": doc.get("source"),
            "nsites": doc.get("nsites"),
            "structure_key": doc.get("structure_key"),
            "model_version": doc.get("model_version"),
            "dfpt_state": (doc.get("dfpt") or {}).get("state"),
            PREDICTION_KEY: doc.get(PREDICTION_KEY),
        }
    )
    row["stability"] = stability_label(row)
    return row


def relaxation_label(relaxation: dict[str, Any] | None) -> str | None:
    """``"CHGNet 0.3.0"`` (``", not converged"`` added when the forces did not reach the
    criterion) for a document predicted on a relaxed structure, None for one predicted on its
    input structure."""
    if not relaxation:
        return None
    label = " ".join(
        str(p) for p in (relaxation.get("potential"), relaxation.get("potential_version")) if p
    )
    return label + ("" if relaxation.get("converged") else ", not converged")


def stability_label(row: dict[str, Any]) -> str:
    """One row's stability and where it is from, for tables: ``"0.012 eV/atom (source:
    Materials Project)"``, ``"0.085 eV/atom (MLIP estimate: CHGNet 0.3.0 vs 4 known
    phases)"``, or ``"unknown"`` (``"unknown, hypothetical, unrelaxed"`` for a generated
    crystal predicted on its guessed structure)."""
    source = row.get("stability_source")
    for field in ("energy_above_hull", "mlip_energy_above_hull"):
        value = row.get(field)
        if value is not None:
            return f"{value:.3f} eV/atom ({source or field})"
    if row.get("hypothetical"):
        return "unknown, hypothetical" + ("" if row.get("relaxed") else ", unrelaxed")
    return "unknown"


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


def _latest_only(store: Store, query: CandidateQuery, criteria: dict[str, Any]) -> dict[str, Any]:
    """``criteria`` restricted to each structure's latest prediction when the matches come from
    several model versions."""
    if not query.latest_only or query.model_version is not None:
        return criteria
    if not several_versions(store, criteria):
        return criteria
    latest: dict[str, tuple[str, str]] = {}
    for doc in store.query(criteria, properties=[PREDICTION_KEY, "structure_key", "last_updated"]):
        key = doc.get("structure_key") or doc[PREDICTION_KEY]
        stamp = str(doc.get("last_updated") or "")
        if key not in latest or stamp > latest[key][0]:
            latest[key] = (stamp, doc[PREDICTION_KEY])
    latest_ids = {PREDICTION_KEY: {"$in": [v[1] for v in latest.values()]}}
    return {"$and": [criteria, latest_ids]} if criteria else latest_ids


def _after(criteria: dict[str, Any], query: CandidateQuery, after: tuple[Any, str]) -> dict:
    """``criteria`` restricted to the rows ranked after ``after`` = (sort value, key): a range
    on the sort field (which its index serves) less the ties up to the key."""
    value, key = after
    if isinstance(value, dict | list) or not isinstance(key, str):
        raise ValueError("a cursor is a plain sort value and a prediction_id")
    field_ = query.sort_field()
    past, upto = ("$gte", "$lte") if query.ascending else ("$lte", "$gte")
    return {
        "$and": [
            criteria,
            {field_: {past: value}},
            {"$nor": [{field_: value, PREDICTION_KEY: {upto: key}}]},
        ]
    }


def ranked_documents(
    store: Store,
    query: CandidateQuery,
    skip: int = 0,
    limit: int | None = None,
    include_tensors: bool = False,
    count: Callable[[Store, dict[str, Any]], MatchCount] | None = None,
    full_documents: bool = False,
    extra: dict[str, Any] | None = None,
    with_total: bool = True,
    after: tuple[Any, str] | None = None,
) -> tuple[list[dict[str, Any]], MatchCount | None]:
    """(documents ``skip`` … ``skip + limit`` of the ranking, number of matches); ``limit``
    None → ``query.top``. Every query, a preset's figure of merit (Φ − σ_Φ, max|e_ij|)
    included, walks the store's index of its sort field (a stored field). ``count``: how to
    count the matches (default :func:`~atomate2_gmt.stores.count_matches`: exact within a time
    budget, else estimated and marked); ``full_documents``: whole documents instead of a row's
    fields; ``extra``: criteria the caller's code adds (e.g. the selection's "not in
    flight"), never request values; ``with_total=False``: no count (None). ``after``: the
    (sort value, ``prediction_id``) of the row just before the page (a cursor: the store starts
    its index walk there instead of walking ``skip`` rows; ``skip`` then only numbers the
    rows)."""
    from atomate2_gmt.stores.counting import MatchCount, count_matches
    from atomate2_gmt.stores.embedded import EmbeddedStore

    if skip < 0 or (limit is not None and limit <= 0):
        raise ValueError(f"skip must be >= 0 and limit > 0, got skip={skip}, limit={limit}")
    limit = query.top if limit is None else limit
    store.connect()
    criteria = _latest_only(store, query, {**query.criteria(), **(extra or {})})
    properties = None if full_documents else query.properties(include_tensors)
    page_criteria = criteria if after is None else _after(criteria, query, after)
    hint = query.store_hint() if isinstance(store, EmbeddedStore) else None
    expand = full_documents or include_tensors
    docs = list(
        store.query(
            criteria=page_criteria,
            properties=properties,
            sort=query.store_sort(),
            skip=skip if after is None else 0,
            limit=limit,
            **({"hint": hint} if hint else {}),
        )
    )
    if expand:  # the tensor forms the store does not keep (schemas.stored)
        from atomate2_gmt.schemas.stored import expand_prediction_dict

        docs = [expand_prediction_dict(d) for d in docs]
    total: MatchCount | None
    if len(docs) < limit and (docs or skip == 0):  # the last page: no count needed
        total = MatchCount(skip + len(docs))
    elif not with_total:
        total = None
    else:
        total = (count or count_matches)(store, criteria)
    return docs, total


def query_candidates(
    store: Store,
    query: CandidateQuery | str,
    *,
    include_tensors: bool = False,
    **options: Any,
) -> list[dict[str, Any]]:
    """The ``query.top`` candidates, best first, as flat rows (:func:`candidate_row`).

    ``query``: a :class:`CandidateQuery`, or a property name with the query's options as
    keywords (``query_candidates(store, "piezo", sort="e_ij_max", top=5)``); ``include_tensors``
    adds the property's ``tensor``/``voigt``/``voigt_ieee`` and ``units`` to each row. The store
    is connected here. Documents that a filter or preset leaves out for a value they lack are
    counted by :func:`missing_values`.
    """
    if isinstance(query, str):
        query = CandidateQuery.build(prop=query, **options)
    elif options:
        raise ValueError("options go into the CandidateQuery, not beside it")
    docs, _ = ranked_documents(store, query, include_tensors=include_tensors, with_total=False)
    rows = []
    for i, doc in enumerate(docs):
        row = candidate_row(doc, query.task, i + 1, query.preset_rule)
        if include_tensors:
            pred = (doc.get("predictions") or {}).get(query.task) or {}
            for f in ("units", "voigt", "voigt_ieee", "tensor"):
                row[f] = pred.get(f)
        rows.append(row)
    return rows


def missing_values(
    store: Store,
    query: CandidateQuery,
    count_each: Callable[[Store, list[dict[str, Any]]], list[MatchCount]] | None = None,
) -> dict[str, MatchCount]:
    """How many candidates that match everything else are left out because they lack a value
    the query needs: ``{"<what>": count}`` (only reasons with a count above 0), e.g.
    ``{"the source's band gap": MatchCount(12)}``. One count per needed value, exact within one
    time budget for them all, else estimated from one random sample and marked
    (:func:`~atomate2_gmt.stores.counting.count_matches_each`); ``count_each``: how to count
    (the web app's cache)."""
    from atomate2_gmt.stores.counting import count_matches_each

    store.connect()
    needed: dict[str, tuple[str, dict[str, Any]]] = {}
    for req in query.requirements():
        if req.field in needed:
            continue
        criteria = query.criteria(without=req.field)
        criteria.setdefault("$and", []).append({req.field: None})
        needed[req.field] = (req.what, criteria)
    if not needed:
        return {}
    counts = (count_each or count_matches_each)(store, [c for _, c in needed.values()])
    return {
        what: n
        for (what, _), n in zip(needed.values(), counts, strict=True)
        if n.n or (n.estimated and n.hits == 0)
    }


def find_document(store: Store, key: str) -> dict[str, Any]:
    """One prediction document by ``prediction_id``, ``structure_key`` or any of its input names
    (``source``, ``sources``; the latest when several match), in its read form (every tensor
    form, :func:`atomate2_gmt.schemas.stored.expand_prediction_dict`). ``KeyError`` naming
    ``key`` if nothing matches."""
    if not isinstance(key, str) or not key.strip():
        raise ValueError("key must be a non-empty string")
    store.connect()
    for field_name in (PREDICTION_KEY, "structure_key", "source", "sources"):
        docs = list(store.query({field_name: key}))
        if docs:
            from atomate2_gmt.schemas.stored import expand_prediction_dict

            docs.sort(key=lambda d: str(d.get("last_updated") or ""))
            return expand_prediction_dict(docs[-1])
    raise KeyError(
        f"no prediction document with prediction_id, structure_key or input name {key!r}"
    )
