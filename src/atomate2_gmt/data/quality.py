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
  :data:`MAX_TOLVRS_RF`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MAX_KPT_SPACING",
    "MAX_TOLVRS_RF",
    "MIN_ABINIT_ECUT_HA",
    "PRODUCTION_PRESETS",
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


def production_problems(settings: dict[str, Any] | None, code: str | None = None) -> list[str]:
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
    return problems
