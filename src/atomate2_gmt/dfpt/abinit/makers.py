"""jobflow Makers of the ABINIT DFPT backend.

Every DFPT backend follows one interface: ``Maker.make(structure, candidate_id=None)`` returns a
job whose output is a :class:`~atomate2_gmt.schemas.dfpt.DFPTResultDoc`. A calculation failure
is recorded as ``state="failed"`` in that document; the job itself never fails for it, so
sibling DFPT jobs in a flow are not blocked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from jobflow import Maker, job

from atomate2_gmt.dfpt.abinit.runner import run_abinit_dfpt
from atomate2_gmt.dfpt.abinit.settings import AbinitDFPTSettings
from atomate2_gmt.routing import job_role
from atomate2_gmt.schemas.dfpt import DFPTResultDoc

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["AbinitDFPTMaker", "AbinitDielectricMaker", "AbinitPiezoElasticMaker"]


@dataclass
class AbinitDFPTMaker(Maker):
    """ABINIT DFPT (q = Γ) for ``properties`` (``dielectric``, ``dielectric_total``, ``piezo``,
    ``elastic``) with ``settings``; runs in the job's folder.

    Output: ``DFPTResultDoc`` with the computed parts (ε∞/ionic/ε0, e clamped/ionic/relaxed
    in C/m², C clamped/relaxed in GPa), full Cartesian in the frame of the structure as given.
    """

    name: str = "abinit dfpt"
    properties: tuple[str, ...] = ("dielectric_total", "piezo", "elastic")
    settings: AbinitDFPTSettings = field(default_factory=AbinitDFPTSettings)

    @job(output_schema=DFPTResultDoc, **job_role("dfpt_serial"))
    def make(self, structure: Structure, candidate_id: str | None = None) -> DFPTResultDoc:
        """Run the calculation in the current folder and return its document."""
        from jobflow import CURRENT_JOB

        doc = run_abinit_dfpt(
            structure, self.properties, self.settings, Path.cwd(), candidate_id=candidate_id
        )
        current = CURRENT_JOB.job
        if current is not None:
            doc.job_uuid = str(current.uuid)
        return doc


@dataclass
class AbinitDielectricMaker(AbinitDFPTMaker):
    """ε∞ and ε0 only: ground state, DDK, E-field and Γ phonons; no strain."""

    name: str = "abinit dfpt dielectric"
    properties: tuple[str, ...] = ("dielectric_total",)


@dataclass
class AbinitPiezoElasticMaker(AbinitDFPTMaker):
    """Piezoelectric and elastic tensors (and ε, which they need anyway)."""

    name: str = "abinit dfpt piezo elastic"
    properties: tuple[str, ...] = ("piezo", "elastic")
