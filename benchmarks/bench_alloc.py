"""CPU and system time of the shipped models' forward passes with glibc's default allocator
settings and with ``engine.keep_freed_memory`` (what every model worker runs).

Each measurement is a fresh process (``--child``): one torch thread, the three shipped screening
models (dielectric ε∞, piezo, elastic), the first N structures of the shipped MP elastic set
prepared once, batches of ``--batch``, inference mode, one warm-up pass, then ``getrusage`` over
two passes: user and system milliseconds and minor page faults per structure. The two settings
alternate round by round.

    python benchmarks/bench_alloc.py [--n 256] [--batch 32] [--rounds 2]

Prints a table and writes benchmarks/results/bench_alloc.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "results" / "bench_alloc.json"
TASKS = ("dielectric", "piezo", "elastic")


def child(n: int, batch: int, keep: bool) -> dict[str, float]:
    """One measurement in this process (see the module docstring)."""
    import gzip
    import resource
    from importlib import resources

    import torch
    from pymatgen.core import Structure

    from atomate2_gmt.engine import keep_freed_memory
    from atomate2_gmt.model.batch import collate_crystals, prepare_crystal
    from atomate2_gmt.model.checkpoint import load_checkpoint
    from atomate2_gmt.pretrained import pretrained_path

    torch.set_num_threads(1)
    if keep and not keep_freed_memory():
        raise SystemExit("mallopt is not available here (not glibc)")
    path = resources.files("atomate2_gmt.data") / "datasets" / "mp_legacy_elastic.json.gz"
    with path.open("rb") as fh, gzip.open(fh, "rt") as gz:
        structures = [Structure.from_dict(r["structure"]) for r in json.load(gz)[:n]]
    runs = []
    for task in TASKS:
        model, _ = load_checkpoint(pretrained_path(task))
        model.prepare_inference()
        crystals = [prepare_crystal(s, model.config) for s in structures]
        runs.append(
            (model, [collate_crystals(crystals[i : i + batch]) for i in range(0, n, batch)])
        )
    with torch.inference_mode():
        for model, batches in runs:  # warm-up
            for b in batches:
                model(b)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(2):
            for model, batches in runs:
                for b in batches:
                    model(b)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    count = 2 * n
    return {
        "user_ms": 1e3 * (r1.ru_utime - r0.ru_utime) / count,
        "sys_ms": 1e3 * (r1.ru_stime - r0.ru_stime) / count,
        "minor_faults": (r1.ru_minflt - r0.ru_minflt) / count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=("default", "keep"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.n, args.batch, args.child == "keep")))
        return
    runs: dict[str, list[dict[str, float]]] = {"default": [], "keep": []}
    load_start = os.getloadavg()
    for _ in range(args.rounds):
        for setting in runs:
            cmd = [sys.executable, __file__, "--child", setting, "--n", str(args.n)]
            out = subprocess.run(
                [*cmd, "--batch", str(args.batch)], check=True, capture_output=True, text=True
            )
            runs[setting].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows: list[dict[str, Any]] = []
    print(f"{'allocator':<22}{'user ms':>10}{'sys ms':>10}{'faults':>10}   (per structure)")
    for setting, values in runs.items():
        row = {
            "setting": setting,
            **{k: statistics.median(v[k] for v in values) for k in values[0]},
            "runs": values,
        }
        rows.append(row)
        name = "glibc defaults" if setting == "default" else "keep_freed_memory"
        print(
            f"{name:<22}{row['user_ms']:>10.2f}{row['sys_ms']:>10.2f}{row['minor_faults']:>10.0f}"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
                "command": " ".join(["python benchmarks/bench_alloc.py", *sys.argv[1:]]),
                "load_start": load_start,
                "load_end": os.getloadavg(),
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
