"""Stores for screening: built from :class:`~atomate2_gmt.settings.GMTSettings`.

Default (no server): every store is an :class:`EmbeddedStore` — a maggma ``Store`` whose
documents are JSON rows of one SQLite file in ``PROJECT_DIR/stores/``; Mongo-style queries are
translated to SQL over SQLite's JSON functions (indexes on JSON expressions), anything outside
that subset is evaluated in Python with mongomock's matcher. Registry weights go to files in
``PROJECT_DIR/stores/<blob collection>/`` (:class:`LocalBlobStore`).

With ``MONGO_URI`` the stores are maggma ``MongoStore`` collections and the weights a GridFS
bucket (:class:`GridFSBlobStore`). A per-store spec in the settings (a ``Store.as_dict()``)
overrides both.

Writes of prediction documents go through :func:`upsert_predictions` (bulk, idempotent on the
``prediction_id`` = ``structure_key:model_version``); :func:`check_store` fails fast, naming the
host but never the password, when a store cannot be reached.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import groupby as _itergroupby
from pathlib import Path
from typing import Any

import orjson
from maggma.core import Store, StoreError
from maggma.stores import GridFSStore, MongoStore
from monty.json import MontyDecoder, MSONable

from atomate2_gmt.schemas.fields import PREDICTION_INDEXES, PREDICTION_KEY
from atomate2_gmt.settings import GMTSettings, mask_uri, remember_uri_secrets

__all__ = [
    "REGISTRY_INDEXES",
    "TRAINING_INDEXES",
    "EmbeddedStore",
    "GridFSBlobStore",
    "LocalBlobStore",
    "StoreConnectionError",
    "StoreIndexError",
    "StoreWriteError",
    "add_sources",
    "candidate_store",
    "check_store",
    "describe_store",
    "embedded_store_path",
    "ensure_indexes",
    "ensure_prediction_indexes",
    "registry_blob_store",
    "registry_store",
    "store_from_spec",
    "training_store",
    "upsert_predictions",
]

logger = logging.getLogger(__name__)

TRAINING_INDEXES: tuple[tuple[tuple[str, ...], bool], ...] = (
    (("record_id",), True),
    (("structure_key",), False),
    (("task",), False),
    (("source",), False),
    (("id",), False),
    (("last_updated",), False),
)
"""Indexes of the training-record store (key ``record_id``)."""

REGISTRY_INDEXES: tuple[tuple[tuple[str, ...], bool], ...] = (
    (("model_id",), True),
    (("task",), False),
    (("version",), False),
    (("last_updated",), False),
)
"""Indexes of the model-registry store (key ``model_id``)."""


class StoreIndexError(StoreError):
    """An index could not be created; ``str()`` is the message (maggma's ``StoreError`` alone
    would print the tuple of its arguments)."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)


class StoreConnectionError(ConnectionError):
    """A store could not be reached or opened (the message names it, without credentials)."""


class StoreWriteError(RuntimeError):
    """A bulk write stopped part-way; the message says how far it got and how to finish."""


# --------------------------------------------------------------------------------------------
# the embedded store
# --------------------------------------------------------------------------------------------

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_RE = re.compile(r"^[A-Za-z_@$][A-Za-z0-9_@\-]*$")
_NUMERIC = ("integer", "real")


class _UntranslatableError(Exception):
    """A query construct outside the SQL subset: evaluate the query in Python instead."""


def _json_default(obj: Any) -> Any:
    """orjson fallback: MSONable / pydantic objects, paths, ObjectIds."""
    if isinstance(obj, MSONable):
        return obj.as_dict()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, Path):
        return str(obj)
    if type(obj).__name__ == "ObjectId":
        return str(obj)
    raise TypeError(f"a value of type {type(obj).__name__} cannot be stored as JSON")


def _dumps(doc: Any) -> str:
    return orjson.dumps(
        doc, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    ).decode()


def _iso(value: datetime) -> str:
    """The ISO text orjson writes for a datetime (so that query operands match stored values)."""
    return orjson.loads(orjson.dumps(value))  # type: ignore[no-any-return]


_MISSING = object()


def _get_path(doc: Any, field: str, default: Any = None) -> Any:
    """Value at dotted ``field`` of nested dicts (``default`` if absent)."""
    for part in field.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return default
        doc = doc[part]
    return doc


def _has_path(doc: Any, field: str) -> bool:
    return _get_path(doc, field, _MISSING) is not _MISSING


def _set_path(doc: dict[str, Any], field: str, value: Any) -> None:
    parts = field.split(".")
    for part in parts[:-1]:
        nxt = doc.get(part)
        if not isinstance(nxt, dict):
            nxt = doc[part] = {}
        doc = nxt
    doc[parts[-1]] = value


def _json_path(field: str) -> str:
    parts = field.split(".")
    if not all(_KEY_RE.match(p) for p in parts):
        raise _UntranslatableError(field)
    return "$." + ".".join(f'"{p}"' for p in parts)


