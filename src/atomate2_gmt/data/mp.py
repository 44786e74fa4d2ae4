"""The Materials Project tensors shipped with the package (``data/datasets/mp_legacy_*.json.gz``).

DFT tensors of the Materials Project as released in the matminer datasets
``dielectric_constant`` (Petousis et al., Sci. Data 4, 160134, 2017), ``piezoelectric_tensor``
(de Jong et al., Sci. Data 2, 150053, 2015) and ``elastic_tensor_2015`` (de Jong et al.,
Sci. Data 2, 150009, 2015); licence CC BY 4.0. See ``data/datasets/README.md``.

Every record's tensor is in its structure's Cartesian frame. Records whose tensor is not invariant
under the structure's point group (label noise, mostly an old axis convention) are filtered out
by their symmetry residual ``max_g |g·T − T|_F / |T|_F`` (:data:`RESIDUAL_THRESHOLDS`).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
from pymatgen.core import Structure

from atomate2_gmt.data.records import (
    TASK_UNITS,
    TensorRecord,
    dielectric_symmetric_part,
    validate_task,
)
from atomate2_gmt.tensors.conventions import crystal_system, voigt_to_full
from atomate2_gmt.tensors.symmetry import point_group_info, symmetry_residual
from atomate2_gmt.tensors.tasks import TASK_SPECS

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "MP_NEWER_SOURCE",
    "MP_NEWER_SOURCES",
    "MP_SOURCE",
    "MP_SOURCES",
    "RESIDUAL_SYMPREC",
    "RESIDUAL_THRESHOLDS",
    "MPDataset",
    "MPSource",
    "crystal_system_from_space_group",
    "load_mp",
    "load_mp_newer",
    "structures_by_crystal_system",
]

MP_SOURCE = "mp_legacy"

MP_NEWER_SOURCE = "mp_newer"

_PETOUSIS = (
    "I. Petousis et al., High-throughput screening of inorganic compounds for the discovery of "
    "novel dielectric and optical materials, Sci. Data 4, 160134 (2017)"
)
_DE_JONG_PIEZO = (
    "M. de Jong et al., A database to enable discovery and design of piezoelectric materials, "
    "Sci. Data 2, 150053 (2015)"
)
_DE_JONG_ELASTIC = (
    "M. de Jong et al., Charting the complete elastic properties of inorganic crystalline "
    "compounds, Sci. Data 2, 150009 (2015)"
)


@dataclass(frozen=True)
class MPSource:
    """Where one task's shipped MP tensors are and whom to cite.

    ``file``: the shipped file (``data/datasets/``); ``field``: the field of each record that
    holds the task's tensor (its symmetry residual filters the records); ``origin``: how the
    data reached the file; ``citation``: the paper of the data; ``residual_shipped``: the
    file's ``sym_residual`` is that of ``field`` (else it is computed at load, with the same
    definition and ``symprec``).
    """

    file: str
    field: str
    origin: str
    citation: str
    residual_shipped: bool = True


MP_SOURCES: Mapping[str, MPSource] = MappingProxyType(
    {
        "dielectric": MPSource(
            "mp_legacy_dielectric.json.gz",
            "eps_electronic",
            "Materials Project via matminer dataset 'dielectric_constant'",
            _PETOUSIS,
            residual_shipped=False,  # the file's sym_residual is that of eps_total
        ),
        "dielectric_total": MPSource(
            "mp_legacy_dielectric.json.gz",
            "eps_total",
            "Materials Project via matminer dataset 'dielectric_constant'",
            _PETOUSIS,
        ),
        "piezo": MPSource(
            "mp_legacy_piezo.json.gz",
            "piezo_cartesian_C_m2",
            "Materials Project via matminer dataset 'piezoelectric_tensor'",
            _DE_JONG_PIEZO,
        ),
        "elastic": MPSource(
            "mp_legacy_elastic.json.gz",
            "elastic_voigt_GPa",
            "Materials Project via matminer dataset 'elastic_tensor_2015'",
            _DE_JONG_ELASTIC,
        ),
    }
)
"""Task → its shipped legacy MP data (both dielectric tasks read the same file)."""

MP_NEWER_SOURCES: Mapping[str, MPSource] = MappingProxyType(
    {
        "elastic": MPSource(
            "mp_newer_elastic.json.gz",
            "elastic_voigt_GPa",
            "Materials Project, republished (data/datasets/README.md)",
            _DE_JONG_ELASTIC,
        ),
    }
)
"""Task → its shipped further MP tensors, none the same material as a legacy record: materials
added to MP after the 2015 set, and records of the newer MP elasticity release."""

RESIDUAL_THRESHOLDS: Mapping[str, float] = MappingProxyType(
    {task: spec.residual_tolerance for task, spec in TASK_SPECS.items()}
)
"""A record is kept when its symmetry residual is strictly below this (relative, Frobenius):
the tolerance of the task's tensor kind (:class:`~atomate2_gmt.tensors.tasks.TensorKind`)."""

