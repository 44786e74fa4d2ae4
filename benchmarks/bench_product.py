"""CPU time of the shipped models' forward passes with three forms of the TFN layers' product,
alternated in one process (the same function each, up to float round-off):

- ``e3nn``: e3nn's generated ``TensorProduct`` code, the mean over edges, then the mix;
- ``channel-wise``: ``ChannelwiseTensorProduct.scatter_mean`` (``model/channelwise.py``), then
  the mix (what training runs);
- ``mixed on edges``: ``ChannelwiseTensorProduct.mixed_scatter_mean``, the scalar inputs' paths
  mixed on the edges before the mean (what inference runs: ``TFNLayer.aggregate``).

For each shipped screening model (dielectric ε∞, piezo, elastic): the first N structures of the
shipped MP elastic set, prepared once, batches of 32, one torch thread, float32, no grad. The
aggregation functions of ``TFNLayer`` are swapped in turn ``--rounds`` times; each figure is the
median over rounds of the process CPU time per structure (CPU time, not wall time, so that other
jobs on the machine disturb it less), first round dropped. Also reports the largest difference
of each output from e3nn's relative to each crystal's largest component.

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
import sys
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


def channelwise_aggregate(
    self: TFNLayer,
    x: torch.Tensor,
    sh: torch.Tensor,
    e: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
) -> torch.Tensor:
    """TFNLayer.aggregate with the channel-wise product's mean, then the mix."""
    return self.mix(self.product.scatter_mean(x[src], sh, self.radial(e), dst, x.shape[0]))


def e3nn_aggregate(
    self: TFNLayer,
    x: torch.Tensor,
    sh: torch.Tensor,
    e: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
) -> torch.Tensor:
    """TFNLayer.aggregate with e3nn's generated product (``self.tp``) and an edge-level mean."""
    return self.mix(scatter_mean(self.tp(x[src], sh, self.radial(e)), dst, x.shape[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = resources.files("atomate2_gmt.data") / "datasets" / "mp_legacy_elastic.json.gz"
    with path.open("rb") as fh, gzip.open(fh, "rt") as gz:
        structures = [Structure.from_dict(r["structure"]) for r in json.load(gz)[: args.n]]
    shipped = TFNLayer.aggregate
    forwards = {
        "e3nn": e3nn_aggregate,
        "channel-wise": channelwise_aggregate,
        "mixed on edges": shipped,
    }
    rows: list[dict[str, Any]] = []
    for task in TASKS:
        model, _ = load_checkpoint(pretrained_path(task))
        model.prepare_inference()
        crystals = [prepare_crystal(s, model.config) for s in structures]
        batches = [collate_crystals(crystals[i : i + 32]) for i in range(0, len(crystals), 32)]
        times: dict[str, list[float]] = {name: [] for name in forwards}
        outputs: dict[str, torch.Tensor] = {}
        try:
            with torch.no_grad():
                for _ in range(args.rounds):
                    for name, forward in forwards.items():
                        TFNLayer.aggregate = forward  # type: ignore[method-assign]
                        start = time.process_time()
                        out = [model(b) for b in batches]
                        times[name].append(1000 * (time.process_time() - start) / len(structures))
                        outputs[name] = torch.cat([o.reshape(o.shape[0], -1) for o in out])
        finally:
            TFNLayer.aggregate = shipped  # type: ignore[method-assign]
        ref = outputs["e3nn"]
        # relative to each crystal's largest component (a symmetry-zero tensor: to the set's)
        scale = ref.abs().amax(dim=1).clamp(min=1e-6 * ref.abs().max().item())
        row: dict[str, Any] = {"task": task}
        for name in forwards:
            row[f"{name}_ms"] = statistics.median(times[name][1:])
            if name != "e3nn":
                diff = (outputs[name] - ref).abs().amax(dim=1) / scale
                row[f"{name}_max_rel_diff"] = diff.max().item()
        rows.append(row)
    total = {name: sum(r[f"{name}_ms"] for r in rows) for name in forwards}
    load = os.getloadavg()[0]
    print(
        f"{len(structures)} MP elastic-set structures, batch 32, float32, 1 thread, CPU time; "
        f"median of {args.rounds - 1} alternated rounds; load average {load:.1f}"
    )
    names = list(forwards)
    print(f"{'model':<12s}" + "".join(f"{n + ' ms':>18s}" for n in names) + "   max rel Δ vs e3nn")
    for r in [*rows, {"task": "all three", **{f"{n}_ms": total[n] for n in names}}]:
        deltas = "  ".join(
            f"{r[f'{n}_max_rel_diff']:.1e}" for n in names[1:] if f"{n}_max_rel_diff" in r
        )
        print(
            f"{r['task']:<12s}" + "".join(f"{r[f'{n}_ms']:18.2f}" for n in names) + "   " + deltas
        )
    print(
        f"speed-up over e3nn (all three): channel-wise {total['e3nn'] / total['channel-wise']:.2f}x, "
        f"mixed on edges {total['e3nn'] / total['mixed on edges']:.2f}x; mixed on edges over "
        f"channel-wise {total['channel-wise'] / total['mixed on edges']:.2f}x"
    )
    OUT.parent.mkdir(exist_ok=True)
    machine = f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}"
    OUT.write_text(
        json.dumps(
            {
                "command": " ".join(["python", "benchmarks/bench_product.py", *sys.argv[1:]]),
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
