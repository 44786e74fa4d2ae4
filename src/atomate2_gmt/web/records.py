"""What the web app reads of the feedback loop: prediction vs DFPT rows, training documents and
registered model versions, as plain (JSON-safe) Python.

Read-only, with the allow-lists of :mod:`atomate2_gmt.web.service` (task, part, code, DFPT
state); user values reach a store only as plain equality values.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from atomate2_gmt.schemas.fields import PREDICTION_KEY, TASKS
from atomate2_gmt.settings import mask_secrets
from atomate2_gmt.web.common import CODES, DFPT_PARTS, NotFoundError

if TYPE_CHECKING:
    from maggma.core import Store

__all__ = [
    "DFPTComparisons",
    "dfpt_rows",
    "model_document",
    "model_versions",
    "training_document",
    "training_page",
]


class DFPTComparisons:
    """Prediction vs DFPT rows (:func:`atomate2_gmt.report.document_comparison`) of every
    candidate with a DFPT result, computed once per document version (prediction and DFPT
    ``last_updated``) and kept in memory: the parity page reads only the stamps again."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def rows(
        self, store: Store, task: str | None = None, states: tuple[str, ...] = ("accepted",)
    ) -> list[dict[str, Any]]:
        """Rows of ``task`` (every task if None) for DFPT outcomes in ``states`` (accepted /
        rejected), in the order of the store's ``prediction_id``."""
        from atomate2_gmt.report import document_comparison

        if task is not None and task not in TASKS:
            raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
        bad = [s for s in states if s not in ("accepted", "rejected")]
        if bad or not states:
            raise ValueError(f"DFPT states must be accepted and/or rejected, got {list(states)}")
        store.connect()
        criteria = {"dfpt.state": {"$in": list(states)}}
        stamps = {
            d[PREDICTION_KEY]: (
                d[PREDICTION_KEY],
                str(d.get("last_updated")),
                str((d.get("dfpt") or {}).get("last_updated")),
            )
            for d in store.query(
                criteria,
                properties=[PREDICTION_KEY, "last_updated", "dfpt.last_updated"],
                sort={PREDICTION_KEY: 1},
            )
        }
        with self._lock:
            missing = [k for k, stamp in stamps.items() if stamp not in self._rows]
        for start in range(0, len(missing), 200):
            ids = missing[start : start + 200]
            for doc in store.query({PREDICTION_KEY: {"$in": ids}}):
                stamp = (
                    doc[PREDICTION_KEY],
                    str(doc.get("last_updated")),
                    str((doc.get("dfpt") or {}).get("last_updated")),
                )
                rows = document_comparison(doc)
                with self._lock:
                    self._rows[stamp] = rows
        with self._lock:
            out = [r for stamp in stamps.values() for r in self._rows.get(stamp, [])]
        return mask_secrets([r for r in out if task is None or r["task"] == task])  # type: ignore[no-any-return]


def dfpt_rows(
    store: Store, task: str | None = None, states: tuple[str, ...] = ("accepted",)
) -> list[dict[str, Any]]:
    """Prediction vs DFPT rows (:func:`atomate2_gmt.report.dfpt_comparison`) of ``task``
    (every task if None), for DFPT outcomes in ``states`` (accepted / rejected); uncached."""
    return DFPTComparisons().rows(store, task, states)


_TRAINING_LIST_FIELDS = (
    "record_id", "structure_key", "formula_pretty", "task", "part", "contribution", "units",
    "voigt", "code", "code_version", "functional", "source", "candidate_id", "job_uuid",
    "created_at", "last_updated",
)  # fmt: skip


def training_page(
    store: Store,
    task: str | None = None,
    part: str | None = None,
    code: str | None = None,
    source: str | None = None,
    structure_key: str | None = None,
    skip: int = 0,
    limit: int = 20,
) -> tuple[list[dict[str, Any]], int]:
    """Training documents (newest first) without their structures, and how many match."""
    criteria: dict[str, Any] = {}
    for name, value, allowed in (
        ("task", task, TASKS),
        ("part", part, DFPT_PARTS),
        ("code", code, CODES),
    ):
        if value is not None:
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(allowed)}")
            criteria[name] = value
    for name, value in (("source", source), ("structure_key", structure_key)):
        if value is not None:
            criteria[name] = str(value)
    store.connect()
    total = store.count(criteria)
    docs = store.query(
        criteria=criteria,
        properties=list(_TRAINING_LIST_FIELDS),
        sort={"last_updated": -1, "record_id": 1},
        skip=skip,
        limit=limit,
    )
    return mask_secrets([{k: v for k, v in d.items() if k != "_id"} for d in docs]), total


def training_document(store: Store, record_id: str) -> dict[str, Any]:
    """One training document (with its structure) by ``record_id``."""
    store.connect()
    doc = store.query_one({"record_id": str(record_id)})
    if doc is None:
        raise NotFoundError(f"no training document with record_id {record_id!r}")
    return mask_secrets({k: v for k, v in doc.items() if k != "_id"})  # type: ignore[no-any-return]


def _model_doc(doc: dict[str, Any]) -> dict[str, Any]:
    from atomate2_gmt.registry.schema import ModelVersionDoc

    out = ModelVersionDoc.from_store(doc).model_dump(mode="json")
    return mask_secrets(out)  # type: ignore[no-any-return]


def model_versions(
    store: Store, task: str | None = None, promoted: bool | None = None
) -> list[dict[str, Any]]:
    """Registered model versions (task, then version number), without their configs."""
    criteria: dict[str, Any] = {}
    if task is not None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
        criteria["task"] = task
    if promoted is not None:
        criteria["promoted"] = bool(promoted)
    store.connect()
    docs = store.query(criteria=criteria, sort={"task": 1, "version_number": 1})
    out = []
    for d in docs:
        m = _model_doc(d)
        m.pop("config", None)
        out.append(m)
    return out


def model_document(store: Store, key: str) -> dict[str, Any]:
    """One registered model version by ``model_id`` or version label (``piezo-v2``)."""
    store.connect()
    doc = store.query_one({"model_id": str(key)}) or store.query_one({"version": str(key)})
    if doc is None:
        raise NotFoundError(f"no model {key!r} in the registry (model_id or version label)")
    return _model_doc(doc)
