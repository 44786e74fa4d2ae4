"""Device check: structures/s of the shipped models on a GPU (or the CPU), with mixed precision.

For each shipped model of ``--tasks`` (dielectric, piezo, elastic), on ``--n`` shipped MP
structures (cycled if fewer are shipped; graphs and point groups prepared once, before timing):

- the batch size: on a GPU the largest of ``--batch-sizes`` (32 … 1024) whose forward pass on
  the largest crystals fits in ``--mem-fraction`` of the device memory
  (``torch.cuda.mem_get_info``; growing stops at the first out-of-memory); on the CPU
  ``--cpu-batch-size`` (memory is not the limit there);
- ``end to end``: prepared crystals → batches (collate) → device → forward → tensors on the
  CPU, structures/s;
- ``model only``: the forward passes on batches already on the device, structures/s;
- for each lower precision — ``torch.autocast`` to bfloat16 and float16 on a GPU, bfloat16 on
  the CPU, and the weights and inputs cast to those types — the same two speeds, the largest relative deviation of its tensors from the float32
  ones on the same structures (``|ΔT|_F / max(|T|_F, target_scale)``, the floor of the
  equivariance check: a symmetry-zero tensor is compared with the model's scale), and the
  equivariance error on 14 real crystals (two per crystal system) in that precision; a
  precision whose forward pass raises (e3nn's generated ``tensordot`` refuses the mixed dtypes
  that autocast makes) is reported as failing, with the error.

The paper reports 930 structures/s on an A100; the table gives each figure against it. Without
a GPU the CPU path runs and the table says so. Prints a table and writes
benchmarks/results/bench_gpu_<device>.json.

    python benchmarks/bench_gpu.py [--n 2048] [--device cuda] [--mem-fraction 0.8]
    python benchmarks/bench_gpu.py --n 64 --device cpu     # the CPU path, about a minute
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gzip
import json
import os
import platform
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atomate2_gmt.model.batch import (
    PreparedCrystal,
    collate_crystals,
    crystal_for_kind,
    graph_key,
    prepare_structure,
)
from atomate2_gmt.model.checkpoint import load_checkpoint
from atomate2_gmt.model.equivariance import equivariance_error
from atomate2_gmt.pretrained import pretrained_path

PAPER_STRUCTURES_PER_S = 930.0  # GMTNet paper, one A100
OUT_DIR = Path(__file__).parent / "results"
DATA = resources.files("atomate2_gmt.data").joinpath("datasets")


def shipped_structures(n: int) -> list[Any]:
    """``n`` shipped MP structures (dielectric, piezo, elastic sets in turn; cycled if fewer)."""
    from pymatgen.core import Structure

    pool: list[Any] = []
    for name in ("dielectric", "piezo", "elastic"):
        with gzip.open(str(DATA.joinpath(f"mp_legacy_{name}.json.gz")), "rt") as fh:
            pool += [Structure.from_dict(r["structure"]) for r in json.load(fh)[: n + 1]]
        if len(pool) >= n:
            break
    return [pool[i % len(pool)] for i in range(n)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def batches(crystals: list[PreparedCrystal], size: int) -> list[list[PreparedCrystal]]:
    return [crystals[i : i + size] for i in range(0, len(crystals), size)]


def forward_all(
    model: Any, groups: list[Any], device: torch.device, amp: torch.dtype | None, collate: bool
) -> tuple[float, list[np.ndarray]]:
    """Seconds for all batches (``collate``: from prepared crystals, else batches already on
    the device) and the tensors (float64, CPU)."""
    out = []
    sync(device)
    start = time.perf_counter()
    with torch.no_grad(), autocast(device, amp):
        for group in groups:
            batch = (
                collate_crystals(group, model.dtype).to(device, model.dtype) if collate else group
            )
            out.append(model(batch).double().cpu().numpy())
    sync(device)
    return time.perf_counter() - start, out


def choose_batch_size(
    model: Any, crystals: list[PreparedCrystal], device: torch.device, args: argparse.Namespace
) -> tuple[int, list[dict[str, Any]]]:
    """The largest of ``args.batch_sizes`` whose forward pass on the largest crystals fits in
    ``args.mem_fraction`` of the GPU's memory; the CPU batch size on the CPU."""
    if device.type != "cuda":
        return args.cpu_batch_size, []
    largest = sorted(crystals, key=lambda c: -len(c.graph.edge_src))
    _, total = torch.cuda.mem_get_info(device)
    chosen, trials = args.batch_sizes[0], []
    for size in args.batch_sizes:
        group = [largest[i % len(largest)] for i in range(size)]
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        try:
            with torch.no_grad():
                model(collate_crystals(group, model.dtype).to(device, model.dtype))
            sync(device)
        except torch.cuda.OutOfMemoryError:
            trials.append({"batch_size": size, "fits": False, "why": "out of memory"})
            torch.cuda.empty_cache()
            break
        peak = torch.cuda.max_memory_allocated(device) - base
        free, _ = torch.cuda.mem_get_info(device)
        fits = peak <= args.mem_fraction * total
        trials.append(
            {"batch_size": size, "fits": fits, "peak_bytes": peak, "free_bytes_after": free}
        )
        if not fits:
            break
        chosen = size
    return chosen, trials


def relative_deviation(a: list[np.ndarray], b: list[np.ndarray], floor: float) -> float:
    """max over structures of |a − b|_F / max(|b|_F, floor)."""
    worst = 0.0
    for x, y in zip(np.concatenate(a), np.concatenate(b), strict=True):
        scale = max(float(np.linalg.norm(y)), floor)
        worst = max(worst, float(np.linalg.norm(x - y)) / scale)
    return worst


