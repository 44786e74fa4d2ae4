"""The embedded store: a maggma ``Store`` of JSON documents in one SQLite file (no server).

Filters and sorts are translated to SQL by :class:`~atomate2_gmt.stores.sql.MongoSQLTranslator`
(indexes on JSON expressions serve them); a filter outside its subset is evaluated in Python
with mongomock's matcher over a scan of the table.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from itertools import groupby as _itergroupby
from pathlib import Path
from typing import Any

import orjson
from maggma.core import Store, StoreError
from monty.json import MSONable

from atomate2_gmt.stores.errors import StoreConnectionError, StoreWriteError
from atomate2_gmt.stores.sql import MongoSQLTranslator, UntranslatableError, json_path

__all__ = ["EmbeddedStore"]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
    """A document as JSON text: orjson (numpy arrays natively) with :func:`_json_default`.

    Not monty's ``jsanitize`` + ``json.dumps``: on a prediction-sized document (20 sites,
    three tensors) that takes 1.17 ms against 0.043 ms here (2-core CI machine), and every
    stored document goes through this."""
    return orjson.dumps(
        doc, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    ).decode()


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


class FileStoreIdentity:
    """Equality and hash of a store kept in a local file or folder (``location``): two stores of
    one class are equal when location, collection name and key agree."""

    collection_name: str
    key: str
    last_updated_field: str

    @property
    def location(self) -> str:
        """Where the store keeps its data (a file or folder path)."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            return False
        return (self.location, self.collection_name, self.key) == (
            other.location,
            other.collection_name,
            other.key,
        )

    def __hash__(self) -> int:
        return hash((self.location, self.collection_name, self.last_updated_field))


_FILE_CONDITIONS = ("locked", "busy", "full", "too big", "file size", "i/o error", "readonly")


def _file_condition(exc: BaseException) -> bool:
    """Whether an SQLite error is about the file (a lock, space, a size limit, permissions),
    which :meth:`EmbeddedStore.sqlite_reason` explains, rather than about the SQL."""
    low = str(exc).lower()
    return any(word in low for word in _FILE_CONDITIONS)


