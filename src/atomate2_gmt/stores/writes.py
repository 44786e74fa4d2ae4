"""Indexes, health checks and bulk writes on any maggma store (embedded, MongoDB or a spec).

:func:`upsert_predictions` writes prediction documents in bulk, idempotent on
``prediction_id`` (= ``structure_key:model_version``); :func:`check_store` fails fast, naming
the host or file but never the password, when a store cannot be reached; :func:`describe_store`
and :func:`store_error_reason` are the credential-free words for both.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from maggma.core import Store, StoreError

from atomate2_gmt.schemas.fields import (
    PREDICTION_INDEXES,
    PREDICTION_KEY,
    PREDICTION_SCHEMA_VERSION,
)
from atomate2_gmt.settings import mask_uri, remember_uri_secrets
from atomate2_gmt.stores.embedded import EmbeddedStore
from atomate2_gmt.stores.errors import StoreConnectionError, StoreIndexError, StoreWriteError

__all__ = [
    "REGISTRY_INDEXES",
    "add_sources",
    "check_store",
    "describe_store",
    "ensure_indexes",
    "ensure_prediction_indexes",
    "store_error_reason",
    "upsert_predictions",
]

logger = logging.getLogger(__name__)

REGISTRY_INDEXES: tuple[tuple[tuple[str, ...], bool], ...] = (
    (("model_id",), True),
    (("task",), False),
    (("version",), False),
    (("last_updated",), False),
)
"""Indexes of the model-registry store (key ``model_id``)."""


def _embedded(store: Store) -> EmbeddedStore | None:
    """The :class:`EmbeddedStore` holding ``store``'s documents: the store itself, or the
    metadata ``index`` of a local blob store; None for any other store."""
    if isinstance(store, EmbeddedStore):
        return store
    index = getattr(store, "index", None)
    return index if isinstance(index, EmbeddedStore) else None


def _is_maggma(store: Store, *names: str) -> bool:
    """Whether ``store`` is an instance of one of ``maggma.stores``' classes ``names``.

    Read from ``sys.modules``, not imported: an instance of one of them means its module, and so
    ``maggma.stores``, was imported already, and an embedded-store command never loads that
    package (≈ 0.3 s of CPU for boto3 and paramiko; see :mod:`atomate2_gmt.stores.gridfs`)."""
    module = sys.modules.get("maggma.stores")
    if module is None:
        return False
    return isinstance(store, tuple(getattr(module, name) for name in names))


def _pymongo_collection(store: Store) -> Any | None:
    """The pymongo(-like) collection behind a Mongo-like store, or None.

    None for a ``MontyStore``: montydb accepts ``create_index`` but builds no index, so the
    insert-first write (which relies on the unique ``prediction_id`` index to refuse a second
    copy) would duplicate documents; maggma's ``update`` (replace-or-insert per key) is used.
    """
    if _is_maggma(store, "MontyStore"):
        return None
    if _is_maggma(store, "GridFSStore"):
        return getattr(store, "_files_collection", None)
    if _is_maggma(store, "MongoStore"):
        return store._collection  # type: ignore[attr-defined]
    return None


def ensure_indexes(store: Store, specs: Iterable[tuple[tuple[str, ...], bool]]) -> int:
    """Create the indexes ``specs`` ((fields, unique) pairs) on a connected store.

    Returns how many exist afterwards; raises ``StoreError`` naming an index that could not be
    created (e.g. a unique index over duplicated values). A ``MontyStore`` gets none (montydb
    builds no indexes): 0 and a warning.
    """
    specs = list(specs)
    if _is_maggma(store, "MontyStore"):
        logger.warning("%s has no indexes (montydb): every query scans", describe_store(store))
        return 0
    coll = _pymongo_collection(store)
    embedded = _embedded(store)
    for fields, unique in specs:
        if embedded is not None:
            ok = embedded.ensure_compound_index(list(fields), unique=unique)
        elif coll is not None:
            try:
                coll.create_index([(f, 1) for f in fields], unique=unique)
                ok = True
            except Exception as exc:
                raise StoreIndexError(
                    f"cannot create index {list(fields)} (unique={unique}) on "
                    f"{describe_store(store)}: {store_error_reason(exc)}"
                ) from None
        elif len(fields) == 1:
            ok = bool(store.ensure_index(fields[0], unique=unique))
        else:
            logger.warning("store %s has no compound indexes; skipped %s", type(store), fields)
            continue
        if not ok:
            raise StoreIndexError(
                f"cannot create index {list(fields)} (unique={unique}) on {describe_store(store)}"
            )
    return len(specs)


def ensure_prediction_indexes(store: Store) -> int:
    """Create the prediction-store indexes (unique ``prediction_id``, every filter/sort field)."""
    return ensure_indexes(store, PREDICTION_INDEXES)


def describe_store(store: Store) -> str:
    """A one-line description of ``store`` that names its host/path but never a password."""
    if _is_maggma(store, "MongoStore", "GridFSStore") and not isinstance(store, EmbeddedStore):
        uri = getattr(store, "uri", None)
        coll = getattr(store, "collection_name", "?")
        db = getattr(store, "database", None)
        if uri:
            remember_uri_secrets(uri)  # scrubbed from every later message, too
            return f"{mask_uri(uri)} (database {db!r}, collection {coll!r})"
        if hasattr(store, "host"):
            user = getattr(store, "username", "") or ""
            cred = f"{user}:***@" if user else ""
            host, port = getattr(store, "host", "?"), getattr(store, "port", "?")
            return f"mongodb://{cred}{host}:{port}/{db}/{coll}"
    try:
        return mask_uri(str(store.name))
    except Exception:
        return type(store).__name__


def store_error_reason(exc: BaseException) -> str:
    """``Type: message`` of a store failure, credentials masked, pymongo's topology dump cut."""
    return f"{type(exc).__name__}: {mask_uri(str(exc)).split(', Timeout:')[0]}"