RESIDUAL_SYMPREC = 0.01
"""spglib tolerance (Å) of the point-group operations used for the residual (as shipped)."""

_META_FIELDS = (
    "formula",
    "space_group",
    "point_group",
    "band_gap_eV",
    "n",
    "poly_total",
    "eij_max",
    "K_VRH",
    "G_VRH",
)
_PIEZO_AGREEMENT_TOL = 1e-8  # C/m^2, between piezo_cartesian_C_m2 and piezo_voigt_C_m2


@dataclass
class MPDataset:
    """The records of one task after the symmetry-residual filter, and what was left out.

    Attributes:
        task: one of ``TASKS``.
        records: kept records, in file order.
        n_total: records in the shipped file.
        threshold: residual threshold applied (None when unfiltered).
        excluded: material id → symmetry residual, for every record left out.
        residual_field: the tensor the residual was measured on.
        residuals: material id → symmetry residual, for every record of the file.
    """

    task: str
    records: list[TensorRecord]
    n_total: int
    threshold: float | None
    excluded: dict[str, float] = field(default_factory=dict)
    residual_field: str = ""
    residuals: dict[str, float] = field(default_factory=dict)

    @property
    def n_kept(self) -> int:
        """Number of records kept."""
        return len(self.records)

    @property
    def n_excluded(self) -> int:
        """Number of records left out by the filter."""
        return len(self.excluded)

    def __len__(self) -> int:
        return len(self.records)


crystal_system_from_space_group = crystal_system
"""Crystal system of an international space-group number (1–230); see
:func:`atomate2_gmt.tensors.conventions.crystal_system`."""


@cache
def _raw_records(filename: str) -> tuple[dict[str, Any], ...]:
    """Parsed shipped file (cached per process; callers must not mutate the dicts)."""
    path = resources.files("atomate2_gmt.data").joinpath("datasets", filename)
    with path.open("rb") as handle, gzip.open(handle, "rt", encoding="utf-8") as text:
        data = json.load(text)
    if not isinstance(data, list):
        raise ValueError(f"{filename}: expected a JSON list of records, got {type(data).__name__}")
    return tuple(data)


@cache
def _electronic_residuals() -> dict[str, float]:
    """Symmetry residual of ``eps_electronic`` per material id (the shipped residual of the
    dielectric file is measured on ``eps_total``); computed once per process."""
    out: dict[str, float] = {}
    for raw in _raw_records(MP_SOURCES["dielectric"].file):
        structure = Structure.from_dict(raw["structure"])
        tensor = np.asarray(raw["eps_electronic"], dtype=np.float64)
        info = point_group_info(structure, symprec=RESIDUAL_SYMPREC)
        out[raw["material_id"]] = float(symmetry_residual(tensor, info, "dielectric"))
    return out


