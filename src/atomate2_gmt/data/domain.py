"""Applicability domain: how far a crystal lies from the shipped training data of a task.

A crystal is described by its chemistry as the model sees it and by its density: the mean over
its sites of the model's 92-d CGCNN atom features (group, period, electronegativity, radius,
valence electrons, ionisation energy, electron affinity, block, atomic volume, one-hot bins),
followed by ln(volume per atom / Å³). Its ``domain_distance`` for a task is the mean Euclidean
distance to its :data:`K_NEIGHBOURS` nearest crystals among the task's shipped Materials Project
records, divided by the 99th percentile of the same leave-one-out distance of those records
themselves. So 1.0 means "as far from the data as the most isolated 1 % of the training crystals";
:data:`IN_DOMAIN_MAX` is the cut that ``atomate2-gmt query --in-domain`` applies. The distance
is invariant to the file's orientation, origin and cell choice (it depends on the composition
and density only).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pymatgen.core import Structure

__all__ = [
    "IN_DOMAIN_MAX",
    "K_NEIGHBOURS",
    "crystal_descriptor",
    "domain_distances",
    "domain_reference",
]

K_NEIGHBOURS = 5
"""Neighbours averaged in the distance."""
IN_DOMAIN_MAX = 1.0
"""Largest ``domain_distance`` counted as inside the domain of the training data."""


def crystal_descriptor(atomic_numbers: Sequence[int], volume: float) -> np.ndarray:
    """(93,) descriptor: mean CGCNN features of the sites and ln(volume per atom / Å³)."""
    from atomate2_gmt.model.embedding import cgcnn_table

    z = np.asarray(atomic_numbers, dtype=int)
    mean = cgcnn_table()[z].astype(float).mean(axis=0)
    return np.concatenate([mean, [np.log(volume / len(z))]])


@cache
def _atomic_number(symbol: str) -> int:
    from pymatgen.core import Element

    return int(Element(symbol).Z)


def _record_descriptor(structure: dict) -> np.ndarray:
    numbers = [
        _atomic_number(max(site["species"], key=lambda sp: sp["occu"])["element"])
        for site in structure["sites"]
    ]
    volume = abs(float(np.linalg.det(np.asarray(structure["lattice"]["matrix"], dtype=float))))
    return crystal_descriptor(numbers, volume)


def _pair_knn(a: np.ndarray, b: np.ndarray, k: int, exclude_self: bool) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    d = np.sqrt(np.clip(d2, 0.0, None))
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    k = min(k, d.shape[1] - (1 if exclude_self else 0))
    return np.sort(np.partition(d, k - 1, axis=1)[:, :k], axis=1).mean(axis=1)


def domain_reference(task: str) -> tuple[np.ndarray, float]:
    """(descriptors of the task's shipped records, 99th percentile of their own k-NN
    distance); built once per process (about a second), shared by tasks with the same data."""
    from atomate2_gmt.data.mp import MP_NEWER_SOURCES, MP_SOURCES

    newer = [MP_NEWER_SOURCES[task].file] if task in MP_NEWER_SOURCES else []
    return _reference((MP_SOURCES[task].file, *newer))


@cache
def _reference(files: tuple[str, ...]) -> tuple[np.ndarray, float]:
    from atomate2_gmt.data.mp import _raw_records

    ref = np.array([_record_descriptor(r["structure"]) for f in files for r in _raw_records(f)])
    own = _pair_knn(ref, ref, K_NEIGHBOURS, exclude_self=True)
    return ref, float(np.percentile(own, 99))


def domain_distances(structures: Sequence[Structure], task: str) -> np.ndarray:
    """``domain_distance`` of each structure for ``task`` (see the module docstring)."""
    if not structures:
        return np.zeros(0)
    ref, scale = domain_reference(task)
    x = np.array([crystal_descriptor([site.specie.Z for site in s], s.volume) for s in structures])
    return _pair_knn(x, ref, K_NEIGHBOURS, exclude_self=False) / scale