def check_store(store: Store, timeout_s: float = 5.0) -> None:
    """Connect to ``store`` and make one round trip, failing within ~``timeout_s`` seconds.

    Raises :class:`StoreConnectionError` naming the store (host or file, no password) and the
    reason. Call it before any prediction runs. Leaves the store connected.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    where = describe_store(store)
    embedded = _embedded(store)
    if embedded is not None:
        folder = Path(embedded.path).parent
        try:
            store.connect()
            store.count()
        except StoreConnectionError:
            raise  # its message names the store already
        except (OSError, sqlite3.Error, StoreError) as exc:
            raise StoreConnectionError(f"cannot open the embedded store {where}: {exc}") from None
        if not os.access(folder, os.W_OK):
            raise StoreConnectionError(f"the embedded store folder {folder} is not writable")
        return
    try:
        store.connect()
        coll = _pymongo_collection(store)
        import pymongo

        if coll is not None and isinstance(coll.database.client, pymongo.MongoClient):
            with pymongo.timeout(timeout_s):
                coll.database.client.admin.command("ping")
                coll.find_one({}, projection={"_id": 1})
        else:
            store.count()
    except Exception as exc:
        raise StoreConnectionError(
            f"cannot reach the store {where} within {timeout_s:g} s: {store_error_reason(exc)}"
        ) from None


def _as_store_doc(doc: Any, index: int) -> dict[str, Any]:
    if hasattr(doc, "to_store_dict"):
        out = doc.to_store_dict()
    elif isinstance(doc, dict):
        out = {k: v for k, v in doc.items() if k != "_id"}
    else:
        raise ValueError(
            f"document {index} is a {type(doc).__name__}; expected a GMTPredictionDoc or a dict"
        )
    if not out.get(PREDICTION_KEY):
        raise ValueError(f"document {index} has no {PREDICTION_KEY!r}")
    if out.get("schema_version") == PREDICTION_SCHEMA_VERSION:  # stored compact (its hash too)
        from atomate2_gmt.schemas.stored import compact_prediction_dict

        out = compact_prediction_dict(out)
    return out


def _insert_or_replace(coll: Any, batch: list[dict[str, Any]]) -> None:
    """Insert the batch; replace the documents whose key exists already (duplicate-key errors
    on the unique ``prediction_id`` index). Inserting first is ~2x faster than upserting when the
    documents are new, the common case of a screening run."""
    from pymongo import ReplaceOne
    from pymongo.errors import BulkWriteError

    try:
        coll.insert_many([dict(d) for d in batch], ordered=False)  # copies: pymongo adds _id
        return
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        others = [e for e in errors if e.get("code") != 11000]
        if others:
            raise
        existing = [batch[e["index"]] for e in errors]
    coll.bulk_write(
        [ReplaceOne({PREDICTION_KEY: d[PREDICTION_KEY]}, d, upsert=True) for d in existing],
        ordered=False,
    )


def _names(doc: dict[str, Any]) -> list[str]:
    names = [str(n) for n in doc.get("sources") or []]
    return names or ([str(doc["source"])] if doc.get("source") else [])


def _keep_names(new: dict[str, Any], old: dict[str, Any]) -> None:
    """``new`` replaces ``old`` (same ``prediction_id``): it keeps ``old``'s ``source`` with its
    ``provenance`` (the file it names) and the union of both documents' ``sources`` (old names
    first)."""
    names = list(dict.fromkeys([*_names(old), *_names(new)]))
    if old.get("source"):
        new["source"] = old["source"]
        if "provenance" in old:
            new["provenance"] = old["provenance"]
    new["sources"] = names


def add_sources(
    store: Store,
    names: dict[str, list[str]],
    properties: dict[str, dict[str, Any]] | None = None,
) -> int:
    """Add input ``names`` (``prediction_id`` → names) to the ``sources`` of stored prediction
    documents (e.g. a re-run that skips a crystal already predicted under another file name),
    and fill in what this run's source knows of the crystal (``properties``: ``prediction_id`` →
    emmet-named source fields such as ``band_gap``) where the stored document has no value; a
    stored value is never overwritten. Returns the number of documents changed."""
    properties = properties or {}
    if not names and not properties:
        return 0
    store.connect()
    changed = []
    ids = list(dict.fromkeys([*names, *properties]))
    for doc in store.query({PREDICTION_KEY: {"$in": ids}}):
        pid = doc[PREDICTION_KEY]
        new = {k: v for k, v in doc.items() if k != "_id"}
        merged = list(dict.fromkeys([*_names(doc), *names.get(pid, [])]))
        new["sources"] = merged
        for field, value in properties.get(pid, {}).items():
            if new.get(field) is None and value is not None:
                new[field] = value
        if new != {k: v for k, v in doc.items() if k != "_id"}:
            changed.append(new)
    if changed:
        store.update(changed, key=PREDICTION_KEY)
    return len(changed)


def upsert_predictions(store: Store, docs: Iterable[Any], batch_size: int = 500) -> int:
    """Bulk upsert prediction documents on ``prediction_id`` (= structure_key:model_version).

    ``docs`` are :class:`~atomate2_gmt.schemas.prediction.GMTPredictionDoc` or their store
    dicts. Creates the prediction indexes first (once per store object). Idempotent: running it
    again replaces the same documents, never duplicates them. A document that replaces one with
    the same ``prediction_id`` (the same crystal under another input name) keeps the first
    ``source`` and every name in ``sources``. If the store fails part-way a
    :class:`StoreWriteError` says how many documents were written; re-running the same call
    completes the rest. Returns the number of documents written.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    unique: dict[str, dict[str, Any]] = {}
    for i, doc in enumerate(docs):
        d = _as_store_doc(doc, i)
        earlier = unique.pop(d[PREDICTION_KEY], None)
        if earlier is not None:  # the same crystal under two names: keep both names
            _keep_names(d, earlier)
        unique[d[PREDICTION_KEY]] = d
    todo = list(unique.values())
    if not todo:
        return 0
    where = describe_store(store)
    written = 0
    try:
        store.connect()
        stored = store.query(
            {PREDICTION_KEY: {"$in": list(unique)}},
            properties=[PREDICTION_KEY, "source", "sources", "provenance"],
        )
        for old in stored:
            _keep_names(unique[old[PREDICTION_KEY]], old)
        if not getattr(store, "_gmt_prediction_indexes", False):
            ensure_prediction_indexes(store)
            store._gmt_prediction_indexes = True  # type: ignore[attr-defined]
        coll = _pymongo_collection(store)
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            if coll is not None:
                _insert_or_replace(coll, batch)
            else:
                store.update(batch, key=PREDICTION_KEY)
            written += len(batch)
    except Exception as exc:
        raise StoreWriteError(
            f"upsert_predictions wrote {written} of {len(todo)} documents to {where} before the "
            f"write failed ({store_error_reason(exc)}). "
            "Upserts are idempotent on (structure_key, model_version): re-run the same call to "
            "write the rest without duplicates."
        ) from exc
    return written
