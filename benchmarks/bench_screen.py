"""End-to-end screening throughput: structure files → prediction documents in the store.

Runs the real screening flow (``GMTScreenMaker`` under jobflow's ``run_locally``) on N CIF files
written from the shipped Materials Project structures, predicting dielectric (ε∞), piezo and
elastic tensors, into (a) the embedded SQLite store and (b) a MongoDB wire-protocol server
(SecantusDB's ``secantusd-py``, a local subprocess). Shipped models are used; a task without a
shipped model uses an untrained model of the shipped architecture (same cost per structure) and
the table says so. Timings per stage come from the chunk jobs' summaries.

    python benchmarks/bench_screen.py                 # 1000 structures, chunks of 500
    python benchmarks/bench_screen.py --n 200 --skip-mongo

Prints a table and writes benchmarks/results/bench_screen.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from jobflow import run_locally
from pymatgen.core import Structure

sys.path.insert(0, str(Path(__file__).parent))
from bench_store import start_mongo

from atomate2_gmt.flows.screen import GMTScreenMaker
from atomate2_gmt.jobs.predict import GMTPredictMaker
from atomate2_gmt.model.checkpoint import save_checkpoint
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.gmtnet import GMTNet
from atomate2_gmt.pretrained import available

RESULTS = Path(__file__).parent / "results" / "bench_screen.json"
TASKS = ("dielectric", "piezo", "elastic")


def write_cifs(folder: Path, n: int) -> int:
    """N distinct shipped MP structures as CIF files (elastic, piezo, dielectric sets)."""
    seen: set[str] = set()
    written = 0
    for name in ("elastic", "piezo", "dielectric"):
        path = resources.files("atomate2_gmt.data") / "datasets" / f"mp_legacy_{name}.json.gz"
        with path.open("rb") as fh, gzip.open(fh, "rt") as gz:
            for rec in json.load(gz):
                if rec["material_id"] in seen or written >= n:
                    continue
                seen.add(rec["material_id"])
                Structure.from_dict(rec["structure"]).to(
                    filename=str(folder / f"{rec['material_id']}.cif")
                )
                written += 1
    return written


def models_for(tmp: Path) -> tuple[dict[str, str], list[str]]:
    """Task → checkpoint spec; tasks without a shipped model get an untrained one."""
    shipped = set(available())
    models, stand_ins = {}, []
    for task in TASKS:
        if task in shipped:
            models[task] = "pretrained"
            continue
        torch.manual_seed(0)
        path = tmp / f"untrained_{task}.pt"
        save_checkpoint(path, GMTNet(GMTNetConfig(task=task)), metadata={"version": "bench"})
        models[task] = str(path)
        stand_ins.append(task)
    return models, stand_ins


def run(
    folder: Path, models: dict[str, str], chunk: int, batch: int, workers: int | None
) -> dict[str, Any]:
    maker = GMTScreenMaker(
        predict_maker=GMTPredictMaker(
            tasks=TASKS, models=models, device="cpu", batch_size=batch, workers=workers
        ),
        chunk_size=chunk,
        top=20,
    )
    start = time.perf_counter()
    flow = maker.make(folder)
    responses = run_locally(flow, ensure_success=True, log=False)
    wall = time.perf_counter() - start
    summaries = [responses[j.uuid][1].output for j in flow.jobs[:-1]]
    ranking = responses[flow.jobs[-1].uuid][1].output
    stages: dict[str, float] = {}
    for s in summaries:
        for k, v in s.timings.items():
            stages[k] = stages.get(k, 0.0) + v
    n = ranking["n"]
    return {
        "n": n,
        "n_successful": ranking["n_successful"],
        "n_failed": ranking["n_failed"],
        "wall_s": wall,
        "structures_per_s": n / wall,
        "stages_s": stages,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--skip-mongo", action="store_true")
    parser.add_argument("--workers", type=int, default=None, help="default: the maker's")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("jobflow").setLevel(logging.ERROR)

    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "load_avg_start": os.getloadavg()[0],
        "command": "python " + " ".join(sys.argv),
        "tasks": list(TASKS),
        "workers": args.workers,
        "backends": {},
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "cifs"
        folder.mkdir()
        results["n_files"] = write_cifs(folder, args.n)
        models, stand_ins = models_for(tmp)
        results["untrained_stand_ins"] = stand_ins
        os.environ["ATOMATE2_GMT_PROJECT_DIR"] = str(tmp / "project")
        results["backends"]["embedded (SQLite)"] = run(
            folder, models, args.chunk, args.batch, args.workers
        )
        if not args.skip_mongo:
            proc, uri = start_mongo(tmp / "mongo")
            try:
                os.environ["ATOMATE2_GMT_MONGO_URI"] = uri
                results["backends"]["MongoDB wire (secantusd-py)"] = run(
                    folder, models, args.chunk, args.batch, args.workers
                )
            finally:
                os.environ.pop("ATOMATE2_GMT_MONGO_URI", None)
                proc.terminate()
                proc.wait(timeout=10)
    results["load_avg_end"] = os.getloadavg()[0]

    print(f"machine: {results['machine']}; load avg {results['load_avg_start']:.2f}")
    if stand_ins:
        print(f"untrained stand-in models (same architecture and cost): {', '.join(stand_ins)}")
    stage_names = ["prepare_s", *[f"{t}_s" for t in TASKS]]
    header = f"{'backend':32s} {'n':>5s} {'wall s':>7s} {'struct/s':>8s} " + " ".join(
        f"{s[:-2]:>10s}" for s in stage_names
    )
    print(header)
    for name, r in results["backends"].items():
        st = r["stages_s"]
        print(
            f"{name:32s} {r['n']:5d} {r['wall_s']:7.1f} {r['structures_per_s']:8.1f} "
            + " ".join(f"{st.get(s, 0.0):10.1f}" for s in stage_names)
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
