"""One record type for every data source: a structure and its tensor in the structure's frame.

A :class:`TensorRecord` holds the full Cartesian tensor (3x3, 3x3x3 or 3x3x3x3) expressed in the
Cartesian frame of its own ``structure`` (pymatgen ``Structure.lattice.matrix`` rows are the
lattice vectors in Å), the units of that tensor, where it came from and free-form metadata.
Units per task are fixed (:data:`TASK_UNITS`): dielectric tensors are dimensionless relative
permittivities, piezoelectric tensors are stress-charge ``e_ijk`` in C/m², elastic tensors are
``C_ijkl`` in GPa.

Also here: a deterministic seeded split (:func:`split_records`) and the content hash of a record
list (:func:`records_hash`) that checkpoints store as their training-data hash.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pymatgen.core import Structure

from atomate2_gmt.tensors.conventions import full_to_voigt, kind_of
from atomate2_gmt.tensors.tasks import TASK_SPECS, TASKS, check_task

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "RECORD_FORMAT",
    "TASKS",
    "TASK_RANK",
    "TASK_UNITS",
    "TensorRecord",
    "dielectric_symmetric_part",
    "record_hash",
    "records_hash",
    "split_records",
    "validate_task",
]

TASK_UNITS: dict[str, str] = {t: s.units for t, s in TASK_SPECS.items()}
"""The one unit string allowed for each task's tensor (from the task registry)."""

TASK_RANK: dict[str, int] = {t: s.rank for t, s in TASK_SPECS.items()}
"""Cartesian rank of each task's tensor (from the task registry)."""

RECORD_FORMAT = "atomate2_gmt.TensorRecord"
_RECORD_VERSION = 1


validate_task = check_task
"""Return a task name if it is one of :data:`TASKS`, else raise a ``ValueError`` naming them."""


def dielectric_symmetric_part(eps: np.ndarray) -> tuple[np.ndarray, float]:
    """Symmetric part (ε + εᵀ)/2 of a 3x3 dielectric tensor and the relative Frobenius size
    |ε − εᵀ|/(2|ε|) of the antisymmetric part it drops (0 for a zero tensor)."""
    eps = np.asarray(eps, dtype=np.float64)
    if eps.shape != (3, 3):
        raise ValueError(f"dielectric tensor must be 3x3, got shape {eps.shape}")
    norm = float(np.linalg.norm(eps))
    antisym = float(np.linalg.norm(0.5 * (eps - eps.T)))
    return 0.5 * (eps + eps.T), (antisym / norm if norm > 0 else 0.0)


