"""Measurement: is it the direction or the magnitude of the predicted tensors that is wrong?

For one checkpoint (default: the shipped piezo model) and its training recipe's split (seed 32,
80/10/10; ``--curate`` as the shipped piezo run), every crystal of the train, validation and
test splits is predicted and grouped by the number of tensor components its point group leaves
free (``training.evaluate.free_parameters``; 1: symmetry fixes the direction, only magnitude and
sign are learnt). Per group: EwT25, the median cos θ between predicted and true full tensors,
the fraction pointing the wrong way (cos θ < 0), the fraction aligned within 25 % of the truth
at the best-fitting magnitude (``tensors.metrics.direction_metrics``) and the median
|pred|_F / |true|_F. What the model fits (train) against what it generalises (val + test).

    python benchmarks/bench_direction.py [--task piezo] [--checkpoint CKPT] [--curate]
        [--output benchmarks/results/bench_direction_piezo.json]

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atomate2_gmt.model.checkpoint import load_checkpoint
from atomate2_gmt.pretrained import pretrained_path
from atomate2_gmt.tensors.metrics import direction_metrics, relative_error
from atomate2_gmt.training.evaluate import free_parameters
from atomate2_gmt.training.run import split_records
from atomate2_gmt.training.trainer import predict_prepared, prepare_records

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ((1, 1), (2, 3), (4, 8), (9, 21))


def _rows(pred: np.ndarray, true: np.ndarray, dims: np.ndarray, kind: str) -> dict[str, Any]:
    rel = np.asarray(relative_error(pred, true, kind))
    out = {}
    for lo, hi in GROUPS:
        idx = np.flatnonzero((dims >= lo) & (dims <= hi))
        if idx.size:
            out[f"{lo}-{hi}" if hi > lo else str(lo)] = {
                "n": int(idx.size),
                "ewt25": float((rel[idx] < 0.25).mean()),
                **direction_metrics(pred[idx], true[idx]),
            }
    return out


def main() -> None:
    """Predict the three splits, group by free components, print the table, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="piezo")
    ap.add_argument("--checkpoint", type=Path, help="default: the shipped model of --task")
    ap.add_argument("--curate", action="store_true", help="the curated train/val (as shipped)")
    ap.add_argument("--split-seed", type=int, default=32)
    ap.add_argument("--output", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ckpt = args.checkpoint or pretrained_path(args.task)
    model, _ = load_checkpoint(ckpt, task=args.task)
    kind = model.config.kind
    splits = split_records(
        args.task, "mp", None, (0.8, 0.1, 0.1), args.split_seed, None, None, args.curate
    )
    result: dict[str, Any] = {}
    for name, records in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        data = prepare_records(records, model.config)
        pred = predict_prepared(model, data)
        dims = np.array([free_parameters(c.output_projector) for c in data.crystals])
        result[name] = _rows(pred, data.targets.numpy(), dims, kind)
    print(f"{args.task}, {ckpt}")
    print("| split | free components | n | EwT25 | median cos θ | wrong sign | aligned "
          "| median norm ratio pred/true |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, groups in result.items():
        for g, m in groups.items():
            print(
                f"| {name} | {g} | {m['n']} | {m['ewt25']:.1%} | {m['median_cosine']:.2f} | "
                f"{m['wrong_sign']:.1%} | {m['aligned']:.1%} | {m['median_norm_ratio']:.2f} |"
            )
    out = args.output or ROOT / "benchmarks" / "results" / f"bench_direction_{args.task}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "task": args.task,
        "checkpoint": str(ckpt),
        "curate": args.curate,
        "split_seed": args.split_seed,
        "machine": f"{platform.machine()} torch {torch.__version__}",
        "groups": result,
    }
    out.write_text(json.dumps(payload, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