def bench_task(
    task: str, structures: list[Any], device: torch.device, args: argparse.Namespace, shared: dict
) -> list[dict[str, Any]]:
    from atomate2_gmt.data.mp import structures_by_crystal_system

    model, meta = load_checkpoint(pretrained_path(task), task=task)
    model = model.to(device).eval()
    config = model.config
    key = graph_key(config)
    if key not in shared:  # graphs and point groups: once per graph configuration
        shared[key] = {}
        for s in structures:
            if id(s) not in shared[key]:
                shared[key][id(s)] = prepare_structure(s, config)
    crystals = [crystal_for_kind(*shared[key][id(s)], config.kind) for s in structures]
    size, trials = choose_batch_size(model, crystals, device, args)
    groups = batches(crystals, size)
    on_device = [collate_crystals(g, model.dtype).to(device, model.dtype) for g in groups]
    floor = max(float(model.target_scale), 1e-8)
    checks = [s for group in structures_by_crystal_system(2).values() for s in group]
    rows: list[dict[str, Any]] = []
    reference: list[np.ndarray] | None = None
    # (label, autocast dtype, dtype the weights and inputs are cast to)
    lower = [torch.bfloat16, torch.float16] if device.type == "cuda" else [torch.bfloat16]
    precisions: list[tuple[str, torch.dtype | None, torch.dtype | None]] = [
        ("float32", None, None),
        *[(f"autocast {str(d).removeprefix('torch.')}", d, None) for d in lower],
        *[(f"{str(d).removeprefix('torch.')} weights", None, d) for d in lower],
    ]
    for label, amp, cast in precisions:
        net = model if cast is None else copy.deepcopy(model).to(cast)
        row: dict[str, Any] = {
            "task": task,
            "model": f"{meta.get('name')} v{meta.get('version')}",
            "device": str(device),
            "precision": label,
            "batch_size": size,
            "n": len(crystals),
            "batch_size_trials": trials,
        }
        try:
            ready = (
                on_device
                if cast is None
                else [collate_crystals(g, cast).to(device, cast) for g in groups]
            )
            forward_all(net, ready[:1], device, amp, collate=False)  # warm-up
            e2e = min(forward_all(net, groups, device, amp, True)[0] for _ in range(args.repeats))
            runs = [forward_all(net, ready, device, amp, False) for _ in range(args.repeats)]
            tensors = runs[0][1]
            if reference is None:
                reference = tensors
            with autocast(device, amp):
                equivariance, where = equivariance_error(net, checks, seed=7)
        except RuntimeError as exc:  # e.g. e3nn's generated code refusing mixed dtypes
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            rows.append(row)
            continue
        row.update(
            {
                "end_to_end_per_s": len(crystals) / e2e,
                "model_only_per_s": len(crystals) / min(t for t, _ in runs),
                "max_rel_dev_vs_float32": relative_deviation(tensors, reference, floor),
                "equivariance_error": equivariance,
                "equivariance_worst": where,
            }
        )
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048, help="structures per model")
    parser.add_argument("--tasks", default="dielectric,piezo,elastic")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    parser.add_argument(
        "--batch-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[32, 64, 128, 256, 512, 1024],
    )
    parser.add_argument("--mem-fraction", type=float, default=0.8)
    parser.add_argument("--cpu-batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    load = os.getloadavg()[0]
    start = time.perf_counter()
    structures = shipped_structures(args.n)
    shared: dict = {}
    rows = []
    for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        rows += bench_task(task, structures, device, args, shared)
    wall = time.perf_counter() - start

    where = f"GPU {gpu}" if gpu else f"CPU ({os.cpu_count()} cores, no GPU present or chosen)"
    print(f"shipped GMTNet models on {where}, n = {args.n}, load average {load:.2f}")
    print(
        "| task | precision | batch | end to end /s | model only /s | vs paper 930/s (model) "
        "| max rel. dev. vs fp32 | equivariance err. |\n|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        if "error" in r:
            print(f"| {r['task']} | {r['precision']} | {r['batch_size']} | fails: {r['error']} |")
            continue
        print(
            f"| {r['task']} | {r['precision']} | {r['batch_size']} | "
            f"{r['end_to_end_per_s']:.0f} | {r['model_only_per_s']:.0f} | "
            f"{r['model_only_per_s'] / PAPER_STRUCTURES_PER_S:.2f}x | "
            f"{r['max_rel_dev_vs_float32']:.1e} | {r['equivariance_error']:.1e} |"
        )
    fp32 = [r for r in rows if r["precision"] == "float32"]
    if fp32:  # the three properties of one structure, one after another
        combined = 1.0 / sum(1.0 / r["end_to_end_per_s"] for r in fp32)
        print(f"all {len(fp32)} models, float32, end to end: {combined:.0f} structures/s")
    out = OUT_DIR / f"bench_gpu_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "command": "python benchmarks/bench_gpu.py " + " ".join(sys.argv[1:]),
                "device": str(device),
                "gpu": gpu,
                "cpu": f"{platform.machine()} {platform.processor()}, {os.cpu_count()} cores",
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "loadavg_1min": [load, os.getloadavg()[0]],
                "paper_structures_per_s": PAPER_STRUCTURES_PER_S,
                "wall_s": wall,
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {out} ({wall:.0f} s)")


if __name__ == "__main__":
    main()