def _json_safe(value: Any, where: str) -> Any:
    """Convert numpy scalars/arrays to Python values; refuse anything JSON cannot hold.

    Not monty's ``jsanitize``: it converts the same numpy values but silently turns non-string
    keys and unknown objects into strings and keeps NaN, where a record's provenance and meta
    must fail with the path of the bad value (``where``)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {key!r}")
            out[key] = _json_safe(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_json_safe(item, where) for item in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist(), where)
    if isinstance(value, np.generic):
        return _json_safe(value.item(), where)
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: non-finite number {value!r} is not JSON-safe")
        return value
    raise ValueError(f"{where}: value of type {type(value).__name__} is not JSON-safe")


@dataclass
class TensorRecord:
    """A crystal structure and one of its tensors, in the structure's own Cartesian frame.

    Attributes:
        structure: the crystal; its Cartesian frame (lattice-matrix rows, Å) is the tensor's frame.
        tensor: full Cartesian tensor, shape ``(3,) * TASK_RANK[task]``, float64, in ``units``.
        task: one of :data:`TASKS`.
        units: must equal ``TASK_UNITS[task]``.
        source: short name of the data source (e.g. ``"mp_legacy"``, ``"gmtnet_jarvis"``).
        id: identifier inside the source (e.g. ``"mp-149"``, ``"JVASP-1002"``).
        provenance: JSON-safe description of how the tensor was obtained (file, field, citation).
        meta: JSON-safe extra facts when known (formula, space group, crystal system, band gap).
    """

    structure: Structure
    tensor: np.ndarray
    task: str
    units: str
    source: str
    id: str
    provenance: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_task(self.task)
        if not isinstance(self.structure, Structure):
            raise ValueError(
                f"record {self.id!r}: structure must be a pymatgen Structure, "
                f"got {type(self.structure).__name__}"
            )
        expected_units = TASK_UNITS[self.task]
        if self.units != expected_units:
            raise ValueError(
                f"record {self.id!r}: task {self.task!r} tensors are in {expected_units!r}, "
                f"got units {self.units!r}"
            )
        tensor = np.array(self.tensor, dtype=np.float64)
        shape = (3,) * TASK_RANK[self.task]
        if tensor.shape != shape:
            raise ValueError(
                f"record {self.id!r}: task {self.task!r} needs a full Cartesian tensor of shape "
                f"{shape}, got shape {tensor.shape}"
            )
        if not np.all(np.isfinite(tensor)):
            raise ValueError(f"record {self.id!r}: tensor has non-finite entries")
        self.tensor = tensor
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"record id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(f"record {self.id!r}: source must be a non-empty string")
        self.provenance = _json_safe(dict(self.provenance), f"record {self.id!r} provenance")
        self.meta = _json_safe(dict(self.meta), f"record {self.id!r} meta")

    @property
    def kind(self) -> str:
        """Tensor kind for :mod:`atomate2_gmt.tensors.conventions` (dielectric/piezo/elastic)."""
        return kind_of(self.task)

    @property
    def voigt(self) -> np.ndarray:
        """Standard-order Voigt form (xx,yy,zz,yz,xz,xy; no factors of 2), same units and frame.

        Dielectric: 3x3 (unchanged); piezo: 3x6; elastic: 6x6.
        """
        return np.asarray(full_to_voigt(self.tensor, self.kind), dtype=np.float64)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (no pickle); inverse of :meth:`from_dict`."""
        return {
            "@format": RECORD_FORMAT,
            "version": _RECORD_VERSION,
            "id": self.id,
            "source": self.source,
            "task": self.task,
            "units": self.units,
            "tensor": self.tensor.tolist(),
            "structure": self.structure.as_dict(),
            "provenance": self.provenance,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorRecord:
        """Rebuild a record from :meth:`as_dict` output (e.g. after ``json.loads``)."""
        if not isinstance(d, dict):
            raise ValueError(f"a TensorRecord dict must be a dict, got {type(d).__name__}")
        if d.get("@format") != RECORD_FORMAT:
            raise ValueError(
                f"not a TensorRecord dict: '@format' is {d.get('@format')!r}, "
                f"expected {RECORD_FORMAT!r}"
            )
        if d.get("version") != _RECORD_VERSION:
            raise ValueError(
                f"unsupported TensorRecord version {d.get('version')!r} "
                f"(this code reads version {_RECORD_VERSION})"
            )
        missing = [
            k for k in ("id", "source", "task", "units", "tensor", "structure") if k not in d
        ]
        if missing:
            raise ValueError(f"TensorRecord dict lacks the keys {missing}")
        return cls(
            structure=Structure.from_dict(d["structure"]),
            tensor=np.asarray(d["tensor"], dtype=np.float64),
            task=d["task"],
            units=d["units"],
            source=d["source"],
            id=d["id"],
            provenance=dict(d.get("provenance", {})),
            meta=dict(d.get("meta", {})),
        )


# ---------------------------------------------------------------------------------------------
# deterministic split
# ---------------------------------------------------------------------------------------------


def split_records(
    records: Sequence[TensorRecord],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 32,
) -> tuple[list[TensorRecord], list[TensorRecord], list[TensorRecord]]:
    """Split records into (train, val, test), reproducibly for a given input order and seed.

    The list is shuffled with ``random.Random(seed).shuffle`` — the same permutation as
    ``random.seed(seed); random.shuffle(lst)`` (Mersenne Twister; identical on every platform)
    without touching the global random state. With ``n`` records, the last
    ``int(f_test * n)`` shuffled records are the test set, the ``int(f_val * n)`` before them the
    validation set, and all the others (including rounding leftovers) the training set.
    Defaults are the GMTNet paper's 80/10/10 with seed 32.
    """
    if len(fractions) != 3:
        raise ValueError(f"fractions must be (train, val, test), got {fractions!r}")
    f_train, f_val, f_test = (float(f) for f in fractions)
    if min(f_train, f_val, f_test) < 0 or not all(
        math.isfinite(f) for f in (f_train, f_val, f_test)
    ):
        raise ValueError(f"fractions must be finite and non-negative, got {fractions!r}")
    if abs(f_train + f_val + f_test - 1.0) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {sum(fractions)})")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    order = list(range(len(records)))
    random.Random(int(seed)).shuffle(order)
    n = len(order)
    n_test = int(f_test * n)
    n_val = int(f_val * n)
    n_train = n - n_val - n_test
    shuffled = [records[i] for i in order]
    return (
        shuffled[:n_train],
        shuffled[n_train : n_train + n_val],
        shuffled[n_train + n_val :],
    )


