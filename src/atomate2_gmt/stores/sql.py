"""MongoDB-style filters and sorts as SQLite SQL over a column of JSON documents.

:class:`MongoSQLTranslator` knows nothing of maggma or of this project: it turns a filter dict
into a ``WHERE`` clause with ``?`` parameters (user values never become SQL text) and a sort dict
into an ``ORDER BY`` clause, over SQLite's JSON functions (``json_extract``, ``json_type``,
``json_each``). Anything outside its subset raises :class:`UntranslatableError`; the caller then
evaluates the filter in Python (the embedded store uses mongomock's matcher).

Supported: equality and ``$eq $ne $gt $gte $lt $lte $in $nin $all $exists`` on dotted fields of
scalars (``None``, booleans, numbers, text, datetimes as ISO text), combined with ``$and $or
$nor``. Fields listed in ``array_paths`` get MongoDB's "any element" semantics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

__all__ = ["MongoSQLTranslator", "UntranslatableError", "iso_text", "json_path"]

_KEY_RE = re.compile(r"^[A-Za-z_@$][A-Za-z0-9_@\-]*$")
_COMPARISONS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_NUMBER_TYPES = "('integer', 'real')"
_MAX_IN = 30000
"""Longest ``$in`` list sent to SQLite as parameters (its limit is 32766)."""


class UntranslatableError(Exception):
    """A query construct outside the SQL subset: evaluate the query in Python instead."""


def iso_text(value: datetime) -> str:
    """The ISO text orjson writes for a datetime (so that query operands match stored values)."""
    return orjson.loads(orjson.dumps(value))  # type: ignore[no-any-return]


def json_path(field: str) -> str:
    """SQLite JSON path of a dotted ``field`` (each part quoted); untranslatable odd names."""
    parts = field.split(".")
    if not all(_KEY_RE.match(p) for p in parts):
        raise UntranslatableError(field)
    return "$." + ".".join(f'"{p}"' for p in parts)


def _is_composite(value: Any) -> bool:
    return isinstance(value, dict | list | tuple)


class MongoSQLTranslator:
    """Translate MongoDB-style filters and sorts to SQLite over a JSON text column.

    ``array_paths`` is the set of dotted fields that hold arrays in some document (the caller
    keeps it up to date as documents are written; it may be mutated in place). A field below an
    array path is untranslatable: its elements could be documents.
    """

    def __init__(
        self,
        column: str = "doc",
        id_column: str = "id",
        array_paths: Iterable[str] = (),
    ) -> None:
        """
        Args:
            column: the column holding each document as JSON text.
            id_column: the row-id column (tie-breaker of every sort).
            array_paths: dotted fields known to hold arrays.
        """
        for name in (column, id_column):
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(f"column name {name!r} must be letters, digits and underscores")
        self.column = column
        self.id_column = id_column
        self.array_paths: set[str] = set(array_paths)

    # ---- expressions --------------------------------------------------------------------------
    def value_sql(self, field: str) -> str:
        """SQL of the JSON value at ``field`` (``json_extract``)."""
        return f"json_extract({self.column}, '{json_path(field)}')"

    def type_sql(self, field: str) -> str:
        """SQL of the JSON type at ``field`` (``json_type``; NULL when absent)."""
        return f"json_type({self.column}, '{json_path(field)}')"

    def check_prefixes(self, field: str) -> None:
        """Untranslatable if a parent of ``field`` holds arrays."""
        parts = field.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[:i]) in self.array_paths:
                raise UntranslatableError(field)

    @staticmethod
    def _value_cond(value_sql: str, type_sql: str, op: str, value: Any) -> tuple[str, list[Any]]:
        """Condition on one JSON value (given its SQL value and json type expressions)."""
        if isinstance(value, datetime):
            value = iso_text(value)
        if op == "=":
            if value is None:
                return f"({type_sql} IS NULL OR {type_sql} = 'null')", []
            if isinstance(value, bool):
                return f"{type_sql} = '{'true' if value else 'false'}'", []
            if isinstance(value, int | float):
                return f"({value_sql} = ? AND {type_sql} IN {_NUMBER_TYPES})", [value]
            if isinstance(value, str):
                return f"({value_sql} = ? AND {type_sql} = 'text')", [value]
            raise UntranslatableError(value)
        if value is None or isinstance(value, bool):
            raise UntranslatableError(value)
        if isinstance(value, int | float):
            return f"({value_sql} {op} ? AND {type_sql} IN {_NUMBER_TYPES})", [value]
        if isinstance(value, str):
            return f"({value_sql} {op} ? AND {type_sql} = 'text')", [value]
        raise UntranslatableError(value)

    def atom(self, field: str, op: str, value: Any) -> tuple[str, list[Any]]:
        """``field op value`` (op one of ``= < <= > >=``), any-element semantics on arrays."""
        self.check_prefixes(field)
        scalar_sql, params = self._value_cond(
            self.value_sql(field), self.type_sql(field), op, value
        )
        if field not in self.array_paths:
            return scalar_sql, params
        if value is None:
            raise UntranslatableError(field)
        elem_sql, elem_params = self._value_cond("je.value", "je.type", op, value)
        return (
            f"({scalar_sql} OR ({self.type_sql(field)} = 'array' AND EXISTS "
            f"(SELECT 1 FROM json_each({self.column}, '{json_path(field)}') AS je "
            f"WHERE {elem_sql})))",
            params + elem_params,
        )

    def in_sql(self, field: str, values: list[Any]) -> tuple[str, list[Any]]:
        """``field`` equal to any of ``values`` (one SQL IN list per JSON type)."""
        if len(values) > _MAX_IN:
            raise UntranslatableError(field)
        self.check_prefixes(field)
        values = [iso_text(v) if isinstance(v, datetime) else v for v in values]
        texts = [v for v in values if isinstance(v, str)]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        others = [v for v in values if v is None or isinstance(v, bool)]
        if len(texts) + len(numbers) + len(others) != len(values):
            raise UntranslatableError(field)
        is_array = field in self.array_paths
        path = json_path(field)
        parts: list[str] = []
        params: list[Any] = []
        for group, types in ((texts, "('text')"), (numbers, _NUMBER_TYPES)):
            if not group:
                continue
            marks = ", ".join("?" * len(group))
            parts.append(
                f"({self.value_sql(field)} IN ({marks}) AND {self.type_sql(field)} IN {types})"
            )
            params.extend(group)
            if is_array:
                parts.append(
                    f"({self.type_sql(field)} = 'array' AND EXISTS (SELECT 1 FROM "
                    f"json_each({self.column}, '{path}') AS je WHERE je.value IN ({marks}) "
                    f"AND je.type IN {types}))"
                )
                params.extend(group)
        for v in others:
            sql, p = self.atom(field, "=", v)
            parts.append(sql)
            params.extend(p)
        return "(" + " OR ".join(parts) + ")", params

    # ---- filters ------------------------------------------------------------------------------
    def _list_operator(self, field: str, op: str, operand: Any) -> tuple[str, list[Any]]:
        """``$in``, ``$nin`` or ``$all`` with a list of scalars."""
        if not isinstance(operand, list | tuple) or any(_is_composite(v) for v in operand):
            raise UntranslatableError(field)
        if not operand:
            return ("1" if op == "$nin" else "0"), []
        if op == "$all":
            subs = [self.atom(field, "=", v) for v in operand]
            return "(" + " AND ".join(s for s, _ in subs) + ")", [x for _, ps in subs for x in ps]
        sql, params = self.in_sql(field, list(operand))
        return (f"NOT IFNULL({sql}, 0)" if op == "$nin" else sql), params

    def _operator(self, field: str, op: str, operand: Any) -> tuple[str, list[Any]]:
        """One ``{op: operand}`` condition on ``field``."""
        if op in ("$eq", "$ne"):
            if _is_composite(operand):
                raise UntranslatableError(field)
            if op == "$ne" and operand is None and field not in self.array_paths:
                # present and not null: a range an index on the field serves (nulls skipped)
                self.check_prefixes(field)
                return f"{self.value_sql(field)} IS NOT NULL", []
            sql, params = self.atom(field, "=", operand)
            return (f"NOT IFNULL({sql}, 0)" if op == "$ne" else sql), params
        if op in _COMPARISONS:
            return self.atom(field, _COMPARISONS[op], operand)
        if op in ("$in", "$nin", "$all"):
            return self._list_operator(field, op, operand)
        if op == "$exists":
            self.check_prefixes(field)
            return f"{self.type_sql(field)} IS {'NOT ' if operand else ''}NULL", []
        raise UntranslatableError(op)

    def field_sql(self, field: str, cond: Any) -> tuple[str, list[Any]]:
        """The condition ``cond`` (a value or an operator dict) on ``field``."""
        if field.startswith("$"):
            raise UntranslatableError(field)
        if not (isinstance(cond, dict) and cond and all(str(k).startswith("$") for k in cond)):
            if _is_composite(cond):
                raise UntranslatableError(field)
            return self.atom(field, "=", cond)
        parts: list[str] = []
        params: list[Any] = []
        for op, operand in cond.items():
            sql, p = self._operator(field, op, operand)
            parts.append(sql)
            params.extend(p)
        return "(" + " AND ".join(parts) + ")", params

    def where(self, criteria: dict[str, Any] | None) -> tuple[str, list[Any]]:
        """``WHERE`` clause (without the keyword) and its parameters for a filter dict.

        ``ValueError`` for a malformed filter; :class:`UntranslatableError` for one outside the
        SQL subset.
        """
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
                subs = [self.where(c) for c in cond]
                joiner = " AND " if field == "$and" else " OR "
                sql = "(" + joiner.join(f"({s})" for s, _ in subs) + ")"
                if field == "$nor":
                    sql = f"NOT IFNULL({sql}, 0)"
                parts.append(sql)
                params.extend(x for _, ps in subs for x in ps)
            else:
                sql, p = self.field_sql(field, cond)
                parts.append(sql)
                params.extend(p)
        return " AND ".join(parts), params

    def order_by(self, sort: dict[str, Any] | None) -> str:
        """``ORDER BY`` terms (field → 1/-1 or a maggma ``Sort``); ties broken by row id in the
        direction of the last term, so that a single-field sort can walk that field's index in
        either direction."""
        if not sort:
            return self.id_column
        terms = []
        last = "ASC"
        for field, direction in sort.items():
            self.check_prefixes(field)
            if field in self.array_paths:
                raise UntranslatableError(field)
            value = direction.value if hasattr(direction, "value") else int(direction)
            last = "DESC" if value < 0 else "ASC"
            terms.append(f"{self.value_sql(field)} {last}")
        return ", ".join([*terms, f"{self.id_column} {last}"])
