"""Accuracy settings of the ABINIT DFPT backend, and which perturbations a request needs.

Energies in Hartree (ABINIT's unit), k-point spacing in 1/Å (2π included, as ``|b_i|``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from monty.json import MSONable

__all__ = [
    "PROPERTIES",
    "AbinitDFPTSettings",
    "Perturbations",
    "perturbations_for",
    "smoke_settings",
]

PROPERTIES: tuple[str, ...] = ("dielectric", "dielectric_total", "piezo", "elastic")
"""Requestable properties (the prediction task names): ε∞, ε0 (+ionic), e (relaxed), C."""


@dataclass(frozen=True)
class AbinitDFPTSettings(MSONable):
    """Numerical settings of one ABINIT DFPT calculation (norm-conserving PseudoDojo, q = Γ).

    ``ecut`` (Ha) plane-wave cutoff; ``kpt_spacing`` (1/Å, 2π included): the
    Monkhorst-Pack grid has ``ceil(|b_i| / kpt_spacing)`` points along reciprocal vector i
    (Γ-centred, or ABINIT's four symmetric shifts for an fcc primitive cell);
    ``tolvrs_gs``/``tolvrs_rf``: SCF potential-residual tolerances of the ground state and of
    the response (DFPT) datasets; ``tolwfr_ddk``: wavefunction tolerance of the (non-SCF) DDK;
    ``nstep``: maximum SCF/DFPT iterations; ``diemac``: model dielectric constant of the
    preconditioner; ``functional`` picks the PseudoDojo table (``PBE`` or ``LDA``);
    ``pseudo_dir``: folder holding the tables (Debian's ``abinit-data``);
    ``max_nstep``: the custodian handler doubles ``nstep`` up to this; ``max_errors``: custodian
    retries; ``timeout_s``: wall-clock limit of one ABINIT run (None: no limit);
    ``keep_wavefunctions``: keep the (large) WFK/1WF/POT files after a successful run.
    """

    ecut: float = 40.0
    kpt_spacing: float = 0.22
    tolvrs_gs: float = 1e-18
    tolvrs_rf: float = 1e-10
    tolwfr_ddk: float = 1e-20
    nstep: int = 60
    tolsym: float = 1e-5
    diemac: float = 12.0
    functional: str = "PBE"
    pseudo_dir: str = "/usr/share/abinit/psp"
    max_nstep: int = 400
    max_errors: int = 3
    timeout_s: float | None = None
    keep_wavefunctions: bool = False
    preset: str = "default"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (self.ecut > 0 and self.kpt_spacing > 0 and self.nstep > 0):
            raise ValueError("ecut, kpt_spacing and nstep must be positive")
        if self.functional.upper() not in ("PBE", "LDA"):
            raise ValueError(f"functional must be 'PBE' or 'LDA', got {self.functional!r}")

    def ngkpt(self, reciprocal_lengths: tuple[float, float, float]) -> tuple[int, int, int]:
        """Grid divisions for reciprocal vector lengths |b_i| in 1/Å (2π included)."""
        n = [max(1, math.ceil(b / self.kpt_spacing - 1e-6)) for b in reciprocal_lengths]
        return n[0], n[1], n[2]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the result document (``as_dict`` is monty's, with ``@class``)."""
        return asdict(self)


def smoke_settings(**overrides: Any) -> AbinitDFPTSettings:
    """A cheap preset for tests: low ``ecut``, a coarse grid, loose tolerances.

    It sacrifices convergence (ε∞ and e_ijk off by ~10-20 %, C by ~10 %) for a run of
    seconds to a minute on a 2-atom cell; never use its numbers as training data.
    """
    base = AbinitDFPTSettings(
        ecut=20.0,
        kpt_spacing=0.55,
        tolvrs_gs=1e-12,
        tolvrs_rf=1e-7,
        tolwfr_ddk=1e-14,
        nstep=40,
        preset="smoke",
    )
    return replace(base, **overrides)


@dataclass(frozen=True)
class Perturbations:
    """Which DFPT perturbations one request needs (all at q = Γ)."""

    ddk: bool
    efield: bool
    phonon: bool
    strain: bool

    @property
    def any_response(self) -> bool:
        """True if any response dataset is needed beyond the ground state."""
        return self.efield or self.phonon or self.strain


def perturbations_for(properties: tuple[str, ...] | list[str]) -> Perturbations:
    """The cheapest set of perturbations that yields ``properties`` (see :data:`PROPERTIES`).

    ``dielectric`` (ε∞): DDK + E-field. ``dielectric_total``: + phonons. ``piezo`` (clamped and
    relaxed ion): DDK + E-field + phonons + strain. ``elastic`` (clamped and relaxed ion):
    phonons + strain.
    """
    props = set(properties)
    unknown = props - set(PROPERTIES)
    if unknown or not props:
        raise ValueError(
            f"unknown or no properties {sorted(unknown)}; valid: {', '.join(PROPERTIES)}"
        )
    efield = bool(props & {"dielectric", "dielectric_total", "piezo"})
    phonon = bool(props & {"dielectric_total", "piezo", "elastic"})
    strain = bool(props & {"piezo", "elastic"})
    return Perturbations(ddk=efield, efield=efield, phonon=phonon, strain=strain)
