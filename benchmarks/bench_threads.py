"""Forward-pass cost of the three shipped models per structure, with 1 and 2 torch threads.

The three shipped models (dielectric ε∞, piezo, elastic) on the first N structures of the shipped
MP elastic set (12 sites on average), batch 64, float32, pre-built batches, best of 2 passes.
Shows how much the second core buys inside one process (and so whether one two-threaded
screening worker or two one-threaded ones use a 2-core CPU better).

    python benchmarks/bench_threads.py [--n 256] [--threads 1 2]

Prints a table and writes benchmarks/results/bench_threads.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import time
from importlib import resources
from pathlib import Path

import torch
from pymatgen.core import Structure

from atomate2_gmt.model.batch import collate_crystals, prepare_crystal
from atomate2_gmt.model.checkpoint import load_checkpoint
from atomate2_gmt.pretrained import pretrained_path

OUT = Path(__file__).parent / "results" / "bench_threads.json"
TASKS = ("dielectric", "piezo", "elastic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    path = resources.files("atomate2_gmt.data") / "datasets" / "mp_legacy_elastic.json.gz"
    with path.open("rb") as fh, gzip.open(fh, "rt") as gz:
        structures = [Structure.from_dict(r["structure"]) for r in json.load(gz)[: args.n]]
    batches = {}
    models = {}
    for task in TASKS:
        model, _ = load_checkpoint(pretrained_path(task))
        models[task] = model.eval()
        crystals = [prepare_crystal(s, model.config) for s in structures]
        batches[task] = [
            collate_crystals(crystals[i : i + 64]) for i in range(0, len(crystals), 64)
        ]
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        row: dict[str, float | int] = {"threads": threads}
        for task in TASKS:
            best = float("inf")
            with torch.no_grad():
                models[task](batches[task][0])  # warm-up
                for _ in range(2):
                    start = time.perf_counter()
                    for batch in batches[task]:
                        models[task](batch)
                    best = min(best, time.perf_counter() - start)
            row[f"{task}_ms"] = 1000 * best / len(structures)
        row["all_ms"] = sum(row[f"{t}_ms"] for t in TASKS)
        row["structures_per_s"] = 1000 / row["all_ms"]
        rows.append(row)
    print(f"{len(structures)} MP elastic-set structures, batch 64, float32, best of 2")
    print(
        f"{'threads':>7s} " + " ".join(f"{t + ' ms':>13s}" for t in TASKS) + "   all ms  struct/s"
    )
    for r in rows:
        cells = " ".join(f"{r[f'{t}_ms']:13.2f}" for t in TASKS)
        print(f"{r['threads']:7d} {cells} {r['all_ms']:8.2f} {r['structures_per_s']:9.1f}")
    OUT.parent.mkdir(exist_ok=True)
    machine = f"{platform.machine()}, torch {torch.__version__}"
    OUT.write_text(json.dumps({"machine": machine, "n": len(structures), "rows": rows}, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
