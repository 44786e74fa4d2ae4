"""Benchmark: point-group operations + the three symmetry projectors per structure.

Runs ``point_group_info`` (default backend) and ``projector`` for dielectric, piezo and elastic
on every structure of the shipped elastic set (mp_legacy_elastic.json.gz) and reports
structures per second (best of ``--repeats`` passes, single process). For reference it also
times the operations alone, the projectors alone, each backend on its own, and a bare
``spglib.get_symmetry_dataset`` call, and counts the structures of all three shipped sets on
which the native and spglib backends disagree.

    python benchmarks/bench_symmetry.py [--repeats 3] [--output benchmarks/results/bench_symmetry.json]

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import spglib
from pymatgen.core import Structure

from atomate2_gmt.tensors import point_group_info, projector

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / "src" / "atomate2_gmt" / "data" / "datasets"
KINDS = ("dielectric", "piezo", "elastic")


def load_structures(kind: str) -> list[Structure]:
    with gzip.open(DATASETS / f"mp_legacy_{kind}.json.gz", "rt") as fh:
        return [Structure.from_dict(r["structure"]) for r in json.load(fh)]


def _cell(s: Structure) -> Any:
    return (s.lattice.matrix, s.frac_coords, s.atomic_numbers)


def best_rate(
    fn: Callable[[Structure], object], structures: list[Structure], repeats: int
) -> float:
    """Structures per second, best of ``repeats`` passes (the machine is shared)."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for s in structures:
            fn(s)
        best = min(best, time.perf_counter() - t0)
    return len(structures) / best


def full_path(s: Structure) -> None:
    info = point_group_info(s)
    for kind in KINDS:
        projector(kind, info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "bench_symmetry.json"
    )
    args = parser.parse_args()

    structures = load_structures("elastic")
    infos = [point_group_info(s) for s in structures]
    rates = {
        "operations + 3 projectors (default)": best_rate(full_path, structures, args.repeats),
        "operations only (default = auto)": best_rate(point_group_info, structures, args.repeats),
        "operations only (native)": best_rate(
            lambda s: point_group_info(s, backend="native"), structures, args.repeats
        ),
        "operations only (spglib backend)": best_rate(
            lambda s: point_group_info(s, backend="spglib"), structures, args.repeats
        ),
        "spglib.get_symmetry_dataset alone": best_rate(
            lambda s: spglib.get_symmetry_dataset(_cell(s), symprec=0.01, angle_tolerance=5.0),
            structures,
            args.repeats,
        ),
    }
    t0 = time.perf_counter()
    for _ in range(args.repeats):
        for info in infos:
            for kind in KINDS:
                projector(kind, info)
    rates["3 projectors only"] = len(infos) * args.repeats / (time.perf_counter() - t0)

    # backend agreement over all shipped structures
    checked, disagree = 0, []
    for kind in KINDS:
        for s in load_structures(kind):
            a, b = point_group_info(s, backend="native"), point_group_info(s, backend="spglib")
            same = len(a.ops) == len(b.ops) and all(
                np.abs(b.ops - g).max(axis=(1, 2)).min() < 1e-6 for g in a.ops
            )
            checked += 1
            if not (same and a.point_group == b.point_group):
                disagree.append(
                    f"{s.composition.reduced_formula}: {a.point_group} vs {b.point_group}"
                )
    order_hist: dict[str, int] = {}
    for info in infos:
        order_hist[info.point_group] = order_hist.get(info.point_group, 0) + 1

    result = {
        "benchmark": "bench_symmetry",
        "dataset": "mp_legacy_elastic.json.gz",
        "n_structures": len(structures),
        "mean_sites": float(np.mean([len(s) for s in structures])),
        "repeats": args.repeats,
        "structures_per_second": {k: round(v, 1) for k, v in rates.items()},
        "target_structures_per_second": 500,
        "meets_target": rates["operations + 3 projectors (default)"] >= 500,
        "backend_agreement": {"checked": checked, "disagree": len(disagree), "cases": disagree},
        "point_groups": dict(sorted(order_hist.items(), key=lambda kv: -kv[1])),
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "spglib": spglib.__version__,
            "platform": platform.platform(),
        },
    }
    print(f"{'path':<40} {'structures/s':>14}")
    print("-" * 56)
    for k, v in rates.items():
        print(f"{k:<40} {v:>14.1f}")
    print(f"\nbackend agreement: {checked - len(disagree)}/{checked} structures identical")
    for case in disagree:
        print(f"  differs: {case}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
