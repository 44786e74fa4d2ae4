"""Benchmark: how often the likely-metal rule (atomate2_gmt.schemas.metallicity) fires.

On the shipped MP records (dielectric and piezo: every record is an insulator with a DFT band
gap, so each flag is a false positive; elastic: unlabelled, many intermetallics and metals) and
on the demo's 300 substitution candidates (``generate_substitution_candidates(n=300, seed=0)``).
Counts flags per part of the rule and times the check.

    python benchmarks/bench_metals.py [--output benchmarks/results/bench_metals.json]

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path
from typing import Any

from atomate2_gmt.schemas.metallicity import MetalCheck, likely_metal

ROOT = Path(__file__).resolve().parents[1]


def _part(check: MetalCheck) -> str:
    reason = check.reason or ""
    for part in ("no charge-balanced", "no anion", "open-shell", "odd number"):
        if reason.startswith(part):
            return part
    return reason


def rates(name: str, structures: list[Any], formulas: list[str]) -> dict[str, Any]:
    """Flags of the rule on ``structures``: counts per part, flagged formulas, ms per check."""
    t0 = time.perf_counter()
    checks = [likely_metal(s) for s in structures]
    ms = 1000 * (time.perf_counter() - t0) / max(1, len(structures))
    flagged = [f for f, c in zip(formulas, checks, strict=True) if c.likely_metal]
    return {
        "set": name,
        "n": len(structures),
        "n_flagged": len(flagged),
        "flagged_pct": 100 * len(flagged) / max(1, len(structures)),
        "n_undecided": sum(c.likely_metal is None for c in checks),
        "by_part": dict(collections.Counter(_part(c) for c in checks if c.likely_metal)),
        "flagged": flagged,
        "ms_per_structure": ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks/results/bench_metals.json"
    )
    args = parser.parse_args()

    from atomate2_gmt.substitution import generate_substitution_candidates
    from atomate2_gmt.training.run import load_records

    rows = []
    for task in ("dielectric", "piezo", "elastic"):
        records, _ = load_records(task, "mp")
        label = f"MP {task} ({'insulators' if task != 'elastic' else 'unlabelled'})"
        rows.append(
            rates(
                label,
                [r.structure for r in records],
                [r.structure.composition.reduced_formula for r in records],
            )
        )
    cands = [c for c in generate_substitution_candidates(n=300, seed=0) if c.structure]
    rows.append(
        rates(
            "demo candidates (n=300, seed 0)",
            [c.structure for c in cands],
            [c.structure.composition.reduced_formula for c in cands],  # type: ignore[union-attr]
        )
    )
    print("| set | n | flagged | % | by part | ms/structure |\n|---|---|---|---|---|---|")
    for r in rows:
        parts = ", ".join(f"{k} {v}" for k, v in r["by_part"].items())
        print(
            f"| {r['set']} | {r['n']} | {r['n_flagged']} | {r['flagged_pct']:.1f} | {parts} | "
            f"{r['ms_per_structure']:.1f} |"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"command": "python benchmarks/bench_metals.py", "rows": rows}, indent=1)
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
