"""The four-model table (invariant, + group averaging, GMTNet w/o symmetry, GMTNet).

Reads a ``comparison.json`` written by ``atomate2_gmt.training.baselines.compare_models`` (default:
the committed dielectric run), or runs the comparison first with ``--run``; prints the Markdown
table and writes a compact JSON (metrics, parameters, seconds per epoch and per batch) to
benchmarks/results/bench_baselines_<task>.json.

    python benchmarks/bench_baselines.py                                   # committed result
    python benchmarks/bench_baselines.py --run --task piezo --epochs 50 --out runs/baselines
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from atomate2_gmt.training.baselines import compare_models, comparison_markdown

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results"


def summary(comparison: dict[str, Any]) -> dict[str, Any]:
    """Per model: overall metrics, parameters, timing (s); plus split, epochs, machine."""
    keep = ("n_parameters", "best_epoch", "mean_epoch_s", "train_time_per_batch_s")
    return {
        "task": comparison["task"],
        "epochs": comparison["epochs"],
        "split_sizes": comparison["split_sizes"],
        "machine": comparison["machine"],
        "command": comparison["command"],
        "models": {
            name: {
                "label": r["label"],
                **{k: r[k] for k in keep},
                "eval_time_per_batch_s": r["time_per_batch_s"],
                "overall": r["overall"],
                **{k: r[k] for k in ("nonzero_subset", "rotated_test") if k in r},
            }
            for name, r in comparison["models"].items()
        },
    }


def main() -> None:
    """Parse arguments, load or run the comparison, print and write."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="dielectric")
    ap.add_argument("--comparison", type=Path, help="comparison.json to read")
    ap.add_argument("--run", action="store_true", help="run (or resume) the comparison first")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path("runs/baselines"))
    ap.add_argument("--max-abs-target", type=float, default=None)
    ap.add_argument("--json", type=Path, help="output JSON (default benchmarks/results/...)")
    args = ap.parse_args()
    if args.run:
        comparison = compare_models(
            args.task,
            args.out / args.task,
            args.epochs,
            max_abs_target=args.max_abs_target,
            progress=True,
        )
    else:
        path = args.comparison or ROOT / "docs/figures/baselines" / args.task / "comparison.json"
        comparison = json.loads(path.read_text())
    print(comparison_markdown(comparison))
    out = args.json or RESULTS / f"bench_baselines_{args.task}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary(comparison), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
