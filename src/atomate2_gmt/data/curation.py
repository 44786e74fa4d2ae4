"""Curation of implausible training records: a named, documented variant of the raw data.

The raw sets stay as they are; a training run may leave the records this rule names out of its
training and validation splits (``train --curate``). Its test split is never curated, and its
report gives the test figures on the raw split and on the part of it the rule keeps.

The rule, per task (:data:`CURATION_RULES`; other tasks are not curated), decided from the
shipped MP piezo set (688 records after the symmetry-residual filter):

- ``piezo``: |e|_F above :data:`MAX_PIEZO_NORM` C/m². The largest coefficients measured in any
  crystal, those of relaxor-PbTiO3 single crystals (e33 ≈ 20, e15 ≈ 10 C/m²), give |e|_F ≈ 29 C/m²
  for the full tensor. The two records beyond 30 C/m² are hypothetical P1 cells: Pr3NF6
  (mp-33319, 87.6 C/m²) and an SiO2 (mp-557873, 68.0 C/m², against 0.17 C/m² for α-quartz). The
  next largest is 21.5 C/m² (RbTaO3, mp-755018).

A rule "metallic elements only" (a metal has no piezoelectric tensor) was measured and rejected: it
removes 17 piezo and 11 dielectric records, and all 11 dielectric ones have a positive DFT gap in
the shipped set (CsAu 1.02 eV, TiSnPt 0.79, KCaBi 0.83, ScNiBi 0.18 eV: aurides, Zintl phases and
18-electron half-Heuslers are semiconductors). Composition alone does not tell a metal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from atomate2_gmt.data.records import TensorRecord

__all__ = [
    "CURATION_RULES",
    "MAX_PIEZO_NORM",
    "curate",
    "curation_problem",
]

MAX_PIEZO_NORM = 30.0
"""C/m²: a piezo record with a larger Frobenius norm |e|_F of the full tensor is implausible."""

CURATION_RULES: dict[str, str] = {
    "piezo": f"|e|_F > {MAX_PIEZO_NORM:g} C/m² (beyond any measured crystal)",
}
"""What ``curate`` removes, per task (tasks not named here are not curated)."""


def curation_problem(record: TensorRecord) -> str | None:
    """Why ``record`` is implausible as training data under :data:`CURATION_RULES`, or None."""
    if record.task == "piezo":
        norm = float(np.linalg.norm(record.tensor))
        if norm > MAX_PIEZO_NORM:
            return f"|e|_F = {norm:.1f} C/m² > {MAX_PIEZO_NORM:g} C/m²"
    return None


def curate(records: Sequence[TensorRecord]) -> tuple[list[TensorRecord], dict[str, str]]:
    """The records the rule keeps, and record id → reason for every record it removes."""
    kept: list[TensorRecord] = []
    removed: dict[str, str] = {}
    for record in records:
        problem = curation_problem(record)
        if problem is None:
            kept.append(record)
        else:
            removed[record.id] = problem
    return kept, removed
