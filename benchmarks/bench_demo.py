"""Benchmark: wall time of ``atomate2-gmt demo`` as a new user runs it, and where it goes.

Runs the installed command in a fresh project folder (``--n 300``, the default), ``--repeats``
times, in two states:

- ``cold``: empty bytecode cache (``PYTHONPYCACHEPREFIX`` → a new folder) and an empty
  matplotlib cache (``MPLCONFIGDIR``), i.e. the first run after ``pip install --no-compile``;
- ``warm``: caches filled by an earlier run (every later run, and a ``pip install`` that
  compiles bytecode, the default).

With ``--rerun``, each run is followed by a second run in the same project folder (``rerun``:
the documents and relaxations stored by the first are reused, nothing is predicted or relaxed
again).

Every line the demo writes (stdout and stderr) is timestamped as it arrives; the table gives the
longest silence of each run and the JSON every silence over ``--gap`` seconds (3 by default)
with the lines around it.

Each run's stderr (plain progress lines, since it is not a terminal) gives the phases: Python
start-up, imports, candidate generation and the flow's set-up (up to the model loading), the
model loading, the prediction, the ranking and the picture. The
machine's load average is recorded with each run: the 2-core machines this project runs on are
shared, and a second busy process doubles every number.

    python benchmarks/bench_demo.py [--repeats 3] [--rerun] [--gap 3]
        [--output benchmarks/results/bench_demo.json]

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).with_name("atomate2-gmt")


def run_demo(
    cold: bool, n: int, project: Path | None = None, gap: float = 3.0, relax_top: int = 5
) -> dict[str, Any]:
    """One demo run (in ``project``, else a fresh project folder): wall time, phase times, the
    printed top rows, the silences longer than ``gap`` seconds."""
    rerun = project is not None and project.is_dir() and any(project.iterdir())
    tmp = Path(tempfile.mkdtemp(prefix="bench_demo_"))
    env = {**os.environ, "ATOMATE2_GMT_PROJECT_DIR": str(project or tmp / "project")}
    env["PYTHONUNBUFFERED"] = "1"  # the tables' lines arrive when they are printed
    if cold:
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        env["MPLCONFIGDIR"] = str(tmp / "mpl")
    load = os.getloadavg()[0]
    stamps: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(EXE), "demo", "--n", str(n), "--relax-top", str(relax_top)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # timestamps of the lines as they arrive
        stamps.append((time.perf_counter() - t0, line.rstrip()))
    proc.wait()
    wall = time.perf_counter() - t0
    out = "\n".join(s for _, s in stamps)
    shutil.rmtree(tmp, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"demo failed ({proc.returncode}):\n{out}")
    silences = []
    previous = (0.0, "(start)")
    for t, text in [*stamps, (wall, "(exit)")]:
        if t - previous[0] > gap:
            silences.append(
                {
                    "at_s": round(previous[0], 2),
                    "silent_s": round(t - previous[0], 2),
                    "after": previous[1][:120],
                    "before": text[:120],
                }
            )
        previous = (t, text)

    def first(pattern: str) -> float | None:
        return next((t for t, s in stamps if re.search(pattern, s)), None)

    def span(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else b - a

    generated = re.search(
        r"generated \d+ charge-balanced substitution candidates \(([\d.]+) s", out
    )
    loading = first("^loading the")
    # the first screening's count (the candidate generation's own line also ends "done in")
    start, done = first(r"^predicting: 0/"), first(r"^predicting: \d+/\d+ structures done in")
    generation = float(generated.group(1)) if generated else None
    phases = {
        # Python start-up, imports, candidate generation and the flow's set-up
        "to_models_s": loading,
        "generation_s": generation,
        "model_loading_s": span(loading, start),
        "prediction_s": span(start, done),
        "ranking_and_picture_s": None if done is None else wall - done,
    }
    top = re.findall(r"│\s+\d+ │ (\S+)", out)
    relaxed = [t for t, text in stamps if re.match(r"relaxed \S+ in [\d.]+ s$", text)]
    reused = re.search(r"(\d+) relaxed in an earlier run", out)
    return {
        "cold": cold,
        "rerun": rerun,
        "wall_s": wall,
        "load_1min": load,
        "phases": phases,
        "top_rows": top,
        "longest_silence_s": max([s["silent_s"] for s in silences] or [0.0]),
        "silences": silences,
        "relaxations": len(relaxed),
        "relaxations_reused": int(reused.group(1)) if reused else 0,
        "lines": [[round(t, 2), text[:160]] for t, text in stamps],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rerun", action="store_true", help="a second run in each project")
    parser.add_argument("--states", default="cold,warm", help="bytecode-cache states to run")
    parser.add_argument("--relax-top", type=int, default=5, help="the demo's --relax-top")
    parser.add_argument("--gap", type=float, default=3.0, help="silences reported (s)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/bench_demo.json")
    args = parser.parse_args()

    runs = []
    for cold in [state == "cold" for state in args.states.split(",")]:
        for _ in range(args.repeats):
            if not args.rerun:
                runs.append(run_demo(cold, args.n, gap=args.gap, relax_top=args.relax_top))
                continue
            project = Path(tempfile.mkdtemp(prefix="bench_demo_project_"))
            runs.append(
                run_demo(cold, args.n, project=project, gap=args.gap, relax_top=args.relax_top)
            )
            runs.append(
                run_demo(cold, args.n, project=project, gap=args.gap, relax_top=args.relax_top)
            )
            shutil.rmtree(project, ignore_errors=True)
    same = all(r["top_rows"] == runs[0]["top_rows"] for r in runs)
    print(
        "| state | wall s | to models s | of which generation s | model loading s | "
        "prediction s | ranking + picture s | relaxations (reused) | longest silence s | "
        "load (1 min) |\n|---|---|---|---|---|---|---|---|---|---|"
    )

    def fmt(v: float | None) -> str:
        return "" if v is None else f"{v:.1f}"

    for r in runs:
        p = r["phases"]
        state = ("cold" if r["cold"] else "warm") + (" re-run" if r["rerun"] else "")
        print(
            f"| {state} | {r['wall_s']:.1f} | {fmt(p['to_models_s'])} | "
            f"{fmt(p['generation_s'])} | {fmt(p['model_loading_s'])} | "
            f"{fmt(p['prediction_s'])} | {fmt(p['ranking_and_picture_s'])} | "
            f"{r['relaxations']} ({r['relaxations_reused']}) | {r['longest_silence_s']:.1f} | "
            f"{r['load_1min']:.2f} |"
        )
        for silence in r["silences"]:
            print(
                f"    silent {silence['silent_s']:.1f} s at {silence['at_s']:.1f} s, after "
                f"{silence['after']!r}"
            )
    best = {
        s: min(r["wall_s"] for r in runs if r["cold"] == (s == "cold") and not r["rerun"])
        for s in args.states.split(",")
    }
    if args.rerun:
        best["rerun"] = min(r["wall_s"] for r in runs if r["rerun"])
    print(
        "best: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in best.items())
        + f"; same ranking in every run: {same}"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": " ".join(["python", *sys.argv]),
        "loadavg_1min_end": os.getloadavg()[0],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "best_wall_s": best,
        "same_ranking": same,
        "runs": runs,
    }
    args.output.write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
