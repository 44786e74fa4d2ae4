"""Caller-supplied MongoDB-style filters, checked against an allow-list of operators before
they reach a store (every public function that takes a ``criteria`` dict calls
:func:`check_criteria`)."""

from __future__ import annotations

from typing import Any

__all__ = ["ALLOWED_OPERATORS", "check_criteria"]

#: The MongoDB query operators a caller-supplied criteria dict may use
#: (:func:`check_criteria`): comparisons, membership and logic; never ``$where``, ``$expr``,
#: ``$function``, ``$regex`` or other operators that run code or scan text.
ALLOWED_OPERATORS = frozenset(
    {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$all", "$and", "$or"}
)


def check_criteria(criteria: Any, path: str = "criteria") -> dict[str, Any]:
    """``criteria`` (a MongoDB-style filter given by a caller) if every operator in it is in
    :data:`ALLOWED_OPERATORS` and every field name is a plain name; ValueError otherwise."""
    if not isinstance(criteria, dict):
        raise ValueError(f"{path} must be a dict, got {type(criteria).__name__}")
    for key, value in criteria.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{path} has a non-string or empty key {key!r}")
        if key.startswith("$"):
            if key not in ALLOWED_OPERATORS:
                raise ValueError(
                    f"operator {key!r} in {path} is not allowed; allowed: "
                    f"{', '.join(sorted(ALLOWED_OPERATORS))}"
                )
            if key in ("$and", "$or"):
                if not isinstance(value, list):
                    raise ValueError(f"{key} in {path} takes a list of filters")
                for i, sub in enumerate(value):
                    check_criteria(sub, f"{path}.{key}[{i}]")
                continue
        elif "$" in key or "\x00" in key:
            raise ValueError(f"field name {key!r} in {path} may not contain '$' or NUL")
        if isinstance(value, dict):
            check_criteria(value, f"{path}.{key}")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    check_criteria(item, f"{path}.{key}[]")
    return criteria