class EmbeddedStore(Store):
    """A maggma ``Store`` persisted in one SQLite file: no server, safe for several processes.

    Each document is one JSON row of table ``collection_name`` in ``path`` (several stores may
    share a file). Upserts run in one transaction per ``update`` call, so a failed call leaves
    the file as it was. Indexes are SQLite indexes on ``json_extract`` expressions. Queries
    support equality, ``$eq $ne $gt $gte $lt $lte $in $nin $exists $all $and $or $nor`` on
    dotted fields (array fields with MongoDB's "any element" semantics) in SQL; other queries are
    answered by scanning in Python. Datetimes are stored as ISO text; the ``last_updated_field``
    is returned as a ``datetime``. Sorting follows SQLite's order (null < numbers < text); booleans
    sort as 0/1.
    """

    def __init__(
        self,
        path: str,
        collection_name: str = "documents",
        timeout_s: float = 30.0,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            path: SQLite file (created with its folder on connect).
            collection_name: table name (letters, digits, underscores).
            timeout_s: seconds to wait for another process's write lock.
            kwargs: maggma ``Store`` arguments (``key``, ``last_updated_field``, ``validator``).
        """
        if not _NAME_RE.match(collection_name):
            raise ValueError(
                f"collection_name {collection_name!r} must be letters, digits and underscores"
            )
        self.path = str(path)
        self.collection_name = collection_name
        self.timeout_s = float(timeout_s)
        self.kwargs = kwargs
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._array_paths: set[str] = set()
        super().__init__(**kwargs)

    # ---- maggma plumbing --------------------------------------------------------------------
    @property
    def name(self) -> str:
        """``sqlite://<path>/<collection>``."""
        return f"sqlite://{self.path}/{self.collection_name}"

    @property
    def _collection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("Must connect the EmbeddedStore before attempting to use it")
        return self._conn

    def connect(self, force_reset: bool = False) -> None:
        """Open (creating if needed) the SQLite file and this store's table."""
        if self._conn is not None and not force_reset:
            return
        if self._conn is not None:
            self.close()
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(path), timeout=self.timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{self.collection_name}" '
                "(id INTEGER PRIMARY KEY, doc TEXT NOT NULL)"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS _gmt_array_paths "
                "(tbl TEXT NOT NULL, path TEXT NOT NULL, PRIMARY KEY (tbl, path))"
            )
            rows = conn.execute(
                "SELECT path FROM _gmt_array_paths WHERE tbl = ?", (self.collection_name,)
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreConnectionError(
                f"cannot open the embedded store {self.name}: {exc} (the file is damaged or is "
                "not an SQLite database)"
            ) from exc
        self._array_paths = {r[0] for r in rows}
        self._conn = conn
        keys = self.key if isinstance(self.key, list) else [self.key]
        for key in keys:
            self.ensure_index(key)

    def close(self) -> None:
        """Close the SQLite connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EmbeddedStore):
            return False
        return (self.path, self.collection_name, self.key) == (
            other.path,
            other.collection_name,
            other.key,
        )

    def __hash__(self) -> int:
        return hash((self.path, self.collection_name, self.last_updated_field))

    # ---- SQL translation --------------------------------------------------------------------
    def _jx(self, field: str) -> str:
        return f"json_extract(doc, '{_json_path(field)}')"

    def _jt(self, field: str) -> str:
        return f"json_type(doc, '{_json_path(field)}')"

    def _check_prefixes(self, field: str) -> None:
        parts = field.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[:i]) in self._array_paths:
                raise _UntranslatableError(field)

    @staticmethod
    def _value_cond(value_sql: str, type_sql: str, op: str, value: Any) -> tuple[str, list[Any]]:
        """Condition on one JSON value (given its SQL value and json type expressions)."""
        if isinstance(value, datetime):
            value = _iso(value)
        if op == "=":
            if value is None:
                return f"({type_sql} IS NULL OR {type_sql} = 'null')", []
            if isinstance(value, bool):
                return f"{type_sql} = '{'true' if value else 'false'}'", []
            if isinstance(value, int | float):
                return f"({value_sql} = ? AND {type_sql} IN ('integer', 'real'))", [value]
            if isinstance(value, str):
                return f"({value_sql} = ? AND {type_sql} = 'text')", [value]
            raise _UntranslatableError(value)
        if value is None or isinstance(value, bool):
            raise _UntranslatableError(value)
        if isinstance(value, int | float):
            return f"({value_sql} {op} ? AND {type_sql} IN ('integer', 'real'))", [value]
        if isinstance(value, str):
            return f"({value_sql} {op} ? AND {type_sql} = 'text')", [value]
        raise _UntranslatableError(value)

    def _atom(self, field: str, op: str, value: Any) -> tuple[str, list[Any]]:
        """``field op value`` with MongoDB's any-element semantics on array fields."""
        self._check_prefixes(field)
        scalar_sql, params = self._value_cond(self._jx(field), self._jt(field), op, value)
        if field not in self._array_paths:
            return scalar_sql, params
        if value is None:
            raise _UntranslatableError(field)
        elem_sql, elem_params = self._value_cond("je.value", "je.type", op, value)
        path = _json_path(field)
        return (
            f"({scalar_sql} OR ({self._jt(field)} = 'array' AND EXISTS "
            f"(SELECT 1 FROM json_each(doc, '{path}') AS je WHERE {elem_sql})))",
            params + elem_params,
        )

    def _in_sql(self, field: str, values: list[Any]) -> tuple[str, list[Any]]:
        """``field`` equal to any of ``values`` (one SQL IN list per JSON type)."""
        if len(values) > 30000:
            raise _UntranslatableError(field)
        self._check_prefixes(field)
        values = [_iso(v) if isinstance(v, datetime) else v for v in values]
        texts = [v for v in values if isinstance(v, str)]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        others = [v for v in values if v is None or isinstance(v, bool)]
        if len(texts) + len(numbers) + len(others) != len(values):
            raise _UntranslatableError(field)
        is_array = field in self._array_paths
        path = _json_path(field)
        parts: list[str] = []
        params: list[Any] = []
        for group, types in ((texts, "('text')"), (numbers, "('integer', 'real')")):
            if not group:
                continue
            marks = ", ".join("?" * len(group))
            parts.append(f"({self._jx(field)} IN ({marks}) AND {self._jt(field)} IN {types})")
            params.extend(group)
            if is_array:
                parts.append(
                    f"({self._jt(field)} = 'array' AND EXISTS (SELECT 1 FROM json_each(doc, "
                    f"'{path}') AS je WHERE je.value IN ({marks}) AND je.type IN {types}))"
                )
                params.extend(group)
        for v in others:
            sql, p = self._atom(field, "=", v)
            parts.append(sql)
            params.extend(p)
        return "(" + " OR ".join(parts) + ")", params

    def _field_sql(self, field: str, cond: Any) -> tuple[str, list[Any]]:
        if field.startswith("$"):
            raise _UntranslatableError(field)
        if not (isinstance(cond, dict) and cond and all(str(k).startswith("$") for k in cond)):
            if isinstance(cond, dict | list | tuple):
                raise _UntranslatableError(field)
            return self._atom(field, "=", cond)
        parts: list[str] = []
        params: list[Any] = []
        comparisons = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
        for op, operand in cond.items():
            if op == "$eq":
                if isinstance(operand, dict | list | tuple):
                    raise _UntranslatableError(field)
                sql, p = self._atom(field, "=", operand)
            elif op == "$ne":
                if isinstance(operand, dict | list | tuple):
                    raise _UntranslatableError(field)
                inner, p = self._atom(field, "=", operand)
                sql = f"NOT IFNULL({inner}, 0)"
            elif op in comparisons:
                sql, p = self._atom(field, comparisons[op], operand)
            elif op in ("$in", "$nin", "$all"):
                if not isinstance(operand, list | tuple) or any(
                    isinstance(v, dict | list | tuple) for v in operand
                ):
                    raise _UntranslatableError(field)
                if op == "$all" and not operand:
                    sql, p = "0", []
                elif not operand:
                    sql, p = ("0" if op == "$in" else "1"), []
                elif op == "$all":
                    subs = [self._atom(field, "=", v) for v in operand]
                    sql = "(" + " AND ".join(s for s, _ in subs) + ")"
                    p = [x for _, ps in subs for x in ps]
                else:
                    sql, p = self._in_sql(field, list(operand))
                    if op == "$nin":
                        sql = f"NOT IFNULL({sql}, 0)"
            elif op == "$exists":
                self._check_prefixes(field)
                sql, p = f"{self._jt(field)} IS {'NOT ' if operand else ''}NULL", []
            else:
                raise _UntranslatableError(op)
            parts.append(sql)
            params.extend(p)
        return "(" + " AND ".join(parts) + ")", params

    def _where(self, criteria: dict[str, Any] | None) -> tuple[str, list[Any]]:
        if not criteria:
            return "1", []
        if not isinstance(criteria, dict):
            raise ValueError(f"criteria must be a dict, got {type(criteria).__name__}")
        parts: list[str] = []
        params: list[Any] = []
        for field, cond in criteria.items():
            if field in ("$and", "$or", "$nor"):
                if not isinstance(cond, list) or not cond:
                    raise ValueError(f"{field} needs a non-empty list of criteria")
                subs = [self._where(c) for c in cond]
                joiner = " AND " if field == "$and" else " OR "
                sql = "(" + joiner.join(f"({s})" for s, _ in subs) + ")"
                if field == "$nor":
                    sql = f"NOT IFNULL({sql}, 0)"
                parts.append(sql)
                params.extend(x for _, ps in subs for x in ps)
            else:
                sql, p = self._field_sql(field, cond)
                parts.append(sql)
                params.extend(p)
        return " AND ".join(parts), params

    def _order_by(self, sort: dict[str, Any] | None) -> str:
        """ORDER BY clause; ties broken by row id in the direction of the last term, so that a
        single-field sort can walk that field's index in either direction."""
        if not sort:
            return "id"
        terms = []
        last = "ASC"
        for field, direction in sort.items():
            self._check_prefixes(field)
            if field in self._array_paths:
                raise _UntranslatableError(field)
            value = direction.value if hasattr(direction, "value") else int(direction)
            last = "DESC" if value < 0 else "ASC"
            terms.append(f"{self._jx(field)} {last}")
        return ", ".join([*terms, f"id {last}"])

    # ---- decoding / projection --------------------------------------------------------------
    def _decode(self, text: str) -> dict[str, Any]:
        doc = orjson.loads(text)
        lu = doc.get(self.last_updated_field)
        if isinstance(lu, str):
            with contextlib.suppress(ValueError):
                doc[self.last_updated_field] = datetime.fromisoformat(lu)
        return doc  # type: ignore[no-any-return]

    @staticmethod
    def _project(doc: dict[str, Any], properties: dict | list | None) -> dict[str, Any]:
        if properties is None:
            return doc
        if isinstance(properties, list | tuple):
            properties = dict.fromkeys(properties, 1)
        include = [k for k, v in properties.items() if v and k != "_id"]
        exclude = [k for k, v in properties.items() if not v and k != "_id"]
        if include and exclude:
            raise ValueError("a projection cannot mix included and excluded fields")
        if include:
            out: dict[str, Any] = {}
            for k in include:
                if _has_path(doc, k):
                    _set_path(out, k, _get_path(doc, k))
            return out
        for k in exclude:
            parent, _, leaf = k.rpartition(".")
            target = _get_path(doc, parent) if parent else doc
            if isinstance(target, dict):
                target.pop(leaf, None)
        return doc

    def _scan(self, criteria: dict[str, Any] | None) -> Iterator[tuple[int, dict[str, Any]]]:
        """All (row id, doc) matching ``criteria``, evaluated in Python (mongomock's matcher)."""
        import mongomock_ng  # noqa: F401  (registers the aggregation parser used by filtering)
        from mongomock_ng.filtering import filter_applies

        cursor = self._collection.execute(f'SELECT id, doc FROM "{self.collection_name}"')
        for row_id, text in cursor:
            doc = self._decode(text)
            if not criteria or filter_applies(criteria, doc):
                yield row_id, doc

    def _sql_projection(self, properties: dict | list | None) -> list[str] | None:
        """The included fields when ``properties`` can be projected in SQL, else None."""
        if properties is None:
            return None
        if isinstance(properties, dict):
            if not all(v for k, v in properties.items() if k != "_id"):
                return None
            fields = [k for k in properties if k != "_id"]
        else:
            fields = [k for k in properties if k != "_id"]
        if not fields:
            return None
        try:
            for f in fields:
                self._check_prefixes(f)
                _json_path(f)
        except _UntranslatableError:
            return None
        return fields

    def _select_ids_and_docs(
        self,
        criteria: dict[str, Any] | None,
        sort: dict[str, Any] | None = None,
        skip: int = 0,
        limit: int = 0,
        properties: dict | list | None = None,
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """(row id, doc) of the matches; docs are already projected when ``properties`` can be
        projected in SQL (then fields holding null are left out, as if missing)."""
        try:
            where, params = self._where(criteria)
            order = self._order_by(sort)
        except _UntranslatableError:
            for row_id, doc in self._python_select(criteria, sort, skip, limit):
                yield row_id, self._project(doc, properties)
            return
        fields = self._sql_projection(properties)
        if fields is None:
            column = "doc"
        else:
            paths = [_json_path(f) for f in fields]
            if len(paths) == 1:
                paths = paths * 2
            column = "json_extract(doc, " + ", ".join(f"'{p}'" for p in paths) + ")"
        sql = f'SELECT id, {column} FROM "{self.collection_name}" WHERE {where} ORDER BY {order}'
        if limit or skip:
            sql += " LIMIT ? OFFSET ?"
            params = [*params, limit if limit else -1, skip]
        cursor = self._collection.execute(sql, params)
        while True:
            rows = cursor.fetchmany(256)
            if not rows:
                return
            for row_id, text in rows:
                if fields is None:
                    yield row_id, self._project(self._decode(text), properties)
                    continue
                projected: dict[str, Any] = {}
                for f, value in zip(fields, orjson.loads(text), strict=False):
                    if value is not None:
                        _set_path(projected, f, value)
                lu = projected.get(self.last_updated_field)
                if isinstance(lu, str):
                    with contextlib.suppress(ValueError):
                        projected[self.last_updated_field] = datetime.fromisoformat(lu)
                yield row_id, projected

    def _python_select(
        self,
        criteria: dict[str, Any] | None,
        sort: dict[str, Any] | None,
        skip: int,
        limit: int,
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        from mongomock_ng.filtering import resolve_sort_key

        hits = list(self._scan(criteria))
        for field, direction in reversed(list((sort or {}).items())):
            value = direction.value if hasattr(direction, "value") else int(direction)
            hits.sort(key=lambda h, f=field: resolve_sort_key(f, h[1]), reverse=value < 0)
        end = skip + limit if limit else None
        yield from hits[skip:end]

    # ---- maggma Store API -------------------------------------------------------------------
    def count(self, criteria: dict | None = None, hint: dict | None = None) -> int:
        """Number of documents matching ``criteria``."""
        try:
            where, params = self._where(criteria)
        except _UntranslatableError:
            return sum(1 for _ in self._scan(criteria))
        row = self._collection.execute(
            f'SELECT COUNT(*) FROM "{self.collection_name}" WHERE {where}', params
        ).fetchone()
        return int(row[0])

    def query(  # type: ignore[override]
        self,
        criteria: dict | None = None,
        properties: dict | list | None = None,
        sort: dict | None = None,
        skip: int = 0,
        limit: int = 0,
        **kwargs: Any,
    ) -> Iterator[dict]:
        """Documents matching ``criteria``, sorted (field → 1/-1), projected to ``properties``."""
        for _, doc in self._select_ids_and_docs(criteria, sort, skip, limit, properties):
            yield doc

    def _record_array_paths(self, doc: dict[str, Any], prefix: str = "") -> set[str]:
        found: set[str] = set()
        for k, v in doc.items():
            path = f"{prefix}{k}"
            if isinstance(v, list | tuple):
                found.add(path)
            elif isinstance(v, dict):
                found |= self._record_array_paths(v, path + ".")
        return found

    def update(self, docs: list[dict] | dict, key: list | str | None = None) -> None:
        """Upsert ``docs`` on ``key`` (default the store's key) in one transaction."""
        if isinstance(docs, dict):
            docs = [docs]
        keys = key or self.key
        keys = [keys] if isinstance(keys, str) else list(keys)
        prepared: list[tuple[dict[str, Any], str]] = []
        new_paths: set[str] = set()
        for i, d in enumerate(docs):
            if not isinstance(d, dict):
                raise ValueError(f"document {i} is a {type(d).__name__}, not a dict")
            d = {k: v for k, v in d.items() if k != "_id"}
            if self.validator is not None and not self.validator.is_valid(d):
                if getattr(self.validator, "strict", False):
                    raise ValueError(self.validator.validation_errors(d))
                self.logger.error(self.validator.validation_errors(d))
                continue
            missing = [k for k in keys if not _has_path(d, k)]
            if missing:
                raise ValueError(f"document {i} lacks the key field(s) {missing}")
            try:
                text = _dumps(d)
            except TypeError as exc:
                raise ValueError(f"document {i} cannot be stored as JSON: {exc}") from None
            new_paths |= self._record_array_paths(d) - self._array_paths
            prepared.append((d, text))
        if not prepared:
            return
        conn = self._collection
        with self._lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if new_paths:
                    conn.executemany(
                        "INSERT OR IGNORE INTO _gmt_array_paths (tbl, path) VALUES (?, ?)",
                        [(self.collection_name, p) for p in sorted(new_paths)],
                    )
                    self._array_paths |= new_paths
                for d, text in prepared:
                    try:
                        where, params = self._where({k: _get_path(d, k) for k in keys})
                        row = conn.execute(
                            f'SELECT id FROM "{self.collection_name}" WHERE {where} LIMIT 1',
                            params,
                        ).fetchone()
                        row_id = row[0] if row else None
                    except _UntranslatableError:
                        search = {k: _get_path(d, k) for k in keys}
                        row_id = next((rid for rid, _ in self._scan(search)), None)
                    if row_id is None:
                        conn.execute(
                            f'INSERT INTO "{self.collection_name}" (doc) VALUES (?)', (text,)
                        )
                    else:
                        conn.execute(
                            f'UPDATE "{self.collection_name}" SET doc = ? WHERE id = ?',
                            (text, row_id),
                        )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                self._array_paths -= new_paths
                raise

    def ensure_index(self, key: str, unique: bool | None = False) -> bool:
        """Create an index on ``key`` (a dotted field); False if it cannot be made."""
        return self.ensure_compound_index([key], unique=bool(unique))

    def ensure_compound_index(
        self, keys: list[str] | tuple[str, ...], unique: bool = False
    ) -> bool:
        """Create an index on several fields; False if it cannot be made (e.g. duplicates)."""
        try:
            exprs = [self._jx(k) for k in keys]
        except _UntranslatableError:
            return False
        digest = hashlib.sha1("|".join(keys).encode()).hexdigest()[:10]
        label = re.sub(r"[^A-Za-z0-9_]", "_", "_".join(keys))[:40]
        name = f"ix_{self.collection_name}_{label}_{'u' if unique else 'n'}_{digest}"
        try:
            with self._lock:
                self._collection.execute(
                    f'CREATE {"UNIQUE " if unique else ""}INDEX IF NOT EXISTS "{name}" '
                    f'ON "{self.collection_name}" ({", ".join(exprs)})'
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def index_names(self) -> list[str]:
        """Names of this store's SQLite indexes."""
        rows = self._collection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
            (self.collection_name,),
        ).fetchall()
        return sorted(r[0] for r in rows)

    def groupby(
        self,
        keys: list[str] | str,
        criteria: dict | None = None,
        properties: dict | list | None = None,
        sort: dict | None = None,
        skip: int = 0,
        limit: int = 0,
    ) -> Iterator[tuple[dict, list[dict]]]:
        """Group documents by the values of ``keys`` (documents lacking a key are left out)."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        if isinstance(properties, dict):
            properties = list(properties)
        fields = keys + list(properties or [])
        data = [
            d
            for d in self.query(
                criteria=criteria, properties=fields, sort=sort, skip=skip, limit=limit
            )
            if all(_has_path(d, k) for k in keys)
        ]

        def grouping_key(doc: dict[str, Any]) -> tuple[str, ...]:
            return tuple(_dumps(_get_path(doc, k)) for k in keys)

        data.sort(key=grouping_key)
        for _, group_iter in _itergroupby(data, key=grouping_key):
            group = list(group_iter)
            head: dict[str, Any] = {}
            for k in keys:
                _set_path(head, k, _get_path(group[0], k))
            yield head, group

    def distinct(self, field: str, criteria: dict | None = None, all_exist: bool = False) -> list:
        """Distinct values of ``field`` (array values are unwound, as in MongoDB)."""
        try:
            self._check_prefixes(field)
            if field in self._array_paths:
                raise _UntranslatableError(field)
            where, params = self._where(criteria)
            rows = self._collection.execute(
                f"SELECT DISTINCT json_quote({self._jx(field)}) FROM "
                f'"{self.collection_name}" WHERE {where} AND {self._jt(field)} IS NOT NULL',
                params,
            ).fetchall()
            return [orjson.loads(r[0]) for r in rows]
        except _UntranslatableError:
            pass
        seen: dict[str, Any] = {}
        for doc in self.query(criteria=criteria, properties=[field]):
            if not _has_path(doc, field):
                continue
            value = _get_path(doc, field)
            for v in value if isinstance(value, list) else [value]:
                seen.setdefault(_dumps(v), v)
        return list(seen.values())

    def remove_docs(self, criteria: dict) -> None:
        """Delete the documents matching ``criteria``."""
        with self._lock:
            try:
                where, params = self._where(criteria)
            except _UntranslatableError:
                ids = [rid for rid, _ in self._scan(criteria)]
                self._collection.executemany(
                    f'DELETE FROM "{self.collection_name}" WHERE id = ?', [(i,) for i in ids]
                )
                return
            self._collection.execute(f'DELETE FROM "{self.collection_name}" WHERE {where}', params)


# --------------------------------------------------------------------------------------------
# blob stores (registry weights)
# --------------------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_blob_id(blob_id: str) -> str:
    if not isinstance(blob_id, str) or not blob_id:
        raise ValueError(f"blob_id must be a non-empty string, got {blob_id!r}")
    return blob_id


class LocalBlobStore(EmbeddedStore):
    """Blobs as files in a folder; their metadata (key ``blob_id``) in an SQLite index there.

    Files are content-addressed (``<sha256>.bin``) and written atomically; reading checks the
    hash, so a truncated or edited file raises instead of returning wrong weights.
    """

    def __init__(self, directory: str, collection_name: str = "blobs", **kwargs: Any) -> None:
        """
        Args:
            directory: folder of the blob files and of ``index.sqlite``.
            collection_name: table name of the metadata.
            kwargs: maggma ``Store`` arguments; ``key`` defaults to ``blob_id``.
        """
        kwargs.setdefault("key", "blob_id")
        self.directory = str(directory)
        super().__init__(
            path=str(Path(directory) / "index.sqlite"), collection_name=collection_name, **kwargs
        )
        self.kwargs = kwargs

    @property
    def name(self) -> str:
        """``blobs://<directory>/<collection>``."""
        return f"blobs://{self.directory}/{self.collection_name}"

    def put_bytes(self, blob_id: str, data: bytes, metadata: dict[str, Any] | None = None) -> str:
        """Store ``data`` under ``blob_id`` (replacing any older version); returns its sha256."""
        _check_blob_id(blob_id)
        if not isinstance(data, bytes | bytearray):
            raise ValueError(f"blob data must be bytes, got {type(data).__name__}")
        digest = _sha256(bytes(data))
        folder = Path(self.directory)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{digest}.bin"
        if not target.exists():
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        self.update(
            {
                "blob_id": blob_id,
                "sha256": digest,
                "size": len(data),
                "file": target.name,
                "metadata": dict(metadata or {}),
                self.last_updated_field: datetime.now().astimezone(),
            },
            key="blob_id",
        )
        return digest

    def get_bytes(self, blob_id: str) -> bytes:
        """The bytes stored under ``blob_id``; ``KeyError`` if absent, ``ValueError`` if corrupt."""
        _check_blob_id(blob_id)
        doc = self.query_one({"blob_id": blob_id})
        if doc is None:
            raise KeyError(f"no blob {blob_id!r} in {self.name}")
        path = Path(self.directory) / doc["file"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ValueError(f"blob {blob_id!r}: file {path} is missing") from None
        if _sha256(data) != doc["sha256"]:
            raise ValueError(f"blob {blob_id!r}: file {path} does not match its sha256")
        return data

    def remove_blob(self, blob_id: str) -> None:
        """Forget ``blob_id`` (its file is deleted when no other blob shares the content)."""
        doc = self.query_one({"blob_id": _check_blob_id(blob_id)})
        if doc is None:
            return
        self.remove_docs({"blob_id": blob_id})
        if self.count({"sha256": doc["sha256"]}) == 0:
            with contextlib.suppress(FileNotFoundError):
                (Path(self.directory) / doc["file"]).unlink()


class GridFSBlobStore(GridFSStore):
    """maggma ``GridFSStore`` with raw-bytes access (``put_bytes``/``get_bytes``) on ``blob_id``."""

    def put_bytes(self, blob_id: str, data: bytes, metadata: dict[str, Any] | None = None) -> str:
        """Store ``data`` under ``blob_id`` (older versions are removed); returns its sha256."""
        _check_blob_id(blob_id)
        if not isinstance(data, bytes | bytearray):
            raise ValueError(f"blob data must be bytes, got {type(data).__name__}")
        digest = _sha256(bytes(data))
        meta = {
            "blob_id": blob_id,
            "sha256": digest,
            "size": len(data),
            "metadata": dict(metadata or {}),
            self.last_updated_field: datetime.now().astimezone(),
        }
        new_id = self._collection.put(bytes(data), filename=blob_id, metadata=meta)
        for old in self._files_collection.find({"metadata.blob_id": blob_id}, ["_id"]):
            if old["_id"] != new_id:
                self._collection.delete(old["_id"])
        return digest

    def get_bytes(self, blob_id: str) -> bytes:
        """The bytes stored under ``blob_id``; ``KeyError`` if absent, ``ValueError`` if corrupt."""
        _check_blob_id(blob_id)
        files = list(
            self._files_collection.find({"metadata.blob_id": blob_id})
            .sort("uploadDate", -1)
            .limit(1)
        )
        if not files:
            raise KeyError(f"no blob {blob_id!r} in {describe_store(self)}")
        data = self._collection.get(files[0]["_id"]).read()
        if _sha256(data) != files[0]["metadata"]["sha256"]:
            raise ValueError(f"blob {blob_id!r} does not match its sha256")
        return bytes(data)

    def remove_blob(self, blob_id: str) -> None:
        """Delete every version of ``blob_id``."""
        for old in self._files_collection.find({"metadata.blob_id": _check_blob_id(blob_id)}):
            self._collection.delete(old["_id"])


# --------------------------------------------------------------------------------------------
# building stores from settings
# --------------------------------------------------------------------------------------------


def embedded_store_path(settings: GMTSettings | None = None) -> Path:
    """The SQLite file of the embedded stores: ``PROJECT_DIR/stores/gmt_stores.sqlite``."""
    settings = settings or GMTSettings()
    return Path(settings.PROJECT_DIR).expanduser() / "stores" / "gmt_stores.sqlite"


def store_from_spec(spec: dict[str, Any]) -> Store:
    """A maggma store from its ``as_dict()`` spec; ``ValueError`` if the spec is not a Store."""
    if not isinstance(spec, dict) or not {"@module", "@class"} <= set(spec):
        raise ValueError("a store spec must be a dict with '@module' and '@class' keys")
    try:
        store = MontyDecoder().process_decoded(dict(spec))
    except Exception as exc:
        raise ValueError(
            f"cannot build a store from the spec {spec.get('@module')}.{spec.get('@class')}: {exc}"
        ) from None
    if isinstance(store, dict):
        raise ValueError(
            f"cannot build a store from the spec {spec['@module']}.{spec['@class']}: "
            "no such class (is its package installed?)"
        )
    if not isinstance(store, Store):
        raise ValueError(
            f"the spec {spec['@module']}.{spec['@class']} does not describe a maggma Store"
        )
    return store


def _mongo_kwargs(settings: GMTSettings) -> dict[str, Any]:
    return {"serverSelectionTimeoutMS": int(settings.STORE_TIMEOUT_S * 1000)}


def _build(settings: GMTSettings | None, spec_field: str, collection_field: str, key: str) -> Store:
    settings = settings or GMTSettings()
    spec = getattr(settings, spec_field)
    collection = getattr(settings, collection_field)
    if spec is not None:
        return store_from_spec(spec)
    uri = settings.mongo_uri
    if uri is not None:
        return MongoStore(
            database=settings.MONGO_DATABASE,
            collection_name=collection,
            uri=uri,
            key=key,
            mongoclient_kwargs=_mongo_kwargs(settings),
        )
    return EmbeddedStore(
        path=str(embedded_store_path(settings)),
        collection_name=collection,
        timeout_s=max(settings.STORE_TIMEOUT_S, 30.0),
        key=key,
    )


def candidate_store(settings: GMTSettings | None = None) -> Store:
    """Store of prediction documents (key ``prediction_id``); not connected yet."""
    return _build(settings, "CANDIDATE_STORE", "CANDIDATE_COLLECTION", PREDICTION_KEY)


def training_store(settings: GMTSettings | None = None) -> Store:
    """Store of training records (key ``record_id``); not connected yet."""
    return _build(settings, "TRAINING_STORE", "TRAINING_COLLECTION", "record_id")


def registry_store(settings: GMTSettings | None = None) -> Store:
    """Store of model-registry documents (key ``model_id``); not connected yet."""
    return _build(settings, "REGISTRY_STORE", "REGISTRY_COLLECTION", "model_id")


def registry_blob_store(settings: GMTSettings | None = None) -> Store:
    """Store of the registry's weight files: GridFS on MongoDB, files in the project folder."""
    settings = settings or GMTSettings()
    if settings.REGISTRY_BLOB_STORE is not None:
        return store_from_spec(settings.REGISTRY_BLOB_STORE)
    uri = settings.mongo_uri
    if uri is not None:
        return GridFSBlobStore(
            database=settings.MONGO_DATABASE,
            collection_name=settings.REGISTRY_BLOB_COLLECTION,
            uri=uri,
            key="blob_id",
            mongoclient_kwargs=_mongo_kwargs(settings),
        )
    folder = embedded_store_path(settings).parent / settings.REGISTRY_BLOB_COLLECTION
    return LocalBlobStore(directory=str(folder), collection_name="blobs")


# --------------------------------------------------------------------------------------------
# indexes, health check, bulk upsert
# --------------------------------------------------------------------------------------------


def _pymongo_collection(store: Store) -> Any | None:
    """The pymongo(-like) collection behind a Mongo-like store, or None."""
    if isinstance(store, GridFSStore):
        return getattr(store, "_files_collection", None)
    if isinstance(store, MongoStore):
        return store._collection
    return None


def ensure_indexes(store: Store, specs: Iterable[tuple[tuple[str, ...], bool]]) -> int:
    """Create the indexes ``specs`` ((fields, unique) pairs) on a connected store.

    Returns how many exist afterwards; raises ``StoreError`` naming an index that could not be
    created (e.g. a unique index over duplicated values).
    """
    specs = list(specs)
    coll = _pymongo_collection(store)
    for fields, unique in specs:
        if isinstance(store, EmbeddedStore):
            ok = store.ensure_compound_index(list(fields), unique=unique)
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
    if isinstance(store, MongoStore | GridFSStore) and not isinstance(store, EmbeddedStore):
        uri = getattr(store, "uri", None)
        coll = getattr(store, "collection_name", "?")
        db = getattr(store, "database", None)
        if uri:
            remember_uri_secrets(uri)  # scrubbed from every later message, too
            return f"{mask_uri(uri)} (database {db!r}, collection {coll!r})"
        if hasattr(store, "host"):
            user = getattr(store, "username", "") or ""
            cred = f"{user}:***@" if user else ""
            return f"mongodb://{cred}{store.host}:{store.port}/{db}/{coll}"
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
    if isinstance(store, EmbeddedStore):
        folder = Path(store.path).parent
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
    """``new`` replaces ``old`` (same ``prediction_id``): it keeps ``old``'s ``source`` and the
    union of both documents' ``sources`` (old names first)."""
    names = list(dict.fromkeys([*_names(old), *_names(new)]))
    if old.get("source"):
        new["source"] = old["source"]
    new["sources"] = names


def add_sources(store: Store, names: dict[str, list[str]]) -> int:
    """Add input ``names`` (``prediction_id`` → names) to the ``sources`` of stored prediction
    documents (e.g. a re-run that skips a crystal already predicted under another file name);
    returns the number of documents changed."""
    if not names:
        return 0
    store.connect()
    changed = []
    for doc in store.query({PREDICTION_KEY: {"$in": list(names)}}):
        merged = list(dict.fromkeys([*_names(doc), *names[doc[PREDICTION_KEY]]]))
        if merged != doc.get("sources"):
            changed.append({**{k: v for k, v in doc.items() if k != "_id"}, "sources": merged})
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
            properties=[PREDICTION_KEY, "source", "sources"],
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
