"""Shared fixtures of the data-layer tests: real structures from the shipped MP files."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import pytest
from pymatgen.core import Structure


@cache
def shipped_raw(name: str) -> tuple[dict[str, Any], ...]:
    """Raw records of a shipped ``mp_legacy_<name>.json.gz`` file, read independently of the
    loader under test."""
    path = resources.files("atomate2_gmt.data").joinpath("datasets", f"mp_legacy_{name}.json.gz")
    with path.open("rb") as handle, gzip.open(handle, "rt", encoding="utf-8") as text:
        return tuple(json.load(text))


def raw_by_id(name: str, material_id: str) -> dict[str, Any]:
    """The raw shipped record of ``material_id`` in file ``name``."""
    for raw in shipped_raw(name):
        if raw["material_id"] == material_id:
            return raw
    raise KeyError(material_id)


@pytest.fixture
def raw_file() -> Callable[[str], tuple[dict[str, Any], ...]]:
    """``raw_file(name)``: all raw records of a shipped file, read independently."""
    return shipped_raw


@pytest.fixture
def raw_record() -> Callable[[str, str], dict[str, Any]]:
    """``raw_record(name, material_id)``: a raw shipped record, read independently of the
    loader under test."""
    return raw_by_id


@pytest.fixture
def rb2te() -> Structure:
    """Rb2Te (mp-441, Fm-3m), a real cubic structure of the dielectric file."""
    return Structure.from_dict(raw_by_id("dielectric", "mp-441")["structure"])
