"""Check that a built wheel holds the package data: every file that pyproject.toml's
``[tool.setuptools.package-data]`` globs match in ``src/`` (shipped weights, datasets, their
READMEs and licences) is in the wheel with the same bytes, and so is every Python module.

    python -m build --wheel --outdir dist
    python .ci/check_wheel.py dist/atomate2_gmt-*.whl

Exits 1 with the list of missing or different files.
"""

from __future__ import annotations

import hashlib
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIRED_GLOBS = ("pretrained/*.pt", "data/datasets/*.json.gz")
"""Globs that must match at least one file (the shipped weights and datasets)."""


def expected_files(root: Path = ROOT) -> dict[str, Path]:
    """Wheel path → source file for the package data and the modules of every package."""
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    src = root / config["packages"]["find"]["where"][0]
    out: dict[str, Path] = {}
    for package, patterns in config["package-data"].items():
        base = src / package.replace(".", "/")
        for pattern in patterns:
            for path in base.glob(pattern):
                if path.is_file():
                    out[path.relative_to(src).as_posix()] = path
        for pattern in REQUIRED_GLOBS:
            if not any(base.glob(pattern)):
                raise SystemExit(f"no file matches {package}/{pattern} in {src}")
    for path in src.rglob("*.py"):
        if "egg-info" not in path.as_posix():
            out[path.relative_to(src).as_posix()] = path
    return out


def check_wheel(wheel: Path, root: Path = ROOT) -> list[str]:
    """Problems found (empty if the wheel holds every expected file byte for byte)."""
    problems = []
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name, path in sorted(expected_files(root).items()):
            if name not in names:
                problems.append(f"missing: {name}")
                continue
            if hashlib.sha256(zf.read(name)).digest() != hashlib.sha256(path.read_bytes()).digest():
                problems.append(f"differs from the source: {name}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_wheel.py WHEEL", file=sys.stderr)
        return 2
    wheel = Path(argv[0])
    problems = check_wheel(wheel)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{wheel.name}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    n = len(expected_files())
    print(f"{wheel.name}: all {n} expected files present and identical to the source")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
