"""The layer table of docs/architecture.md, checked on the imports of the source (ast).

The table is read from the document itself (its ```layers block), so the test cannot drift
from it: every unit of the package (a module or subpackage directly under ``atomate2_gmt/``)
must be in the table and every unit of the table in the package. Every import counts, also one
inside a function or under ``TYPE_CHECKING``: a lazy import is still a dependency. A module may
*reach* (through any chain of imports) only units of its own layer or below, and never a
third-party package its unit's row forbids; the import graph of the modules has no cycle.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

import atomate2_gmt

PACKAGE = Path(atomate2_gmt.__file__).parent
DOC = Path(__file__).parents[2] / "docs" / "architecture.md"


@dataclass(frozen=True)
class Unit:
    name: str
    layer: int
    never: frozenset[str]


def layer_table(text: str) -> dict[str, Unit]:
    """The units of the first ```layers block of ``text``: ``layer unit [package ...]`` rows,
    ``#`` comments."""
    start = text.index("```layers\n") + len("```layers\n")
    block = text[start : text.index("```", start)]
    units: dict[str, Unit] = {}
    for line in block.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        layer, name, *never = line.split()
        assert name not in units, f"unit {name} is listed twice in the layer table"
        units[name] = Unit(name, int(layer), frozenset(never))
    return units


def modules(package: Path) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` file of the package."""
    out = {}
    for path in package.rglob("*.py"):
        rel = path.relative_to(package.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


def imports(path: Path, name: str, known: set[str]) -> tuple[set[str], set[str]]:
    """(modules of the package, top-level third-party packages) that ``path`` (module ``name``)
    imports anywhere: ``from atomate2_gmt.a import b`` is module ``a.b`` if that is a module,
    else ``a``; relative imports are resolved."""
    root = name.split(".")[0]
    ours: set[str] = set()
    third: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            targets = [(base, [alias.name for alias in node.names])]
        else:
            continue
        for module, names in targets:
            if module.split(".")[0] != root:
                third.add(module.split(".")[0])
                continue
            found = {f"{module}.{n}" for n in names if f"{module}.{n}" in known}
            if len(found) < len(names) or not names:  # names that are not submodules
                parts = module.split(".")
                while parts and ".".join(parts) not in known:
                    parts.pop()
                found.add(".".join(parts))
            ours |= found - {name}
    return ours, third


def unit_of(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    mods = modules(PACKAGE)
    edges, third = {}, {}
    for name, path in mods.items():
        edges[name], third[name] = imports(path, name, set(mods))
    return edges, third


@pytest.fixture(scope="module")
def table() -> dict[str, Unit]:
    return layer_table(DOC.read_text(encoding="utf-8"))


def reachable(edges: dict[str, set[str]], start: str) -> dict[str, str | None]:
    """Every module ``start`` reaches → the module it was reached from (a shortest path)."""
    seen: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        for there in sorted(edges[here]):
            if there not in seen:
                seen[there] = here
                queue.append(there)
    return seen


def chain(seen: dict[str, str | None], end: str) -> str:
    path = [end]
    while (before := seen[path[-1]]) is not None:
        path.append(before)
    return " → ".join(reversed(path))


def test_the_table_names_every_unit_of_the_package(table, graph) -> None:
    edges, _ = graph
    units = {unit_of(m) for m in edges}
    assert units - set(table) == set(), "units missing from the layer table of architecture.md"
    assert set(table) - units == set(), "units of the layer table that the package does not have"


def test_no_module_reaches_a_higher_layer(table, graph) -> None:
    edges, _ = graph
    problems = []
    for module in sorted(edges):
        own = table[unit_of(module)]
        seen = reachable(edges, module)
        for other in sorted(seen):
            unit = table[unit_of(other)]
            if unit.layer > own.layer:
                problems.append(
                    f"{own.name} (layer {own.layer}) reaches {unit.name} (layer "
                    f"{unit.layer}): {chain(seen, other)}"
                )
                break
    assert not problems, "\n".join(problems)


def test_no_module_reaches_a_forbidden_package(table, graph) -> None:
    edges, third = graph
    problems = []
    for module in sorted(edges):
        own = table[unit_of(module)]
        if not own.never:
            continue
        seen = reachable(edges, module)
        for other in sorted(seen):
            bad = third[other] & own.never
            if bad:
                problems.append(
                    f"{own.name} must never reach {sorted(bad)}: {chain(seen, other)} imports it"
                )
                break
    assert not problems, "\n".join(problems)


def test_the_import_graph_has_no_cycle(graph) -> None:
    edges, _ = graph
    for module in sorted(edges):
        for target in sorted(edges[module]):
            seen = reachable(edges, target)
            assert module not in seen, f"import cycle: {module} → {chain(seen, module)}"


def test_the_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Lazy, TYPE_CHECKING, package-level and relative imports are all found."""
    package = tmp_path / "atomate2_gmt"
    (package / "sub").mkdir(parents=True)
    for name in ("__init__.py", "stores.py", "jobs.py", "sub/__init__.py", "sub/sibling.py"):
        (package / name).write_text("", encoding="utf-8")
    source = package / "sub" / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import numpy as np\n"
        "from atomate2_gmt import stores\n"
        "if TYPE_CHECKING:\n"
        "    from atomate2_gmt.jobs import GMTPredictMaker\n"
        "def f():\n"
        "    import torch.nn\n"
        "from . import sibling\n"
        "from .. import __version__\n",
        encoding="utf-8",
    )
    known = set(modules(package))
    ours, third = imports(source, "atomate2_gmt.sub.mod", known)
    assert ours == {"atomate2_gmt.stores", "atomate2_gmt.jobs", "atomate2_gmt.sub.sibling",
                    "atomate2_gmt"}  # fmt: skip
    assert third == {"typing", "numpy", "torch"}


def test_the_table_parser_reads_the_documented_form() -> None:
    text = "x\n```layers\n# comment\n1  tensors  torch e3nn\n2  model\n```\n"
    assert layer_table(text) == {
        "tensors": Unit("tensors", 1, frozenset({"torch", "e3nn"})),
        "model": Unit("model", 2, frozenset()),
    }
