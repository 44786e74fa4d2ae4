"""The layer order of docs/architecture.md, checked on the imports of the source (ast).

Every import counts, also one inside a function: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import atomate2_gmt

PACKAGE = Path(atomate2_gmt.__file__).parent

#: layer → what it must never import: parts of the package (first name below atomate2_gmt) and
#: third-party top-level packages (docs/architecture.md)
FORBIDDEN: dict[str, set[str]] = {
    "tensors": {
        "torch", "e3nn", "jobflow", "maggma", "model", "data", "training", "schemas", "stores",
        "jobs", "flows", "dfpt", "registry", "engine", "query", "candidates", "settings", "cli",
        "web",
    },
    "model": {
        "jobflow", "maggma", "data", "training", "schemas", "stores", "jobs", "flows", "dfpt",
        "registry", "engine", "query", "candidates", "settings", "cli", "web",
    },
    "data": {"jobflow", "training", "schemas", "stores", "jobs", "flows", "dfpt", "cli", "web"},
    "training": {"jobflow", "jobs", "flows", "dfpt", "registry", "engine", "cli", "web"},
    "schemas": {"torch", "model", "training", "stores", "jobs", "flows", "engine", "cli", "web"},
    "stores": {"torch", "model", "training", "jobs", "flows", "dfpt", "engine", "cli", "web"},
    "dfpt": {"torch", "model", "training", "jobs", "flows", "engine", "cli", "web"},
    "engine": {"jobflow", "jobs", "flows", "cli", "web"},
    "jobs": {"flows", "cli", "web"},
    "flows": {"cli", "web"},
}  # fmt: skip


def _imports(path: Path) -> set[str]:
    """Top-level names a file imports: ``atomate2_gmt.X`` → ``X``, ``torch.nn`` → ``torch``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
            if node.module == "atomate2_gmt":
                modules = [f"atomate2_gmt.{alias.name}" for alias in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "atomate2_gmt":
                if len(parts) > 1:
                    names.add(parts[1].removesuffix(".py"))
            else:
                names.add(parts[0])
    return names


def _layer_files(layer: str) -> list[Path]:
    folder = PACKAGE / layer
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{layer}.py"]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_below_it(layer: str) -> None:
    files = _layer_files(layer)
    assert files, f"layer {layer} has no source files"
    assert all(f.is_file() for f in files), f"layer {layer} has no source files"
    found = {
        f"{f.relative_to(PACKAGE)} imports {name}"
        for f in files
        for name in _imports(f) & FORBIDDEN[layer]
    }
    assert not found, f"{layer} breaks the layer order of docs/architecture.md: {sorted(found)}"


def test_only_the_cli_imports_the_edges() -> None:
    """cli/ and web/ are the edge: nothing else in the package imports them."""
    offenders = sorted(
        f"{f.relative_to(PACKAGE)} imports {name}"
        for f in PACKAGE.rglob("*.py")
        if f.relative_to(PACKAGE).parts[0] not in ("cli", "web")
        for name in _imports(f) & {"cli", "web"}
    )
    assert not offenders, offenders


def test_the_checker_sees_lazy_and_package_imports(tmp_path: Path) -> None:
    """A forbidden import inside a function, or as ``from atomate2_gmt import x``, is found."""
    source = tmp_path / "mod.py"
    source.write_text(
        "import numpy as np\n"
        "from atomate2_gmt import stores\n"
        "def f():\n"
        "    from atomate2_gmt.jobs.predict import GMTPredictMaker\n"
        "    import torch.nn\n"
        "from . import sibling\n",
        encoding="utf-8",
    )
    assert _imports(source) == {"numpy", "stores", "jobs", "torch"}
