"""CPU time of the shipped models' forward passes: the TFN layers' channel-wise product
(``model/channelwise.py``, what the models run) against e3nn's generated ``TensorProduct`` code
(the same function), alternated in one process.

For each shipped screening model (dielectric ε∞, piezo, elastic): the first N structures of the
shipped MP elastic set, prepared once, batches of 32, one torch thread, float32, no grad. The two
forward functions of ``TFNLayer`` are swapped in turn ``--rounds`` times; each figure is the
median over rounds of the process CPU time per structure (CPU time, not wall time, so that other
jobs on the machine disturb it less), first round dropped. Also reports the largest difference
between the two outputs relative to each crystal's largest component.

    python benchmarks/bench_product.py [--n 96] [--rounds 8]

Prints a table and writes benchmarks/results/bench_product.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import time
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from pymatgen.core import Structure

from atomate2_gmt.model.batch import collate_crystals, prepare_crystal
from atomate2_gmt.model.checkpoint import load_checkpoint
from atomate2_gmt.model.layers import TFNLayer, scatter_mean
from atomate2_gmt.pretrained import pretrained_path

OUT = Path(__file__).parent / "results" / "bench_product.json"
TASKS = ("dielectric", "piezo", "elastic")


def e3nn_forward(
    self: TFNLayer,
    x: torch.Tensor,
    sh: torch.Tensor,
    e: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
) -> torch.Tensor:
    """TFNLayer.forward with e3nn's generated product (``self.tp``) and an edge-level mean."""
    msg = self.tp(x[src], sh, self.radial(e))
    out = self.mix(scatter_mean(msg, dst, x.shape[0]))
    if self.gate is not None:
        out = self.gate(out)
    if self.residual is not None:
        out = out + self.residual(x)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = resources.files("atomate2_gmt.data") / "datasets" / "mp_legacy_elastic.json.gz"
    with path.open("rb") as fh, gzip.open(fh, "rt") as gz:
        structures = [Structure.from_dict(r["structure"]) for r in json.load(gz)[: args.n]]
    forwards = {"channel-wise": TFNLayer.forward, "e3nn": e3nn_forward}
    rows: list[dict[str, Any]] = []
    for task in TASKS:
        model, _ = load_checkpoint(pretrained_path(task))
        model.prepare_inference()
        crystals = [prepare_crystal(s, model.config) for s in structures]
        batches = [collate_crystals(crystals[i : i + 32]) for i in range(0, len(crystals), 32)]
        times: dict[str, list[float]] = {name: [] for name in forwards}
        outputs: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for _ in range(args.rounds):
                for name, forward in forwards.items():
                    TFNLayer.forward = forward  # type: ignore[method-assign]
                    start = time.process_time()
                    out = [model(b) for b in batches]
                    times[name].append(1000 * (time.process_time() - start) / len(structures))
                    outputs[name] = torch.cat([o.reshape(o.shape[0], -1) for o in out])
        TFNLayer.forward = forwards["channel-wise"]  # type: ignore[method-assign]
        ref = outputs["e3nn"]
        # relative to each crystal's largest component (a symmetry-zero tensor: to the set's)
        scale = ref.abs().amax(dim=1).clamp(min=1e-6 * ref.abs().max().item())
        diff = ((outputs["channel-wise"] - ref).abs().amax(dim=1) / scale).max().item()
        row = {
            "task": task,
            **{f"{name}_ms": statistics.median(v[1:]) for name, v in times.items()},
            "max_rel_diff": diff,
        }
        row["speedup"] = row["e3nn_ms"] / row["channel-wise_ms"]
        rows.append(row)
    total = {name: sum(r[f"{name}_ms"] for r in rows) for name in forwards}
    load = os.getloadavg()[0]
    print(
        f"{len(structures)} MP elastic-set structures, batch 32, float32, 1 thread, CPU time; "
        f"median of {args.rounds - 1} alternated rounds; load average {load:.1f}"
    )
    print(
        f"{'model':<12s} {'e3nn ms':>9s} {'channel-wise ms':>16s} {'speed-up':>9s} {'max rel Δ':>10s}"
    )
    for r in rows:
        print(
            f"{r['task']:<12s} {r['e3nn_ms']:9.2f} {r['channel-wise_ms']:16.2f} "
            f"{r['speedup']:9.2f} {r['max_rel_diff']:10.1e}"
        )
    print(
        f"{'all three':<12s} {total['e3nn']:9.2f} {total['channel-wise']:16.2f} "
        f"{total['e3nn'] / total['channel-wise']:9.2f}"
    )
    OUT.parent.mkdir(exist_ok=True)
    machine = f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}"
    OUT.write_text(
        json.dumps(
            {
                "machine": machine,
                "load_average": load,
                "n": len(structures),
                "rows": rows,
                "total_ms": total,
            },
            indent=1,
        )
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
