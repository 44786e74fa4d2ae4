"""The fixed held-out set of each task and its one name.

The held-out set is the test part of the seed-32 80/10/10 split of the shipped MP records of a
task (every shipped source of the task, each split on its own): the shipped models were trained
and measured on that split, and every retrained version is measured on it. Registry versions
carry its name in ``metrics_set``; the promotion policy compares two versions only when the names
are equal, so the name comes from one function, :func:`heldout_set_name`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from atomate2_gmt.data.records import TensorRecord, records_hash

__all__ = [
    "HELDOUT_SEED",
    "heldout_set",
    "heldout_set_name",
    "shipped_metrics_set",
]

HELDOUT_SEED = 32
"""Seed of the split whose test part is the fixed held-out set (the shipped models' split)."""


def heldout_set_name(task: str, source: str, test: Sequence[TensorRecord]) -> str:
    """The name of a held-out set: source, task, seed, size and the records hash, e.g.
    ``mp_legacy piezo seed-32 test split (n=68, sha256 a3e0360c7ec4502e)``."""
    label = "mp_legacy" if source == "mp" else source
    return (
        f"{label} {task} seed-{HELDOUT_SEED} test split "
        f"(n={len(test)}, sha256 {records_hash(test)[:16]})"
    )


@functools.lru_cache(maxsize=8)
def _split(task: str) -> tuple[tuple[TensorRecord, ...], ...]:
    from atomate2_gmt.data.records import split_by_source
    from atomate2_gmt.training.run import load_records, shipped_data_source

    records, _ = load_records(task, shipped_data_source(task))
    train, val, test = split_by_source(records, seed=HELDOUT_SEED)
    return tuple(records), tuple(train), tuple(val), tuple(test)


def heldout_set(
    task: str,
) -> tuple[list[TensorRecord], list[TensorRecord], list[TensorRecord], str]:
    """The seed-32 (train, val, held-out test) split of the shipped MP records of ``task`` and
    the held-out set's ``metrics_set`` name (:func:`heldout_set_name`)."""
    from atomate2_gmt.training.run import shipped_data_source

    _records, train, val, test = _split(task)
    name = heldout_set_name(task, shipped_data_source(task), test)
    return list(train), list(val), list(test), name


def shipped_metrics_set(task: str, sidecar: Mapping[str, Any]) -> str:
    """The ``metrics_set`` of a shipped model's test metrics (its sidecar JSON): the held-out
    set's name when the model was trained on the data the held-out split comes from (same
    training-data hash, same test size, seed 32 where recorded), else a name of its own
    (``shipped test split (<source>)``) that no retrained version shares."""
    records, _train, _val, test = _split(task)
    split = sidecar.get("split") or {}
    same = (
        sidecar.get("training_data_hash") == records_hash(records)
        and (sidecar.get("split_sizes") or {}).get("test") == len(test)
        and split.get("seed", HELDOUT_SEED) == HELDOUT_SEED
    )
    if same:
        return heldout_set(task)[3]
    data = sidecar.get("data")
    source = data.get("source", "unknown source") if isinstance(data, dict) else "unknown source"
    return f"shipped test split ({source})"
