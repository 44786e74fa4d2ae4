"""GMTNet figures: parameters, graph construction, and end-to-end inference speed.

End to end = validation + point group + projectors + graph + batching + forward + basis-evaluation
head + output projection, i.e. ``atomate2_gmt.predict`` on the shipped MP structures, with the
architecture of each shipped model.
Prints a table and writes benchmarks/results/bench_model.json.

    python benchmarks/bench_model.py [--threads 2] [--device cpu] [--repeats 3]
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
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.gmtnet import GMTNet
from atomate2_gmt.model.graph import build_graph
from atomate2_gmt.model.predict import predict
from atomate2_gmt.pretrained import available, pretrained_path

DATA = resources.files("atomate2_gmt.data").joinpath("datasets")
OUT = Path(__file__).parent / "results" / "bench_model.json"


def shipped_config(task: str) -> GMTNetConfig:
    """The architecture of the shipped model for ``task`` (untrained weights: speed does not
    depend on them); the default config if none is shipped."""
    if task not in available():
        return GMTNetConfig(task=task)
    model, _ = load_checkpoint(pretrained_path(task))
    return model.config


def load_structures(name: str) -> list[Structure]:
    """All structures of a shipped MP file."""
    with gzip.open(str(DATA.joinpath(f"mp_legacy_{name}.json.gz")), "rt") as fh:
        return [Structure.from_dict(r["structure"]) for r in json.load(fh)]


def best_of(fn, repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    structures = load_structures("dielectric")
    n = len(structures)
    rows = []

    t = best_of(lambda: [build_graph(s) for s in structures], args.repeats)
    rows.append({"what": "graph construction (k=16)", "task": "-", "structures_per_s": n / t})

    for task in ("dielectric", "piezo", "elastic"):
        model = GMTNet(shipped_config(task)).eval().to(args.device)
        params = model.n_parameters()
        predict(structures[:8], task, model=model, device=args.device)  # warm-up
        t = best_of(
            lambda m=model, tk=task: predict(
                structures, tk, model=m, device=args.device, batch_size=args.batch_size
            ),
            args.repeats,
        )
        rows.append(
            {
                "what": "end to end (predict)",
                "task": task,
                "params": params,
                "structures_per_s": n / t,
            }
        )
        crystals = [prepare_crystal(s, model.config) for s in structures]
        batches = [
            collate_crystals(crystals[i : i + args.batch_size]).to(args.device, model.dtype)
            for i in range(0, n, args.batch_size)
        ]

        def forward(m=model, bs=batches):
            with torch.no_grad():
                for b in bs:
                    m(b)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()

        t = best_of(forward, args.repeats)
        rows.append(
            {
                "what": "model alone (forward + head)",
                "task": task,
                "params": params,
                "structures_per_s": n / t,
                "s_per_batch": t / len(batches),
            }
        )

    print(
        f"{n} MP dielectric structures, batch {args.batch_size}, float32, "
        f"device {args.device}, {args.threads} threads, best of {args.repeats}"
    )
    print(f"{'what':32s} {'task':11s} {'params':>9s} {'structures/s':>13s} {'s/batch':>8s}")
    for r in rows:
        print(
            f"{r['what']:32s} {r['task']:11s} {r.get('params', ''):>9} "
            f"{r['structures_per_s']:13.1f} {r.get('s_per_batch', float('nan')):8.3f}"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()} {platform.processor()} cpus={torch.get_num_threads()}",
                "torch": torch.__version__,
                "device": args.device,
                "n_structures": n,
                "batch_size": args.batch_size,
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
