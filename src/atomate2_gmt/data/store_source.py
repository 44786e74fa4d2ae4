"""Training records from a store of training documents (DFPT feedback).

The store holds the dict form of :class:`atomate2_gmt.schemas.training.TrainingDoc` (key
``record_id``); this module reads them without importing the schema layer. Each document gives
one :class:`TensorRecord`: the full Cartesian ``tensor`` in the frame of its ``structure``, in
the task's units, ``source`` (e.g. ``"dfpt_vasp"``) and ``id`` = ``record_id``. A record kept
only because it conflicts with the validated record of its key (``use_for_training`` False, see
:func:`atomate2_gmt.jobs.feedback.write_training_docs`) is never read as training data.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from pymatgen.core import Structure

from atomate2_gmt.data.quality import production_problems
from atomate2_gmt.data.records import TensorRecord, validate_task

__all__ = [
    "ConflictingRecordError",
    "NotProductionQualityError",
    "record_from_training_dict",
    "records_from_store",
]

_PROVENANCE_KEYS = (
    "code", "code_version", "functional", "pseudopotentials", "settings", "job_uuid",
    "dir_name", "candidate_id", "part", "contribution",
)  # fmt: skip


class NotProductionQualityError(ValueError):
    """A training document computed with settings that are not production quality."""


class ConflictingRecordError(ValueError):
    """A training document kept for provenance only: it disagrees with the validated record of
    its key (``use_for_training`` False)."""


def record_from_training_dict(d: dict[str, Any]) -> TensorRecord:
    """A TensorRecord from one training document (dict); ``ValueError`` naming what is wrong,
    :class:`NotProductionQualityError` when its settings are not production quality
    (``data.quality``), :class:`ConflictingRecordError` for a record not used for training
    (``use_for_training`` False): every reader of training documents refuses those."""
    if d.get("use_for_training") is False:
        raise ConflictingRecordError(
            f"training document {d.get('record_id')!r} conflicts with the validated record "
            f"{d.get('conflict_with')!r} and is not used for training"
        )
    problems = production_problems(d.get("settings"), d.get("code"))
    if problems:
        raise NotProductionQualityError("; ".join(problems))
    missing = [k for k in ("record_id", "task", "units", "tensor", "structure") if k not in d]
    if missing:
        raise ValueError(f"training document {d.get('record_id')!r} lacks {missing}")
    provenance = {k: d[k] for k in _PROVENANCE_KEYS if d.get(k) is not None}
    meta = {k: d[k] for k in ("formula_pretty", "structure_key") if d.get(k) is not None}
    return TensorRecord(
        structure=Structure.from_dict(d["structure"]),
        tensor=np.asarray(d["tensor"], dtype=np.float64),
        task=d["task"],
        units=d["units"],
        source=str(d.get("source") or "dfpt"),
        id=str(d["record_id"]),
        provenance=provenance,
        meta=meta,
    )


def records_from_store(
    store: Any, task: str, criteria: dict[str, Any] | None = None
) -> tuple[list[TensorRecord], dict[str, Any]]:
    """All training records of ``task`` in ``store`` (a maggma Store), sorted by ``record_id``.

    ``criteria``: extra query (e.g. ``{"code": "vasp"}``). Documents that do not make a valid
    record are skipped and counted in the stats (``n_invalid``, first reasons in ``invalid``), as
    are documents whose accuracy settings are not production quality (``data.quality``;
    ``n_not_production``, ``not_production``), and records that conflict with the validated
    record of their key (``n_conflicting``).
    Returns ``(records, stats)`` with ``source``, ``n_total``, ``n_kept``, ``n_invalid``,
    ``by_source``. The store is connected if needed (and left open).
    """
    from atomate2_gmt.data.criteria import check_criteria

    validate_task(task)
    query = {**check_criteria(criteria or {}), "task": task}
    store.connect()
    records: list[TensorRecord] = []
    invalid: list[str] = []
    not_production: list[str] = []
    n_conflicting = 0
    n_total = 0
    for d in store.query(criteria=query, sort={"record_id": 1}):
        n_total += 1
        try:
            records.append(record_from_training_dict(d))
        except ConflictingRecordError:
            n_conflicting += 1
        except NotProductionQualityError as exc:  # a test run never becomes training data
            not_production.append(f"{d.get('record_id')!r}: {exc}")
        except (ValueError, KeyError, TypeError) as exc:
            invalid.append(f"{d.get('record_id')!r}: {exc}")
    stats = {
        "source": f"training store {getattr(store, 'name', type(store).__name__)}",
        "n_total": n_total,
        "n_kept": len(records),
        "n_invalid": len(invalid),
        "invalid": invalid[:10],
        "n_not_production": len(not_production),
        "not_production": not_production[:10],
        "n_conflicting": n_conflicting,
        "by_source": dict(Counter(r.source for r in records)),
    }
    return records, stats
