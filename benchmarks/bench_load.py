"""Model loading: seconds per shipped model in a fresh process, and whether predictions change.

Each measurement is a fresh Python process (``--child``) that imports the package, then loads
every shipped model the way a prediction process does (``registry.loading.load_model_spec(task,
"pretrained")``: build, weights, and whatever that function runs besides), timing each, then
times ``load_checkpoint`` of each again (build + weights only, second build in the process), and
finally predicts ``--n`` shipped MP structures with every model, writing the tensors to a file.

With ``--baseline-src DIR`` (the ``src`` of another checkout, e.g. a worktree of main) the
same child runs on that code too, alternating the two code trees round by round under the same
conditions, and the predictions of the two are compared bit for bit (max |Δ| over all tensors).
Prints a table and writes benchmarks/results/bench_load.json (with the load average).

    python benchmarks/bench_load.py --rounds 3 --n 200 [--baseline-src ../main/src]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "bench_load.json"
SRC = HERE.parent / "src"


def child(n: int, out: Path) -> None:
    """One fresh process: imports, per-model loads, a second build of each, predictions."""
    t0 = time.perf_counter()
    import numpy as np
    import torch

    from atomate2_gmt.model.checkpoint import load_checkpoint
    from atomate2_gmt.model.predict import predict
    from atomate2_gmt.pretrained import available, pretrained_path
    from atomate2_gmt.registry.loading import load_model_spec

    imports = time.perf_counter() - t0
    torch.set_num_threads(1)
    load, rebuild, models = {}, {}, {}
    for task in available():
        start = time.perf_counter()
        models[task] = load_model_spec(task, "pretrained")[0]
        load[task] = time.perf_counter() - start
    for task in available():
        start = time.perf_counter()
        load_checkpoint(pretrained_path(task))
        rebuild[task] = time.perf_counter() - start
    from importlib import resources

    from pymatgen.core import Structure

    data = resources.files("atomate2_gmt.data").joinpath("datasets")
    structures = []
    for name in ("dielectric", "piezo", "elastic"):
        with gzip.open(str(data.joinpath(f"mp_legacy_{name}.json.gz")), "rt") as fh:
            records = json.load(fh)
        structures += [Structure.from_dict(r["structure"]) for r in records[: n // 3 + 1]]
    structures = structures[:n]
    arrays = {}
    for task, model in models.items():
        results = predict(structures, task, model=model, device="cpu")
        arrays[task] = np.array(
            [
                np.asarray(r["tensor"], dtype=np.float64)
                if r["state"] == "successful"
                else np.full((3,) * model.config.order, np.nan)
                for r in results
            ]
        )
    np.savez(out, **arrays)  # type: ignore[arg-type]
    print(json.dumps({"imports_s": imports, "load_s": load, "rebuild_s": rebuild}))


def run_child(src: Path, n: int, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", "--n", str(n), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=200, help="structures predicted per task")
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.n, args.out)
        return
    import numpy as np

    trees = {"this": SRC}
    if args.baseline_src is not None:
        trees = {"baseline": args.baseline_src.resolve(), "this": SRC}
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    loadavg = [os.getloadavg()[0]]
    tmp = Path(tempfile.mkdtemp(prefix="bench_load_"))
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))  # alternate who goes first
        for name in order:
            runs[name].append(run_child(trees[name], args.n, tmp / f"{name}_{r}.npz"))
            loadavg.append(os.getloadavg()[0])

    tasks = list(runs["this"][0]["load_s"])
    rows = []
    for name, items in runs.items():
        for task in tasks:
            rows.append(
                {
                    "code": name,
                    "task": task,
                    "load_median_s": statistics.median(i["load_s"][task] for i in items),
                    "load_max_s": max(i["load_s"][task] for i in items),
                    "rebuild_median_s": statistics.median(i["rebuild_s"][task] for i in items),
                }
            )
        rows.append(
            {
                "code": name,
                "task": "(imports)",
                "load_median_s": statistics.median(i["imports_s"] for i in items),
                "load_max_s": max(i["imports_s"] for i in items),
                "rebuild_median_s": None,
            }
        )
    # predictions: identical across rounds of one tree, and between the trees
    diffs: dict[str, float] = {}
    reference = np.load(tmp / "this_0.npz")
    n_compared = {t: int(reference[t].shape[0]) for t in reference.files}
    for name in trees:
        for r in range(args.rounds):
            other = np.load(tmp / f"{name}_{r}.npz")
            for task in reference.files:
                a, b = reference[task], other[task]
                same_nan = bool(np.array_equal(np.isnan(a), np.isnan(b)))
                d = float(np.nanmax(np.abs(a - b))) if same_nan else float("inf")
                diffs[task] = max(diffs.get(task, 0.0), d)

    print(f"model loading, fresh process per run, {args.rounds} rounds (load avg {loadavg})")
    print(f"{'code':<9} {'task':<17} {'load median s':>14} {'load max s':>11} {'rebuild s':>10}")
    for row in rows:
        rb = "" if row["rebuild_median_s"] is None else f"{row['rebuild_median_s']:.3f}"
        print(
            f"{row['code']:<9} {row['task']:<17} {row['load_median_s']:>14.3f} "
            f"{row['load_max_s']:>11.3f} {rb:>10}"
        )
    print(
        "predictions, max |Δ| over "
        + ", ".join(f"{t} ({n_compared[t]} structures): {d:.3g}" for t, d in diffs.items())
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()} {platform.processor()} {os.cpu_count()} cpus",
                "python": platform.python_version(),
                "command": " ".join(sys.argv),
                "loadavg_1min": loadavg,
                "rounds": args.rounds,
                "rows": rows,
                "runs": runs,
                "max_abs_diff": diffs,
                "n_structures": n_compared,
            },
            indent=1,
        )
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
