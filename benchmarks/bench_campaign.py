"""Simulated active-learning campaign on the shipped piezo data (DFT labels as the oracle).

Default split: seed set of 100 labelled records, 88 held-out records (Fnorm), the rest the pool
(500); the documented run uses ``--seed-size 50 --heldout-size 40`` (pool 598). Five rounds of
20 oracle calls. Strategies: random (exact expectation + mean of 200 draws), one ranking by the
initial model (no retraining), exploit retrained each round, and a 3-member ensemble UCB
(mean + κ·std) retrained each round (``--retrain finetune`` or ``scratch``). The model is GMTNet
with the ``SMALL_MODEL`` overrides of :mod:`atomate2_gmt.active_learning.simulate`, on CPU.

    OMP_NUM_THREADS=1 python benchmarks/bench_campaign.py --replicates 3 --seed 0 --jobs 3 \
        --seed-size 50 --heldout-size 40                              # the documented run
    OMP_NUM_THREADS=1 python benchmarks/bench_campaign.py --replicates 1

Prints the table and writes benchmarks/results/bench_campaign.json and
docs/figures/active_learning/campaign_piezo.png (``--out``, ``--figure``). Each finished
replicate is also written to <out>.partial.json (so a killed run keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import platform
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import torch

from atomate2_gmt.active_learning.plot import plot_campaign
from atomate2_gmt.active_learning.simulate import (
    CampaignConfig,
    campaign_records,
    run_campaign,
    summarize,
)
from atomate2_gmt.cli.campaign import format_table

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "bench_campaign.json"
FIGURE = ROOT / "docs" / "figures" / "active_learning" / "campaign_piezo.png"


def _worker_init() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(message)s")
    torch.set_num_threads(1)


def main() -> None:
    """Run the replicates, print the table, write the JSON and the figure."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--jobs", type=int, default=1, help="replicates run at once, one process (thread) each"
    )
    ap.add_argument("--out", type=Path, default=RESULT, help="result JSON")
    ap.add_argument("--figure", type=Path, default=FIGURE, help="curves (PNG)")
    default = CampaignConfig()
    ap.add_argument("--strategies", default=",".join(default.strategies))
    ap.add_argument("--retrain", default=default.retrain, help="finetune or scratch")
    ap.add_argument("--kappa", type=float, default=default.kappa)
    ap.add_argument("--ensemble", type=int, default=default.ensemble)
    ap.add_argument(
        "--max-per-chemsys",
        type=int,
        default=default.max_per_chemsys,
        help="SelectionPolicy cap: picks per chemical system and round",
    )
    ap.add_argument("--init-epochs", type=int, default=default.init_epochs)
    ap.add_argument("--finetune-epochs", type=int, default=default.finetune_epochs)
    ap.add_argument("--finetune-lr", type=float, default=default.finetune_lr)
    ap.add_argument("--target-transform", default=default.target_transform)
    ap.add_argument("--transform-scale", type=float, default=default.transform_scale)
    ap.add_argument("--huber-delta", type=float, default=default.huber_delta)
    ap.add_argument("--relative-loss", type=float, default=default.relative_loss)
    ap.add_argument(
        "--select-on", default=default.select_on, help="val_fnorm, val_spearman, ... (trainer)"
    )
    ap.add_argument("--curate", action="store_true", help="leave data.curation's records out")
    ap.add_argument("--pretrain-task", default=None, help="transfer learning from this task")
    ap.add_argument("--pretrain-epochs", type=int, default=default.pretrain_epochs)
    ap.add_argument("--rounds", type=int, default=default.rounds)
    ap.add_argument("--per-round", type=int, default=default.per_round, help="oracle calls")
    ap.add_argument("--seed-size", type=int, default=default.seed_size)
    ap.add_argument("--heldout-size", type=int, default=default.heldout_size)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    cfg = CampaignConfig(
        seed=args.seed,
        strategies=tuple(s.strip() for s in args.strategies.split(",") if s.strip()),
        retrain=args.retrain,
        kappa=args.kappa,
        ensemble=args.ensemble,
        max_per_chemsys=args.max_per_chemsys,
        init_epochs=args.init_epochs,
        finetune_epochs=args.finetune_epochs,
        finetune_lr=args.finetune_lr,
        target_transform=args.target_transform,
        transform_scale=args.transform_scale,
        seed_size=args.seed_size,
        heldout_size=args.heldout_size,
        rounds=args.rounds,
        per_round=args.per_round,
        huber_delta=args.huber_delta,
        relative_loss=args.relative_loss,
        select_on=args.select_on,
        curate=args.curate,
        pretrain_task=args.pretrain_task,
        pretrain_epochs=args.pretrain_epochs,
    )
    records = campaign_records(cfg)
    t0 = time.perf_counter()
    configs = [replace(cfg, seed=args.seed + k) for k in range(args.replicates)]
    partial = args.out.with_suffix(".partial.json")
    results = []
    if args.jobs <= 1:
        for c in configs:
            results.append(run_campaign(c, records))
            partial.write_text(json.dumps([r.as_dict() for r in results], indent=1))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, ctx, initializer=_worker_init) as pool:
            futures = [pool.submit(run_campaign, c, records) for c in configs]
            for fut in as_completed(futures):
                done = fut.result()
                logging.info("replicate seed %d done in %.0f s", done.config["seed"], done.seconds)
                results.append(done)
                partial.write_text(json.dumps([r.as_dict() for r in results], indent=1))
        results.sort(key=lambda r: r.config["seed"])
    summary = summarize(results)
    table = format_table(summary)
    print(table)
    print(json.dumps(summary["target"], indent=1))
    payload = {
        "machine": f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__} "
        f"threads {torch.get_num_threads()}",
        "command": "OMP_NUM_THREADS=1 python benchmarks/bench_campaign.py "
        + shlex.join(sys.argv[1:]),
        "seconds": time.perf_counter() - t0,
        "table": table,
        "summary": summary,
        "replicates": [r.as_dict() for r in results],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    plot_campaign(summary, args.figure, title="Simulated piezo campaign (MP DFT labels as oracle)")
    print(f"wrote {args.out} and {args.figure} in {payload['seconds']:.0f} s")


if __name__ == "__main__":
    main()
