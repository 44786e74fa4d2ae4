"""Packaging: the SPDX licence, one jobflow-remote floor, the wheel check of CI
(``.ci/check_wheel.py``: package data in the wheel, byte for byte), and the dependencies: what
``src/`` imports is declared, and every runtime dependency is imported."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _check_wheel_module():
    spec = importlib.util.spec_from_file_location("check_wheel", ROOT / ".ci" / "check_wheel.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_is_an_spdx_expression(pyproject) -> None:
    assert pyproject["project"]["license"] == "BSD-3-Clause"
    backend = [Requirement(r) for r in pyproject["build-system"]["requires"]]
    setuptools = next(r for r in backend if r.name == "setuptools")
    assert not setuptools.specifier.contains("76.9")  # PEP 639 strings need setuptools >= 77
    assert setuptools.specifier.contains("77.0")


def test_one_jobflow_remote_floor(pyproject) -> None:
    extras = pyproject["project"]["optional-dependencies"]
    specs = {
        str(req.specifier)
        for name in ("remote", "dev")
        for req in map(Requirement, extras[name])
        if req.name == "jobflow-remote"
    }
    assert specs == {">=1.0.1"}
    assert any(Requirement(r).name == "build" for r in extras["dev"])


def _wheel(path: Path, files: dict[str, Path], skip: str = "", change: str = "") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, source in files.items():
            if name == skip:
                continue
            data = source.read_bytes()
            zf.writestr(name, data + b"x" if name == change else data)
    return path


def test_check_wheel_finds_missing_and_changed_package_data(tmp_path) -> None:
    check = _check_wheel_module()
    files = check.expected_files()
    weights = "atomate2_gmt/pretrained/gmtnet_piezo.pt"
    dataset = "atomate2_gmt/data/datasets/mp_legacy_piezo.json.gz"
    assert {weights, dataset, "atomate2_gmt/cli/app.py"} <= set(files)

    assert check.check_wheel(_wheel(tmp_path / "ok.whl", files)) == []
    assert check.check_wheel(_wheel(tmp_path / "a.whl", files, skip=weights)) == [
        f"missing: {weights}"
    ]
    assert check.check_wheel(_wheel(tmp_path / "b.whl", files, change=dataset)) == [
        f"differs from the source: {dataset}"
    ]
    assert check.main([str(tmp_path / "a.whl")]) == 1
    assert check.main([str(tmp_path / "ok.whl")]) == 0


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules(root: Path) -> dict[str, set[str]]:
    """Top-level third-party modules imported anywhere under ``root`` → the files that do."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "atomate2_gmt":
                    found.setdefault(top, set()).add(str(path.relative_to(root)))
    return found


def _declared(requirements: list[str]) -> set[str]:
    return {_normalize(Requirement(r).name) for r in requirements}


def test_imported_modules_are_the_declared_dependencies(pyproject) -> None:
    imported = _imported_modules(ROOT / "src" / "atomate2_gmt")
    assert {"torch", "maggma", "orjson", "mongomock_ng", "pydash"} <= set(imported)
    project = pyproject["project"]
    core = _declared(project["dependencies"])
    extras = {name: _declared(reqs) for name, reqs in project["optional-dependencies"].items()}
    everywhere = core.union(*extras.values())
    distributions = importlib.metadata.packages_distributions()

    undeclared = {
        module: sorted(files)
        for module, files in imported.items()
        if not {_normalize(d) for d in distributions.get(module, [])} & everywhere
    }
    assert undeclared == {}, f"imported by src/ but not declared in pyproject.toml: {undeclared}"

    # every runtime dependency is imported by the package itself
    provided = {_normalize(d) for module in imported for d in distributions.get(module, [])}
    unused = sorted(core - provided)
    assert unused == [], f"runtime dependencies that src/ never imports: {unused}"
    # the extras only add what their feature imports (or pins for it)
    assert {"abinit", "chgnet"}.isdisjoint(extras)
    assert "atomate2" in core
    assert all(Requirement(r).extras == set() for r in project["dependencies"])
    assert {"atomate2", "jobflow-remote", "ruamel-yaml"} <= extras["remote"]
    assert {"fastapi", "uvicorn", "jinja2"} <= extras["web"]
