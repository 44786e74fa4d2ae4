"""Start-up time of the ``atomate2-gmt`` console script: ``--help``, ``query --help``, and a
``query`` on an embedded store of real prediction documents.

Each command runs as a fresh process (what a user types), ``--repeats`` times after one warm-up
run (which fills the OS file cache); the table shows the median, min and max wall time. The store
holds ``--n`` documents with all four tasks, built from shipped MP structures as in
``bench_store.py``.

    python benchmarks/bench_cli.py                 # 7 runs per command, 2000 documents
    python benchmarks/bench_cli.py --repeats 11 --n 5000
    git archive <commit> src | tar -x -C /tmp/old && \
        python benchmarks/bench_cli.py --src /tmp/old/src --out /tmp/bench_cli_old.json

``--src`` runs the command line of another source tree (another commit) instead of the installed
one. Prints a table (wall times and the median CPU time, user + system) and writes
benchmarks/results/bench_cli.json (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_store import replicate, template_docs

from atomate2_gmt.settings import GMTSettings
from atomate2_gmt.stores import candidate_store, upsert_predictions

RESULTS = Path(__file__).parent / "results" / "bench_cli.json"
TARGETS_S = {"--help": 1.5, "query --help": 1.5, "query (embedded store)": 2.0}
"""Targets of the start-up time (s)."""


def _script() -> str:
    exe = shutil.which("atomate2-gmt") or str(Path(sys.executable).parent / "atomate2-gmt")
    if not Path(exe).exists():
        raise SystemExit("atomate2-gmt is not installed (pip install -e .)")
    return exe


def time_command(args: list[str], env: dict[str, str], repeats: int) -> dict[str, Any]:
    """Wall and CPU seconds of ``args`` as a fresh process: one warm-up, then ``repeats`` runs.
    CPU: user + system time of the process and its children (``getrusage``), which other jobs
    on the machine change far less than the wall time."""
    times, cpus = [], []
    for i in range(repeats + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(args, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        if i > 0:
            times.append(elapsed)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "cpu_median_s": statistics.median(cpus),
        "runs": times,
        "cpu_runs": cpus,
        "output_lines": len(proc.stdout.splitlines()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--n", type=int, default=2000, help="documents in the store")
    parser.add_argument("--src", type=Path, help="run the CLI of this src/ folder instead")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    launcher = (
        "import sys; from atomate2_gmt.cli.app import main; sys.argv[0] = 'atomate2-gmt'; main()"
    )
    exe = _script()
    prefix = [exe] if args.src is None else [sys.executable, "-c", launcher]
    tmp = Path(tempfile.mkdtemp(prefix="bench_cli_"))
    try:
        project = tmp / "project"
        store = candidate_store(GMTSettings(PROJECT_DIR=project, MONGO_URI=None))
        store.connect()
        upsert_predictions(store, replicate(template_docs(40), args.n))
        store.close()
        config = tmp / "config.yaml"
        config.write_text("{}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATOMATE2_GMT_")}
        env.update(ATOMATE2_GMT_CONFIG_FILE=str(config), ATOMATE2_GMT_PROJECT_DIR=str(project))
        if args.src is not None:
            env["PYTHONPATH"] = str(args.src.resolve())
        commands = {
            "--help": ["--help"],
            "query --help": ["query", "--help"],
            "version": ["version"],
            "query (embedded store)": ["query", "--property", "piezo", "--top", "20"],
            "query --format json": ["query", "-p", "elastic", "-n", "20", "-f", "json"],
        }
        if args.src is None:  # the command of this tree only
            commands["mongo status"] = ["mongo", "status", "--project-dir", str(tmp / "none")]
        results: dict[str, Any] = {
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "load_average_1min_at_start": os.getloadavg()[0],
            },
            "src": "installed" if args.src is None else str(args.src),
            "n_documents": args.n,
            "repeats": args.repeats,
            "targets_s": TARGETS_S,
            "commands": {},
        }
        for name, words in commands.items():
            argv = [*prefix, *words]
            if name == "mongo status":  # exits 3 (stopped) on purpose; time it through sh
                argv = ["/bin/sh", "-c", '"$@"; test $? -eq 3', "sh", *argv]
            results["commands"][name] = {
                "command": " ".join(["atomate2-gmt", *words]),
                **time_command(argv, env, args.repeats),
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"{'command':<26} {'median s':>9} {'min s':>7} {'max s':>7} {'CPU s':>6} {'target s':>9}")
    for name, r in results["commands"].items():
        target = TARGETS_S.get(name)
        print(f"{name:<26} {r['median_s']:>9.2f} {r['min_s']:>7.2f} {r['max_s']:>7.2f} "
              f"{r['cpu_median_s']:>6.2f} {'' if target is None else f'{target:.1f}':>9}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