def _tensor_of(task: str, raw: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Full Cartesian tensor of ``task`` from a shipped record, plus provenance notes."""
    mid = raw.get("material_id", "?")
    notes: dict[str, Any] = {}
    fname = MP_SOURCES[task].field
    if fname not in raw:
        raise ValueError(f"{MP_SOURCES[task].file} record {mid}: missing tensor field {fname!r}")
    if task in ("dielectric", "dielectric_total"):
        eps = np.asarray(raw[fname], dtype=np.float64)
        if eps.shape != (3, 3):
            raise ValueError(f"record {mid}: {fname} must be 3x3, got shape {eps.shape}")
        sym, notes["antisymmetric_part_rel"] = dielectric_symmetric_part(eps)
        return sym, notes
    if task == "piezo":
        cart = np.asarray(raw["piezo_cartesian_C_m2"], dtype=np.float64)
        voigt = np.asarray(raw["piezo_voigt_C_m2"], dtype=np.float64)
        if cart.shape != (3, 3, 3) or voigt.shape != (3, 6):
            raise ValueError(
                f"record {mid}: piezo tensors must be 3x3x3 and 3x6, got {cart.shape} and "
                f"{voigt.shape}"
            )
        from_voigt = np.asarray(voigt_to_full(voigt, "piezo"), dtype=np.float64)
        diff = float(np.max(np.abs(from_voigt - cart)))
        if diff > _PIEZO_AGREEMENT_TOL:
            raise ValueError(
                f"record {mid}: piezo_cartesian_C_m2 and piezo_voigt_C_m2 disagree by {diff:.3g} "
                "C/m^2"
            )
        asym = float(np.max(np.abs(cart - cart.transpose(0, 2, 1))))
        if asym > _PIEZO_AGREEMENT_TOL:
            raise ValueError(f"record {mid}: piezo tensor is not symmetric in j,k ({asym:.3g})")
        return cart, notes
    # elastic
    c_voigt = np.asarray(raw[fname], dtype=np.float64)
    if c_voigt.shape != (6, 6):
        raise ValueError(f"record {mid}: elastic_voigt_GPa must be 6x6, got {c_voigt.shape}")
    asym = float(np.max(np.abs(c_voigt - c_voigt.T)))
    if asym > 0:
        notes["voigt_asymmetry_GPa"] = asym
    return np.asarray(voigt_to_full(0.5 * (c_voigt + c_voigt.T), "elastic")), notes


def _provenance(task: str, raw: dict[str, Any], residual: float, residual_field: str) -> dict:
    source = MP_SOURCES[task]
    prov: dict[str, Any] = {
        "dataset": source.file,
        "field": source.field,
        "frame": raw.get("frame"),
        "sym_residual": residual,
        "residual_field": residual_field,
        "origin": source.origin,
        "citation": source.citation,
        "licence": "CC-BY-4.0",
    }
    if "source_column" in raw:
        prov["source_column"] = raw["source_column"]
    return prov


def _meta(raw: dict[str, Any]) -> dict[str, Any]:
    meta = {k: raw[k] for k in _META_FIELDS if raw.get(k) is not None}
    sg = raw.get("space_group")
    if isinstance(sg, int):
        meta["crystal_system"] = crystal_system_from_space_group(sg)
    return meta


def load_mp(task: str, filter_residual: bool = True) -> MPDataset:
    """Load the shipped Materials Project records of ``task``.

    Args:
        task: ``dielectric`` (ε∞ = ``eps_electronic``), ``dielectric_total`` (ε0 = ``eps_total``),
            ``piezo`` (``piezo_cartesian_C_m2``, C/m²) or ``elastic`` (``elastic_voigt_GPa``,
            GPa, returned as the full 3x3x3x3 tensor).
        filter_residual: keep only records whose symmetry residual is below
            ``RESIDUAL_THRESHOLDS[task]``. The residual is that of the task's own tensor: the
            shipped ``sym_residual`` (measured on ``eps_total``, the piezo tensor or the elastic
            tensor), except for ``dielectric``, whose ε∞ residual is computed here (once per
            process) with the same definition and ``symprec``.

    Returns:
        An :class:`MPDataset`; records are in file order, tensors in each structure's frame.
        Dielectric tensors are the symmetric part of the shipped 3x3 (the removed antisymmetric
        part's relative size is in ``provenance["antisymmetric_part_rel"]``).
    """
    validate_task(task)
    source = MP_SOURCES[task]
    raws = _raw_records(source.file)
    residual_field = source.field
    if source.residual_shipped:
        residual_of = {r["material_id"]: float(r["sym_residual"]) for r in raws}
    else:
        residual_of = _electronic_residuals()
    threshold = RESIDUAL_THRESHOLDS[task] if filter_residual else None
    records: list[TensorRecord] = []
    excluded: dict[str, float] = {}
    residuals: dict[str, float] = {}
    for raw in raws:
        mid = raw["material_id"]
        residual = residual_of[mid]
        residuals[mid] = residual
        if threshold is not None and not residual < threshold:
            excluded[mid] = residual
            continue
        tensor, notes = _tensor_of(task, raw)
        provenance = _provenance(task, raw, residual, residual_field)
        provenance.update(notes)
        records.append(
            TensorRecord(
                structure=Structure.from_dict(raw["structure"]),
                tensor=tensor,
                task=task,
                units=TASK_UNITS[task],
                source=MP_SOURCE,
                id=mid,
                provenance=provenance,
                meta=_meta(raw),
            )
        )
    return MPDataset(
        task=task,
        records=records,
        n_total=len(raws),
        threshold=threshold,
        excluded=excluded,
        residual_field=residual_field,
        residuals=residuals,
    )


def _newer_id(raw: dict[str, Any]) -> str:
    """Record id of a newer record: its mp-id, else ``<repository>:<id in that repository>``."""
    if raw.get("mp_id"):
        return str(raw["mp_id"])
    return f"{str(raw['source']).split(':')[0]}:{raw['source_id']}"


def load_mp_newer(task: str, filter_residual: bool = True) -> MPDataset:
    """Load the further Materials Project records of ``task`` (``MP_NEWER_SOURCES``; elastic only).

    Every tensor is in its structure's frame (the IEEE frame),
    integer-rounded GPa, as the republishing repositories stored them
    (``data/datasets/README.md``); ``source`` is ``"mp_newer"``, ``provenance["repository"]``
    names the repository and file. The same symmetry
    filter as :func:`load_mp` applies (every shipped record passes it).
    """
    validate_task(task)
    if task not in MP_NEWER_SOURCES:
        raise ValueError(
            f"no further MP records are shipped for task {task!r} (only for: "
            f"{', '.join(MP_NEWER_SOURCES)})"
        )
    source = MP_NEWER_SOURCES[task]
    filename = source.file
    raws = _raw_records(filename)
    threshold = RESIDUAL_THRESHOLDS[task] if filter_residual else None
    records: list[TensorRecord] = []
    excluded: dict[str, float] = {}
    residuals: dict[str, float] = {}
    for raw in raws:
        rid = _newer_id(raw)
        residual = float(raw["sym_residual"])
        residuals[rid] = residual
        if threshold is not None and not residual < threshold:
            excluded[rid] = residual
            continue
        tensor, notes = _tensor_of(task, {**raw, "material_id": rid})
        provenance: dict[str, Any] = {
            "dataset": filename,
            "field": source.field,
            "frame": raw.get("frame"),
            "sym_residual": residual,
            "residual_field": source.field,
            "repository": raw["source"],
            "origin": source.origin,
            "citation": source.citation,
            "licence": "CC-BY-4.0",
            "precision": "integer GPa",
            **notes,
        }
        meta = {k: raw[k] for k in ("formula", "space_group", "crystal_system") if raw.get(k)}
        records.append(
            TensorRecord(
                structure=Structure.from_dict(raw["structure"]),
                tensor=tensor,
                task=task,
                units=TASK_UNITS[task],
                source=MP_NEWER_SOURCE,
                id=rid,
                provenance=provenance,
                meta=meta,
            )
        )
    return MPDataset(
        task=task,
        records=records,
        n_total=len(raws),
        threshold=threshold,
        excluded=excluded,
        residual_field=source.field,
        residuals=residuals,
    )


@cache
def _structures_by_crystal_system(per_system: int) -> tuple[tuple[str, tuple[str, ...]], ...]:
    pool: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
    for filename in sorted({s.file for s in MP_SOURCES.values()}):
        for raw in _raw_records(filename):
            system = crystal_system_from_space_group(int(raw["space_group"]))
            pool.setdefault(system, []).append(
                (len(raw["structure"]["sites"]), raw["material_id"], raw["structure"])
            )
    out = []
    for system in sorted(pool):
        chosen: dict[str, str] = {}
        for _, mid, struct in sorted(pool[system], key=lambda t: (t[0], t[1])):
            chosen.setdefault(mid, json.dumps(struct))
            if len(chosen) == per_system:
                break
        out.append((system, tuple(chosen.values())))
    return tuple(out)


def structures_by_crystal_system(per_system: int = 1) -> dict[str, list[Structure]]:
    """The ``per_system`` smallest shipped MP structures (fewest sites, then material id) of each
    crystal system, from all legacy files: real crystals for checks such as equivariance."""
    return {
        system: [Structure.from_dict(json.loads(text)) for text in texts]
        for system, texts in _structures_by_crystal_system(per_system)
    }