def split_by_source(
    records: Sequence[TensorRecord],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 32,
) -> tuple[list[TensorRecord], list[TensorRecord], list[TensorRecord]]:
    """:func:`split_records` applied to each ``source`` separately (in order of first appearance),
    the parts concatenated: adding a source leaves every other source's split unchanged, so test
    figures on one source stay comparable when another is added. One source: the same split as
    :func:`split_records`."""
    groups: dict[str, list[TensorRecord]] = {}
    for rec in records:
        groups.setdefault(rec.source, []).append(rec)
    train: list[TensorRecord] = []
    val: list[TensorRecord] = []
    test: list[TensorRecord] = []
    for group in groups.values():
        a, b, c = split_records(group, fractions, seed)
        train += a
        val += b
        test += c
    return train, val, test


# ---------------------------------------------------------------------------------------------
# content hash
# ---------------------------------------------------------------------------------------------

_HASH_DIGITS = 12


def _canon_float(x: float) -> str:
    """Float → text with 12 significant digits; -0 and +0 give the same text."""
    return format(float(x) + 0.0, f".{_HASH_DIGITS}g")


def _canon_array(values: Iterable[float] | np.ndarray) -> list[str]:
    return [_canon_float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def _canon_species(site: Any) -> str:
    return ",".join(
        f"{sp}:{_canon_float(occ)}"
        for sp, occ in sorted(site.species.items(), key=lambda item: str(item[0]))
    )


def _canonical_record(record: TensorRecord) -> dict[str, Any]:
    structure = record.structure
    return {
        "id": record.id,
        "source": record.source,
        "task": record.task,
        "units": record.units,
        "lattice": _canon_array(structure.lattice.matrix),
        "species": [_canon_species(site) for site in structure],
        "frac_coords": _canon_array(structure.frac_coords),
        "tensor": _canon_array(record.tensor),
    }


def record_hash(record: TensorRecord) -> str:
    """sha256 (hex) of one record's identity, structure (lattice, species, fractional
    coordinates) and tensor, floats rounded to 12 significant digits. Provenance/meta excluded."""
    text = json.dumps(_canonical_record(record), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def records_hash(records: Iterable[TensorRecord]) -> str:
    """Training-data hash: sha256 (hex) over the sorted :func:`record_hash` of every record.

    Independent of record order (the same data loaded in another order hashes the same);
    sensitive to any added, removed or changed record, duplicates included.
    """
    digests = sorted(record_hash(r) for r in records)
    h = hashlib.sha256()
    h.update(f"{RECORD_FORMAT}/hash-v1/{len(digests)}\n".encode())
    for digest in digests:
        h.update(digest.encode("ascii"))
        h.update(b"\n")
    return h.hexdigest()
