"""The task registry: the one place that says which tensors the project predicts.

A *task* is what a model predicts and what a prediction document stores: ``dielectric`` (the
electronic, high-frequency ε∞), ``dielectric_total`` (the static ε0 = ε∞ + ionic part),
``piezo`` (the relaxed-ion stress-charge e_ijk) and ``elastic`` (the relaxed-ion stiffness
C_ijkl). Each task predicts a tensor *kind* (its order and intrinsic symmetry), is trained on one
*DFPT part* and writes flattened *derived fields* that queries sort on. Every per-task table of the
package (units, ranks, training parts, derived fields, sort defaults, metal exclusion, screening
defaults) is derived from :data:`TASK_SPECS`; adding a task means adding a :class:`TaskSpec` here
(and, for a new kind, a :class:`TensorKind`).

Units: dielectric dimensionless, piezo (stress-charge e_ijk) C/m², elastic GPa.
No torch, no jobflow: every layer may import this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DFPT_PART_KIND",
    "KINDS",
    "KIND_RANK",
    "KIND_SPECS",
    "TASKS",
    "TASK_SPECS",
    "DerivedField",
    "TaskSpec",
    "TensorKind",
    "check_task",
    "task_spec",
]


@dataclass(frozen=True)
class TensorKind:
    """A tensor kind: its Cartesian rank, its units and what a believable tensor of it is.

    ``units`` is the unit string stored with every tensor of this kind; ``unit_label`` the form
    shown in tables and plot axes ("" for dimensionless).

    ``residual_tolerance``: the largest accepted relative symmetry residual
    ``|T − P T|_F / max(|T|_F, residual_floor)`` of a label (an MP record, a DFPT result); the
    ``residual_floor`` (task units) keeps round-off on a tensor that should vanish (the piezo
    tensor of a centrosymmetric crystal) from counting as a large relative error.

    ``bounded`` (``eigenvalue`` or ``component``) and ``part_bounds`` (DFPT part → largest
    accepted value): the physical bound of each DFPT part of this kind. A tensor beyond it is a
    broken model, checkpoint or calculation, never a discovery (reasons at :data:`KIND_SPECS`).
    """

    name: str
    rank: int
    units: str
    unit_label: str
    residual_tolerance: float
    residual_floor: float
    bounded: str
    part_bounds: Mapping[str, float]

    @property
    def unit_suffix(self) -> str:
        """`` C/m²``-style suffix of a value ("" for dimensionless)."""
        return f" {self.unit_label}" if self.unit_label else ""


@dataclass(frozen=True)
class DerivedField:
    """A scalar derived from a task's tensor and flattened to the top of a prediction document.

    ``unit_label``: its units as shown ("" for dimensionless); ``sortable``: numeric, so a query
    may sort on it (booleans are filters, not sort keys); ``alias``: short sort name (or None);
    ``quantity``: the quantity of the tensor kind it is (``atomate2_gmt.schemas.derived``
    computes each kind's quantities; None: the field's own name, e.g. ``e_ij_max``).
    """

    name: str
    unit_label: str
    description: str
    sortable: bool = True
    alias: str | None = None
    quantity: str | None = None

    @property
    def computes(self) -> str:
        """The kind quantity this field holds (``quantity``, else the field's name)."""
        return self.quantity or self.name


@dataclass(frozen=True)
class TaskSpec:
    """One prediction task: what it predicts, what it is trained on and what it writes."""

    name: str
    kind: str
    description: str
    dfpt_part: str
    """The DFPT part (see :data:`DFPT_PART_KIND`) that is this task's training target."""
    derived: tuple[DerivedField, ...]
    default_sort: str
    """The derived field a query for this task sorts on when none is given."""
    excludes_metals: bool
    """A metal has no such tensor (ε diverges, e is screened): queries leave likely metals out."""
    screen_default: bool
    """Predicted by a screening job that is given no task list."""

    def __post_init__(self) -> None:
        if self.kind not in KIND_SPECS:
            raise ValueError(f"task {self.name!r}: unknown tensor kind {self.kind!r}")
        if DFPT_PART_KIND.get(self.dfpt_part) != self.kind:
            raise ValueError(
                f"task {self.name!r}: DFPT part {self.dfpt_part!r} is not a {self.kind} part"
            )
        if self.default_sort not in self.sort_fields:
            raise ValueError(
                f"task {self.name!r}: default sort {self.default_sort!r} is not a sort field"
            )

    @property
    def rank(self) -> int:
        """Cartesian rank (order) of the predicted tensor: 2, 3 or 4."""
        return KIND_SPECS[self.kind].rank

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the full Cartesian tensor, ``(3,) * rank``."""
        return (3,) * self.rank

    @property
    def units(self) -> str:
        """The unit string stored with the tensor (``dimensionless``, ``C/m^2``, ``GPa``)."""
        return KIND_SPECS[self.kind].units

    @property
    def unit_label(self) -> str:
        """Units as shown in tables and plot axes ("" for dimensionless)."""
        return KIND_SPECS[self.kind].unit_label

    @property
    def unit_suffix(self) -> str:
        """`` (C/m²)``-style suffix for table headers ("" for dimensionless)."""
        return f" ({self.unit_label})" if self.unit_label else ""

    @property
    def residual_tolerance(self) -> float:
        """The largest accepted relative symmetry residual of a label (its kind's)."""
        return KIND_SPECS[self.kind].residual_tolerance

    @property
    def bound(self) -> float:
        """The physical bound of the tensor (its training part's, :class:`TensorKind`)."""
        return KIND_SPECS[self.kind].part_bounds[self.dfpt_part]

    @property
    def derived_fields(self) -> tuple[str, ...]:
        """Names of the derived fields written when the prediction succeeded."""
        return tuple(f.name for f in self.derived)

    @property
    def sort_fields(self) -> tuple[str, ...]:
        """Derived fields a query may sort on (the numeric ones)."""
        return tuple(f.name for f in self.derived if f.sortable)

    @property
    def sort_aliases(self) -> dict[str, str]:
        """Short sort name → derived field (e.g. ``eig_max`` → ``dielectric_eig_max``)."""
        return {f.alias: f.name for f in self.derived if f.alias is not None}


KIND_SPECS: Mapping[str, TensorKind] = MappingProxyType(
    {
        # ε∞ eigenvalues ≤ 1000: the largest in the shipped Materials Project data is 381 (a
        # small-gap semiconductor, where semi-local DFT overestimates ε∞); the largest measured
        # electronic permittivities (PbTe, PbSe) are about 30–40. ε0 and ionic eigenvalues
        # ≤ 10⁴: the shipped MP maximum is 427; ferroelectrics and incipient ferroelectrics
        # reach a few thousand (BaTiO3, PMN-PT near their transitions).
        "dielectric": TensorKind(
            "dielectric", 2, "dimensionless", "",
            residual_tolerance=5e-2, residual_floor=1.0, bounded="eigenvalue",
            part_bounds=MappingProxyType({
                "dielectric_electronic": 1e3,  # ε∞, clamped ions
                "dielectric_ionic": 1e4,  # lattice (phonon) contribution
                "dielectric_total": 1e4,  # ε0 = ε∞ + ionic
            }),
        ),
        # |e_ijk| ≤ 100 C/m² for every part: the shipped MP maximum is 48.6 C/m², the largest
        # measured values (PMN-PT, PZN-PT single crystals) are about 20–30 C/m².
        "piezo": TensorKind(
            "piezo", 3, "C/m^2", "C/m²",
            residual_tolerance=1e-2, residual_floor=1e-2, bounded="component",
            part_bounds=MappingProxyType({
                "piezo_electronic": 100.0,  # clamped-ion e_ijk
                "piezo_ionic": 100.0,  # internal-strain part
                "piezo_total": 100.0,  # relaxed-ion = electronic + ionic (what MP reports)
            }),
        ),
        # |C_ijkl| ≤ 2000 GPa: diamond, the stiffest known material, has C11 ≈ 1080 GPa; the
        # shipped MP maxima are 938 GPa (legacy) and 1191 GPa (newer release).
        "elastic": TensorKind(
            "elastic", 4, "GPa", "GPa",
            residual_tolerance=5e-2, residual_floor=1.0, bounded="component",
            part_bounds=MappingProxyType({
                "elastic_clamped": 2000.0,  # clamped-ion C_ijkl
                "elastic_relaxed": 2000.0,  # relaxed-ion C_ijkl
            }),
        ),
    }
)  # fmt: skip
"""Tensor kind → :class:`TensorKind`. The residual tolerances are those of the Materials
Project label filter (5 % dielectric and elastic, 1 % piezo): a DFPT result passes where an
equally clean MP record would."""

KINDS: tuple[str, ...] = tuple(KIND_SPECS)
KIND_RANK: Mapping[str, int] = MappingProxyType({k: s.rank for k, s in KIND_SPECS.items()})
"""Cartesian rank of each tensor kind."""

DFPT_PART_KIND: Mapping[str, str] = MappingProxyType(
    {part: kind for kind, spec in KIND_SPECS.items() for part in spec.part_bounds}
)
"""DFPT part (what a DFPT backend reports) → tensor kind."""


def _dielectric_fields(prefix: str, what: str) -> tuple[DerivedField, ...]:
    return (
        DerivedField(f"{prefix}_mean", "", f"tr({what})/3", alias="mean", quantity="mean"),
        DerivedField(
            f"{prefix}_eig_max",
            "",
            f"largest eigenvalue of {what}",
            alias="eig_max",
            quantity="eig_max",
        ),
    )


_SPECS = (
    TaskSpec(
        name="dielectric",
        kind="dielectric",
        description="electronic (high-frequency) permittivity ε∞, dimensionless",
        dfpt_part="dielectric_electronic",
        derived=_dielectric_fields("dielectric", "ε∞"),
        default_sort="dielectric_eig_max",
        excludes_metals=True,
        screen_default=True,
    ),
    TaskSpec(
        name="dielectric_total",
        kind="dielectric",
        description="static permittivity ε0 = ε∞ + ionic part, dimensionless",
        dfpt_part="dielectric_total",
        derived=_dielectric_fields("dielectric_total", "ε0"),
        default_sort="dielectric_total_eig_max",
        excludes_metals=True,
        screen_default=False,
    ),
    TaskSpec(
        name="piezo",
        kind="piezo",
        description="relaxed-ion stress-charge piezoelectric tensor e_ijk, C/m²",
        dfpt_part="piezo_total",
        derived=(
            DerivedField(
                "e_ij_max", "C/m²", "largest singular value of Voigt e_iJ in the IEEE 176 frame"
            ),
            DerivedField(
                "e_long_max", "C/m²", "largest longitudinal response max_n e_ijk n_i n_j n_k"
            ),
            DerivedField("e_norm", "C/m²", "Frobenius norm of the full Cartesian e_ijk"),
            DerivedField(
                "e_ij_abs_max",
                "C/m²",
                "largest |e_iJ| of the standard Voigt e_iJ in the IEEE 176 frame (JARVIS-DFT's "
                "max|e_ij|)",
                alias="abs_max",
            ),
        ),
        default_sort="e_ij_max",
        excludes_metals=True,
        screen_default=True,
    ),
    TaskSpec(
        name="elastic",
        kind="elastic",
        description="relaxed-ion stiffness tensor C_ijkl, GPa",
        dfpt_part="elastic_relaxed",
        derived=(
            DerivedField("K_VRH", "GPa", "Voigt-Reuss-Hill bulk modulus"),
            DerivedField("G_VRH", "GPa", "Voigt-Reuss-Hill shear modulus"),
            DerivedField("AU", "", "universal elastic anisotropy"),
            DerivedField("born_stable", "", "Born mechanical stability", sortable=False),
        ),
        default_sort="K_VRH",
        excludes_metals=False,
        screen_default=True,
    ),
)

TASK_SPECS: Mapping[str, TaskSpec] = MappingProxyType({s.name: s for s in _SPECS})
"""Task name → :class:`TaskSpec`, in the package's canonical task order."""

TASKS: tuple[str, ...] = tuple(TASK_SPECS)
"""Task names in canonical order (documents, tables and CLI listings follow it)."""


def task_spec(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of task ``name``; a ``ValueError`` listing the valid tasks if none."""
    try:
        return TASK_SPECS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}") from None


def check_task(name: str) -> str:
    """Return ``name`` if it is a task, else raise the ``ValueError`` of :func:`task_spec`."""
    return task_spec(name).name