class EmbeddedStore(FileStoreIdentity, Store):
    """A maggma ``Store`` persisted in one SQLite file: no server, safe for several processes.

    Each document is one JSON row of table ``collection_name`` in ``path`` (several stores may
    share a file). Upserts run in one transaction per ``update`` call, so a failed call leaves
    the file as it was. Indexes are SQLite indexes on ``json_extract`` expressions. Queries
    support equality, ``$eq $ne $gt $gte $lt $lte $in $nin $exists $all $and $or $nor`` on
    dotted fields (array fields with MongoDB's "any element" semantics) in SQL; other queries are
    answered by scanning in Python. A query with a sort and a limit (a page of a ranking) walks
    the index of its sort fields (``INDEXED BY``) where there is one, whatever else the filter
    has an index for: it stops once the page is full (a ``hint``, MongoDB-style, names another
    index to use). Datetimes are stored as ISO text; the ``last_updated_field`` is returned as a
    ``datetime``. Sorting follows SQLite's order (null < numbers < text); booleans
    sort as 0/1.
    """

    __module__ = "atomate2_gmt.stores"  # the public path: stable in as_dict() specs and pickles

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
        self._count_conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._count_lock = threading.Lock()
        self._sql = MongoSQLTranslator(column="doc", id_column="id")
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
                f"cannot open the embedded store {self.name}: {self.sqlite_reason(exc)}"
            ) from exc
        self._sql.array_paths = {r[0] for r in rows}
        self._conn = conn
        keys = self.key if isinstance(self.key, list) else [self.key]
        for key in keys:
            self.ensure_index(key)

    def sqlite_reason(self, exc: BaseException) -> str:
        """What an SQLite error means for this file, in words: locked by another process, a
        full disk or file-size limit, a read-only file, or a damaged file."""
        text = str(exc)
        low = text.lower()
        if "locked" in low or "busy" in low:
            return (
                f"{text} (another process holds a lock on the file and did not release it within "
                f"{self.timeout_s:g} s: another run writing to it, or a program that has it open; "
                "wait for it or stop it, then run again)"
            )
        if "full" in low or "too big" in low or "file size" in low or "i/o error" in low:
            return (
                f"{text} (writing the file failed: the disk is full or the file reached a size "
                "limit, e.g. `ulimit -f`, or the storage failed; nothing of this write was kept)"
            )
        if "readonly" in low or "read-only" in low:
            return f"{text} (the file or its folder is read-only)"
        if "unable to open" in low:
            return f"{text} (the file cannot be opened: check the path and its permissions)"
        return f"{text} (the file is damaged or is not an SQLite database)"

    def close(self) -> None:
        """Close the SQLite connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._count_conn is not None:
            self._count_conn.close()
            self._count_conn = None

    @property
    def location(self) -> str:
        """The SQLite file (its identity with ``collection_name`` and ``key``)."""
        return str(self.path)

    def _where(self, criteria: dict[str, Any] | None) -> tuple[str, list[Any]]:
        """SQL condition and parameters of ``criteria`` (``UntranslatableError`` outside SQL)."""
        return self._sql.where(criteria)

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
                self._sql.check_prefixes(f)
                json_path(f)
        except UntranslatableError:
            return None
        return fields

    def _select_ids_and_docs(
        self,
        criteria: dict[str, Any] | None,
        sort: dict[str, Any] | None = None,
        skip: int = 0,
        limit: int = 0,
        properties: dict | list | None = None,
        hint: dict[str, Any] | None = None,
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """(row id, doc) of the matches; docs are already projected when ``properties`` can be
        projected in SQL (then fields holding null are left out, as if missing)."""
        try:
            where, params = self._where(criteria)
            order = self._sql.order_by(sort)
        except UntranslatableError:
            for row_id, doc in self._python_select(criteria, sort, skip, limit):
                yield row_id, self._project(doc, properties)
            return
        fields = self._sql_projection(properties)
        if fields is None:
            column = "doc"
        else:
            paths = [json_path(f) for f in fields]
            if len(paths) == 1:
                paths = paths * 2
            column = "json_extract(doc, " + ", ".join(f"'{p}'" for p in paths) + ")"
        sql = (
            f"SELECT id, {column} FROM {self._source(sort, limit, hint)} WHERE {where} "
            f"ORDER BY {order}"
        )
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
        except UntranslatableError:
            return sum(1 for _ in self._scan(criteria))
        row = self._collection.execute(
            f'SELECT COUNT(*) FROM "{self.collection_name}" WHERE {where}', params
        ).fetchone()
        return int(row[0])

    def query_plan(
        self,
        criteria: dict | None = None,
        sort: dict | None = None,
        limit: int = 0,
        hint: dict | None = None,
    ) -> list[str]:
        """SQLite's ``EXPLAIN QUERY PLAN`` lines of the query ``self.query`` runs for
        ``criteria``, ``sort``, ``limit`` and ``hint`` (``UntranslatableError`` for a query
        answered in Python)."""
        where, params = self._where(criteria)
        sql = (
            f"SELECT id, doc FROM {self._source(sort, limit, hint)} WHERE {where} "
            f"ORDER BY {self._sql.order_by(sort)}"
        )
        if limit:
            sql += f" LIMIT {int(limit)}"
        rows = self._collection.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        return [str(r[-1]) for r in rows]

    def count_within(self, criteria: dict | None, budget_s: float) -> int | None:
        """The exact number of documents matching ``criteria`` if SQLite counts them within
        ``budget_s`` seconds, else None (also None for a filter outside the SQL subset). The
        count runs on a connection of its own, which a progress handler interrupts."""
        try:
            where, params = self._where(criteria)
        except UntranslatableError:
            return None
        _ = self._collection  # connected
        deadline = time.monotonic() + budget_s
        with self._count_lock:
            if self._count_conn is None:
                self._count_conn = sqlite3.connect(
                    self.path, timeout=self.timeout_s, isolation_level=None,
                    check_same_thread=False,
                )  # fmt: skip
            conn = self._count_conn
            conn.set_progress_handler(lambda: time.monotonic() > deadline, 2000)
            try:
                row = conn.execute(
                    f'SELECT COUNT(*) FROM "{self.collection_name}" WHERE {where}', params
                ).fetchone()
            except sqlite3.OperationalError as exc:
                if "interrupt" in str(exc).lower():
                    return None
                raise
            finally:
                conn.set_progress_handler(None, 0)
        return int(row[0])

    def estimate_count(
        self, criteria: dict | None, sample: int = 400, seed: int = 0
    ) -> tuple[int, int, int]:
        """(estimated number of matches, rows sampled, matches among them): ``sample`` row ids
        drawn at random (``seed``: the same draw for the same table) below the largest one,
        the matches among the rows that exist scaled to the whole id range. Rows read: at most
        ``sample``, by primary key."""
        return self.estimate_counts([criteria], sample, seed)[0]

    def estimate_counts(
        self, criteria: list[dict | None], sample: int = 400, seed: int = 0
    ) -> list[tuple[int, int, int]]:
        """:meth:`estimate_count` of each filter of ``criteria``, all from one draw of rows
        (read once: one query for the filters SQL translates, one read of the documents for
        the others)."""
        row = self._collection.execute(f'SELECT MAX(id) FROM "{self.collection_name}"').fetchone()
        max_id = int(row[0] or 0)
        if max_id == 0 or not criteria:
            return [(0, 0, 0)] * len(criteria)
        draw = min(sample, max_id)
        ids = random.Random(seed).sample(range(1, max_id + 1), draw)
        marks = ", ".join("?" * len(ids))
        translated: dict[int, tuple[str, list[Any]]] = {}
        for i, crit in enumerate(criteria):
            with contextlib.suppress(UntranslatableError):
                translated[i] = self._where(crit)
        hits: dict[int, int] = {}
        columns = "".join(
            f", TOTAL(CASE WHEN {where} THEN 1 ELSE 0 END)" for where, _ in translated.values()
        )
        params = [p for _, ps in translated.values() for p in ps]
        result = self._collection.execute(
            f'SELECT COUNT(*){columns} FROM "{self.collection_name}" WHERE id IN ({marks})',
            [*params, *ids],
        ).fetchone()
        found = int(result[0])
        hits.update({i: int(h) for i, h in zip(translated, result[1:], strict=True)})
        others = [i for i in range(len(criteria)) if i not in translated]
        if others:
            from mongomock_ng.filtering import filter_applies

            docs = [
                self._decode(text)
                for (text,) in self._collection.execute(
                    f'SELECT doc FROM "{self.collection_name}" WHERE id IN ({marks})', ids
                )
            ]
            for i in others:
                hits[i] = sum(1 for doc in docs if filter_applies(criteria[i] or {}, doc))
        return [(round(max_id * hits[i] / draw), found, hits[i]) for i in range(len(criteria))]

    def query(  # type: ignore[override]
        self,
        criteria: dict | None = None,
        properties: dict | list | None = None,
        sort: dict | None = None,
        skip: int = 0,
        limit: int = 0,
        hint: dict | None = None,
        **kwargs: Any,
    ) -> Iterator[dict]:
        """Documents matching ``criteria``, sorted (field → 1/-1), projected to ``properties``;
        ``hint``: the fields of the index to walk (as MongoDB's hint)."""
        for _, doc in self._select_ids_and_docs(criteria, sort, skip, limit, properties, hint):
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
            new_paths |= self._record_array_paths(d) - self._sql.array_paths
            prepared.append((d, text))
        if not prepared:
            return
        conn = self._collection
        with self._lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not _file_condition(exc):
                    raise
                raise StoreWriteError(
                    f"cannot write to the embedded store {self.name}: {self.sqlite_reason(exc)}"
                ) from exc
            try:
                if new_paths:
                    conn.executemany(
                        "INSERT OR IGNORE INTO _gmt_array_paths (tbl, path) VALUES (?, ?)",
                        [(self.collection_name, p) for p in sorted(new_paths)],
                    )
                    self._sql.array_paths |= new_paths
                for d, text in prepared:
                    try:
                        where, params = self._where({k: _get_path(d, k) for k in keys})
                        row = conn.execute(
                            f'SELECT id FROM "{self.collection_name}" WHERE {where} LIMIT 1',
                            params,
                        ).fetchone()
                        row_id = row[0] if row else None
                    except UntranslatableError:
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
            except BaseException as exc:
                if conn.in_transaction:  # SQLite may have rolled back already (a full disk)
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                self._sql.array_paths -= new_paths
                if isinstance(exc, sqlite3.OperationalError) and _file_condition(exc):
                    raise StoreWriteError(
                        f"cannot write to the embedded store {self.name}: {self.sqlite_reason(exc)}"
                    ) from exc
                raise

    def ensure_index(self, key: str, unique: bool | None = False) -> bool:
        """Create an index on ``key`` (a dotted field); False if it cannot be made."""
        return self.ensure_compound_index([key], unique=bool(unique))

    def ensure_compound_index(
        self, keys: list[str] | tuple[str, ...], unique: bool = False
    ) -> bool:
        """Create an index on several fields; False if it cannot be made (e.g. duplicates)."""
        try:
            exprs = [self._sql.value_sql(k) for k in keys]
        except UntranslatableError:
            return False
        name = self._index_name(keys, unique)
        try:
            with self._lock:
                self._collection.execute(
                    f'CREATE {"UNIQUE " if unique else ""}INDEX IF NOT EXISTS "{name}" '
                    f'ON "{self.collection_name}" ({", ".join(exprs)})'
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def _source(self, sort: dict | None, limit: int, hint: dict | None) -> str:
        """The table, with the index to walk: the ``hint``'s, else (a page of a ranking) the
        sort's, when it exists."""
        index = self._sort_index(hint) if hint else (self._sort_index(sort) if limit else None)
        source = f'"{self.collection_name}"'
        return source if index is None else f'{source} INDEXED BY "{index}"'

    def _index_name(self, keys: list[str] | tuple[str, ...], unique: bool) -> str:
        digest = hashlib.sha1("|".join(keys).encode()).hexdigest()[:10]
        label = re.sub(r"[^A-Za-z0-9_]", "_", "_".join(keys))[:40]
        return f"ix_{self.collection_name}_{label}_{'u' if unique else 'n'}_{digest}"

    def _sort_index(self, sort: dict[str, Any] | None) -> str | None:
        """The index whose fields are the sort's fields in order (None if there is none)."""
        if not sort:
            return None
        keys = list(sort)
        existing = set(self.index_names())
        for unique in (False, True):
            name = self._index_name(keys, unique)
            if name in existing:
                return name
        return None

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
            self._sql.check_prefixes(field)
            if field in self._sql.array_paths:
                raise UntranslatableError(field)
            where, params = self._where(criteria)
            value, kind = self._sql.value_sql(field), self._sql.type_sql(field)
            rows = self._collection.execute(
                f"SELECT DISTINCT json_quote({value}) FROM "
                f'"{self.collection_name}" WHERE {where} AND {kind} IS NOT NULL',
                params,
            ).fetchall()
            return [orjson.loads(r[0]) for r in rows]
        except UntranslatableError:
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
            except UntranslatableError:
                ids = [rid for rid, _ in self._scan(criteria)]
                self._collection.executemany(
                    f'DELETE FROM "{self.collection_name}" WHERE id = ?', [(i,) for i in ids]
                )
                return
            self._collection.execute(f'DELETE FROM "{self.collection_name}" WHERE {where}', params)
