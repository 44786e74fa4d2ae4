"""Which DFPT accuracy settings make production-quality training data.

A DFPT result or training document records its accuracy settings (``settings``: the ABINIT
settings, or the VASP INCAR keys and k-points). :func:`production_problems` names what keeps them
from production quality; the feedback job, the training-document builder and the training-data
reader (:func:`atomate2_gmt.data.store_source.records_from_store`) all refuse such results, so a
test run (``dfpt.abinit.smoke_settings``, preset ``"smoke"``) never becomes training data.

The rules:

- a named ``preset`` other than :data:`PRODUCTION_PRESETS` (``smoke`` trades 10-20 % accuracy for
  speed);
- ABINIT settings looser than the floors below, which the default settings meet: plane-wave cutoff
  ``ecut`` below :data:`MIN_ABINIT_ECUT_HA`, k-point spacing ``kpt_spacing`` above
  :data:`MAX_KPT_SPACING` (1/Å, 2π included), response-function tolerance ``tolvrs_rf`` above
  :data:`MAX_TOLVRS_RF`;
- VASP settings looser than the floors of atomate2's DFPT input sets: ``ENCUT`` below
  :data:`MIN_VASP_ENCUT_EV`, ``EDIFF`` above :data:`MAX_VASP_EDIFF`, a k-point spacing
  (``KSPACING``, or the largest reciprocal-lattice length over the mesh divisions of an
  automatic ``kpoints`` mesh) above :data:`MAX_VASP_KSPACING`.

:func:`missing_settings` names the accuracy settings a DFPT result must record for its code: a
result without them cannot be shown to be production quality and is refused as training data.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

__all__ = [
    "MAX_KPT_SPACING",
    "MAX_TOLVRS_RF",
    "MAX_VASP_EDIFF",
    "MAX_VASP_KSPACING",
    "MIN_ABINIT_ECUT_HA",
    "MIN_VASP_ENCUT_EV",
    "PRODUCTION_PRESETS",
    "REQUIRED_SETTINGS",
    "missing_settings",
    "production_problems",
]

PRODUCTION_PRESETS = frozenset({"default", "production"})
"""Named presets whose results may become training data."""

MIN_ABINIT_ECUT_HA = 30.0
"""Smallest accepted ABINIT plane-wave cutoff (Ha); the default settings use 40."""

MAX_KPT_SPACING = 0.3
"""Largest accepted k-point spacing (1/Å, 2π included); the default settings use 0.22."""

MAX_TOLVRS_RF = 1e-8
"""Loosest accepted response-function SCF tolerance; the default settings use 1e-10."""


MIN_VASP_ENCUT_EV = 520.0
"""Smallest accepted VASP plane-wave cutoff (eV): pymatgen's MPRelaxSet (the PBE standard of the
Materials Project data the models are trained on). atomate2's DFPT inputs use more:
``DielectricMaker`` 680 eV (its base set, from ``MPScanRelaxSet``), ``ElasticRelaxMaker`` 700 eV."""

MAX_VASP_EDIFF = 1e-5
"""Loosest accepted VASP electronic convergence (eV): atomate2's ``DielectricMaker`` uses 1e-5 (from
``MPScanRelaxSet``), ``ElasticRelaxMaker`` 1e-7."""

MAX_VASP_KSPACING = 0.44
"""Largest accepted VASP k-point spacing (1/Å, 2π included, VASP's ``KSPACING``): the coarsest
``MPScanRelaxSet`` uses (for wide-gap insulators). atomate2's DFPT k-points (reciprocal density
64 per Å⁻³) are about 0.25 1/Å; ``ElasticRelaxMaker`` uses a grid density of 7000 per atom."""

REQUIRED_SETTINGS: dict[str, tuple[tuple[str, ...], ...]] = {
    "abinit": (("ecut",), ("kpt_spacing", "ngkpt"), ("tolvrs_rf",)),
    "vasp": (("ENCUT",), ("EDIFF",), ("KSPACING", "kpoints")),
}
"""Code → the accuracy settings a DFPT result must record (one of each group)."""


def _finite_number(value: Any) -> TypeGuard[float]:
    """A real, finite number (not a bool, a string or NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def missing_settings(settings: dict[str, Any] | None, code: str | None) -> list[str]:
    """Why ``settings`` of a ``code`` result are too incomplete to judge
    (:data:`REQUIRED_SETTINGS`); empty when every group has a value."""
    settings = settings or {}
    groups = REQUIRED_SETTINGS.get(str(code), ())
    absent = [" or ".join(g) for g in groups if all(settings.get(k) is None for k in g)]
    if not absent:
        return []
    return [
        f"the {code} accuracy settings are missing ({', '.join(absent)}): a result must record "
        "them to show it is production quality"
    ]


def vasp_kpoint_spacing(settings: dict[str, Any], structure: Any = None) -> float | None:
    """The k-point spacing (1/Å, 2π included) of VASP ``settings``: ``KSPACING``, else the largest
    |b_i| / n_i of a Gamma or Monkhorst-Pack ``kpoints`` mesh of ``structure`` (None when neither
    is known)."""
    import numpy as np

    spacing = settings.get("KSPACING")
    if isinstance(spacing, int | float) and not isinstance(spacing, bool):
        return float(spacing)
    mesh = (
        (settings.get("kpoints") or {}).get("kpoints")
        if isinstance(settings.get("kpoints"), dict)
        else None
    )
    style = str((settings.get("kpoints") or {}).get("generation_style", "")) if mesh else ""
    if structure is None or not mesh or style[:1].lower() not in ("g", "m"):
        return None  # only a Gamma or Monkhorst-Pack mesh gives divisions along b_1, b_2, b_3
    try:
        divisions = np.asarray(mesh[0], dtype=float).reshape(3)
    except (TypeError, ValueError, IndexError):
        return None
    if np.any(divisions < 1):
        return None
    lengths = np.linalg.norm(structure.lattice.reciprocal_lattice.matrix, axis=1)
    return float(np.max(lengths / divisions))


def production_problems(
    settings: dict[str, Any] | None, code: str | None = None, structure: Any = None
) -> list[str]:
    """Why results computed with ``settings`` (by ``code``) are not production quality; an empty
    list means they are."""
    settings = settings or {}
    problems: list[str] = []
    preset = settings.get("preset")
    if preset is not None and str(preset) not in PRODUCTION_PRESETS:
        problems.append(f"computed with the {preset!r} preset, not production quality")
    if code == "abinit":
        ecut = settings.get("ecut")
        if isinstance(ecut, int | float) and ecut < MIN_ABINIT_ECUT_HA:
            problems.append(
                f"ecut {ecut:g} Ha is below the production floor {MIN_ABINIT_ECUT_HA:g}"
            )
        spacing = settings.get("kpt_spacing")
        if isinstance(spacing, int | float) and spacing > MAX_KPT_SPACING:
            problems.append(
                f"k-point spacing {spacing:g} 1/Å is above the production {MAX_KPT_SPACING:g}"
            )
        tol = settings.get("tolvrs_rf")
        if isinstance(tol, int | float) and tol > MAX_TOLVRS_RF:
            problems.append(f"tolvrs_rf {tol:g} is looser than the production {MAX_TOLVRS_RF:g}")
    if code == "vasp":
        encut, ediff = settings.get("ENCUT"), settings.get("EDIFF")
        for name, value in (("ENCUT", encut), ("EDIFF", ediff)):
            if value is not None and not _finite_number(value):
                problems.append(f"{name} {value!r} is not a number")
        if _finite_number(encut) and encut < MIN_VASP_ENCUT_EV:
            problems.append(
                f"ENCUT {encut:g} eV is below the production floor {MIN_VASP_ENCUT_EV:g} eV"
            )
        if _finite_number(ediff) and ediff > MAX_VASP_EDIFF:
            problems.append(f"EDIFF {ediff:g} eV is looser than the production {MAX_VASP_EDIFF:g}")
        spacing = vasp_kpoint_spacing(settings, structure)
        if spacing is None and not missing_settings(settings, "vasp"):
            problems.append(
                "k-point spacing cannot be determined from the recorded KSPACING or k-point mesh "
                "(an automatic Gamma or Monkhorst-Pack mesh and the result's structure are needed)"
            )
        if spacing is not None and spacing > MAX_VASP_KSPACING:
            problems.append(
                f"k-point spacing {spacing:.3g} 1/Å is above the production {MAX_VASP_KSPACING:g}"
            )
    return problems
