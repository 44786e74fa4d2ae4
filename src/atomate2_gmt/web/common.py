"""What the web app's modules share: the values its record filters accept, the units it shows,
and the error for a key the stores do not hold. Below the services (:mod:`.service`,
:mod:`.records`, :mod:`.figures`), so that none of them imports another for these. (The
candidate filters' values are the query's: :mod:`atomate2_gmt.query`.)"""

from __future__ import annotations

from atomate2_gmt.tensors.tasks import DFPT_PART_KIND, TASK_SPECS

__all__ = ["CODES", "DFPT_PARTS", "PREDICTION_STATES", "UNITS", "NotFoundError"]

PREDICTION_STATES: tuple[str, ...] = ("successful", "failed")
CODES: tuple[str, ...] = ("abinit", "vasp")
DFPT_PARTS: tuple[str, ...] = tuple(DFPT_PART_KIND)
UNITS = {t: spec.unit_label or "dimensionless" for t, spec in TASK_SPECS.items()}


class NotFoundError(LookupError):
    """Nothing in the store has this key (the message names it)."""
