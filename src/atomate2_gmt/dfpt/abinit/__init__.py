"""ABINIT DFPT backend: ground state, DDK, E-field, Γ phonons and strain → anaddb tensors.

Public API: :class:`AbinitDFPTMaker` (and the presets :class:`AbinitDielectricMaker`,
:class:`AbinitPiezoElasticMaker`), :func:`run_abinit_dfpt`, :class:`AbinitDFPTSettings`,
:func:`smoke_settings`. Needs Debian's ``abinit`` and ``abinit-data`` (PseudoDojo NC pseudos).
"""

from atomate2_gmt.dfpt.abinit.makers import (
    AbinitDFPTMaker,
    AbinitDielectricMaker,
    AbinitPiezoElasticMaker,
)
from atomate2_gmt.dfpt.abinit.pseudos import MissingPseudopotentialError, find_pseudos
from atomate2_gmt.dfpt.abinit.runner import run_abinit_dfpt
from atomate2_gmt.dfpt.abinit.settings import (
    PROPERTIES,
    AbinitDFPTSettings,
    perturbations_for,
    smoke_settings,
)

__all__ = [
    "PROPERTIES",
    "AbinitDFPTMaker",
    "AbinitDFPTSettings",
    "AbinitDielectricMaker",
    "AbinitPiezoElasticMaker",
    "MissingPseudopotentialError",
    "find_pseudos",
    "perturbations_for",
    "run_abinit_dfpt",
    "smoke_settings",
]
