"""Field names of the prediction documents, shared by the schema, the stores and the queries.

Kept free of emmet/pydantic imports so that the store and query layers can name fields cheaply.
Derived scalars are flattened to the top level of a :class:`~atomate2_gmt.schemas.prediction.
GMTPredictionDoc` so that they can be indexed and sorted on:

- ``dielectric_mean``, ``dielectric_eig_max``: mean and largest eigenvalue of the electronic
  ε∞ (dimensionless); ``dielectric_total_mean``, ``dielectric_total_eig_max`` for the static ε0;
- ``e_ij_max``: emmet's ``PiezoelectricDoc.e_ij_max``, the largest singular value of the
  standard Voigt e_iJ in the structure's IEEE 176 frame (C/m²; None when no IEEE frame was found);
  ``e_ij_abs_max``: the largest |e_iJ| of that IEEE-frame Voigt e_iJ (JARVIS-DFT's max|e_ij|);
  ``e_long_max``: the largest longitudinal response max_n e_ijk n_i n_j n_k (C/m²);
  ``e_norm``: the Frobenius norm of the full Cartesian e_ijk (C/m²);
- ``K_VRH``, ``G_VRH``: Voigt-Reuss-Hill bulk and shear moduli (GPa); ``AU``: universal
  elastic anisotropy (dimensionless); ``born_stable``: Born mechanical stability (bool).

Beside them, the document stores the dielectric figure of merit of Riebesell et al. (the
``riebesell-dielectric`` preset): ``phi`` = Eg·ε̄_total (eV; Eg the candidate source's band gap,
ε̄_total the predicted ``dielectric_total_mean``; None without either) and ``phi_minus_sigma`` =
Φ − Eg·σ(ε̄_total) (Φ without an ensemble σ), its risk-aware rank (:data:`FIGURE_FIELDS`).

Every one of them depends on the crystal alone, never on the orientation of the input file.
The per-task tables here are derived from the task registry (:mod:`atomate2_gmt.tensors.tasks`).
"""

from __future__ import annotations

from atomate2_gmt.tensors.tasks import TASK_SPECS, TASKS

__all__ = [
    "DEFAULT_SORT",
    "DERIVED_FIELDS",
    "FIGURE_FIELDS",
    "PREDICTION_INDEXES",
    "PREDICTION_KEY",
    "PREDICTION_SCHEMA_VERSION",
    "SORT_FIELDS",
    "SUMMARY_FIELDS",
    "TASKS",
    "resolve_sort_field",
]

PREDICTION_SCHEMA_VERSION = 7
"""Version of the prediction document's field definitions. Documents of another version are
migrated in place by screening jobs (``schemas.prediction.migrate_prediction_dict``) and left out
of queries until then, so older definitions (e.g. the frame-dependent ``e_ij_max`` of version 1)
are never mixed with the current ones. Version 3 added ``likely_metal``/``likely_metal_reason``;
version 4 carries the candidate source's ``material_id``, ``energy_above_hull``,
``formation_energy_per_atom``, ``band_gap`` and ``is_metal`` under emmet's names; version 5 adds
``hypothetical``, ``stability_source`` (both derived from what was stored), and the relaxation
funnel's ``relaxation``, ``relaxed_prediction_id`` and ``mlip_energy_above_hull``; version 6
stores the figures the presets filter and rank on (``e_ij_abs_max``, ``phi``,
``phi_minus_sigma``); version 7 is stored compact (``schemas.stored``: one tensor form per
task, ``voigt``, with the document's ``ieee_rotation``; the other forms computed on read)."""

PREDICTION_KEY = "prediction_id"
"""Unique key of a prediction document: ``"<structure_key>:<model_version>"``."""

DERIVED_FIELDS: dict[str, tuple[str, ...]] = {t: s.derived_fields for t, s in TASK_SPECS.items()}
"""Top-level derived fields written for each task when its prediction succeeded."""

SORT_FIELDS: dict[str, tuple[str, ...]] = {t: s.sort_fields for t, s in TASK_SPECS.items()}
"""Numeric derived fields a query for each property may sort on."""

DEFAULT_SORT: dict[str, str] = {t: s.default_sort for t, s in TASK_SPECS.items()}

_SORT_ALIASES: dict[str, dict[str, str]] = {t: s.sort_aliases for t, s in TASK_SPECS.items()}

FIGURE_FIELDS: tuple[str, ...] = ("phi", "phi_minus_sigma")
"""Stored figures of merit beyond the per-task derived fields (from a tensor and the source's
values), each indexed: the Φ preset finds its hits on the index of ``phi`` (its threshold) and
ranks them on ``phi_minus_sigma``."""

SUMMARY_FIELDS: tuple[str, ...] = (
    "prediction_id",
    "structure_key",
    "formula_pretty",
    "chemsys",
    "nsites",
    "symmetry.crystal_system",
    "symmetry.symbol",
    "symmetry.number",
    "symmetry.point_group",
    "is_centrosymmetric",
    "source",
    "model_version",
    "state",
    "material_id",
    "energy_above_hull",
    "band_gap",
    "is_metal",
    "hypothetical",
    "mlip_energy_above_hull",
    "stability_source",
    "relaxation",
)
"""Fields a query returns for every hit, besides the property's derived scalars."""

PREDICTION_INDEXES: tuple[tuple[tuple[str, ...], bool], ...] = (
    ((PREDICTION_KEY,), True),
    (("structure_key", "model_version"), False),
    (("model_version",), False),
    (("state",), False),
    (("sources",), False),
    (("symmetry.crystal_system",), False),
    *(((field, PREDICTION_KEY), False) for task in TASKS for field in SORT_FIELDS[task]),
    *(((field, PREDICTION_KEY), False) for field in FIGURE_FIELDS),
)
"""Indexes of the prediction store: (key fields, unique). The key, structure_key (prefix of the
compound index), model_version, state, input names (``show`` finds a document by any of them),
crystal system, every sort field and stored figure of merit (with the key, the
tie-breaker of sorted queries, so that a top-k query walks one index). Low-selectivity
booleans, element lists (used with ``$nin``) and per-task states are filtered while walking a
sort index instead: each index costs write throughput (see docs/benchmarks.md, Stores)."""


def resolve_sort_field(prop: str, sort: str | None) -> str:
    """The document field for ``sort`` on property ``prop`` (None → the property's default).

    Accepts the field name (``dielectric_eig_max``) or its short alias (``eig_max``).
    """
    if prop not in SORT_FIELDS:
        raise ValueError(f"unknown property {prop!r}; valid properties: {', '.join(TASKS)}")
    if sort is None:
        return DEFAULT_SORT[prop]
    if sort in SORT_FIELDS[prop]:
        return sort
    if sort in _SORT_ALIASES[prop]:
        return _SORT_ALIASES[prop][sort]
    valid = sorted(set(SORT_FIELDS[prop]) | set(_SORT_ALIASES[prop]))
    raise ValueError(
        f"cannot sort property {prop!r} on {sort!r}; valid sort keys: {', '.join(valid)}"
    )
