"""Simulated active-learning campaign on the shipped piezo data (DFT labels as the oracle).

Seed set of 100 labelled records, 88 held-out records (Fnorm), the rest the pool (500); five
rounds of 20 oracle calls. Strategies: random (exact expectation + mean of 200 draws), one
ranking by the initial model (no retraining), exploit with fine-tuning each round, and a
3-member ensemble UCB (mean + 1·std) with fine-tuning. The model is GMTNet with the
``SMALL_MODEL`` overrides of :mod:`atomate2_gmt.active_learning.simulate`, trained on CPU.

    OMP_NUM_THREADS=1 python benchmarks/bench_campaign.py               # 3 replicates
    OMP_NUM_THREADS=1 python benchmarks/bench_campaign.py --replicates 1

Prints the table and writes benchmarks/results/bench_campaign.json and
docs/figures/active_learning/campaign_piezo.png. Each finished replicate is also written to
benchmarks/results/bench_campaign.partial.json (so a killed run keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
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


def main() -> None:
    """Run the replicates, print the table, write the JSON and the figure."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    cfg = CampaignConfig(seed=args.seed)
    records = campaign_records(cfg)
    t0 = time.perf_counter()
    results = []
    for k in range(args.replicates):
        results.append(run_campaign(replace(cfg, seed=args.seed + k), records))
        partial = RESULT.with_suffix(".partial.json")
        partial.write_text(json.dumps([r.as_dict() for r in results], indent=1))
    summary = summarize(results)
    table = format_table(summary)
    print(table)
    print(json.dumps(summary["target"], indent=1))
    payload = {
        "machine": f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__} "
        f"threads {torch.get_num_threads()}",
        "command": "OMP_NUM_THREADS=1 python benchmarks/bench_campaign.py "
        f"--replicates {args.replicates} --seed {args.seed}",
        "seconds": time.perf_counter() - t0,
        "table": table,
        "summary": summary,
        "replicates": [r.as_dict() for r in results],
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(payload, indent=1))
    plot_campaign(summary, FIGURE, title="Simulated piezo campaign (MP DFT labels as oracle)")
    print(f"wrote {RESULT} and {FIGURE} in {payload['seconds']:.0f} s")


if __name__ == "__main__":
    main()
