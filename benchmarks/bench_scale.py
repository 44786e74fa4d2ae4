"""One ``atomate2-gmt screen`` of 1e4 to 1e5 distinct crystals: peak memory, time, resume.

Each size N runs the real command (``python -m atomate2_gmt.cli.app screen``, a subprocess with
its own project folder, embedded SQLite store) on an MP-style summary list (gzipped JSON,
written as a stream) of N distinct crystals: the distinct real MP crystals of the shipped legacy
sets (deduplicated by structure key), each repeated under isotropic strains of 0, +0.2 %,
-0.2 %, +0.4 %, ... (crystal ``i`` is base crystal ``i mod B`` strained ``i div B`` steps), so
every record is a different crystal (different structure key) and the set is reproducible. The
resident memory of the whole process tree (the command, its file-reading worker and its forked
model workers) is sampled with psutil every 0.5 s; the peak, the wall time, the rate and the
documents stored (must equal N) are recorded. ``--kill-at F`` also runs the same command in a
fresh project, kills its process group with SIGKILL once the job log reports F of the
structures done, runs it again and records how many structures the re-run predicted again and
whether every crystal is stored exactly once.

    nice -n 10 python benchmarks/bench_scale.py --sizes 1e4 3e4 1e5 --kill-at 0.5

Prints a table; writes benchmarks/results/bench_scale.json and docs/figures/bench_scale_rss.png.
``--ab TREE`` instead alternates runs of the code in TREE (a git worktree of an earlier commit)
and of this tree, and writes benchmarks/results/bench_scale_ab.json (wall time, rate, the process
tree's CPU time and peak PSS of each run):

    git worktree add --detach /tmp/before <commit>
    python benchmarks/bench_scale.py --sizes 2e4 --ab /tmp/before --rounds 2
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / "src" / "atomate2_gmt" / "data" / "datasets"
RESULTS = ROOT / "benchmarks" / "results" / "bench_scale.json"
AB_RESULTS = ROOT / "benchmarks" / "results" / "bench_scale_ab.json"
FIGURE = ROOT / "docs" / "figures" / "bench_scale_rss.png"
STRAIN_STEP = 0.002  # isotropic strain between two copies of a crystal (0.2 %)
_DONE = re.compile(r"screening: (\d+)/(\d+) structures")


def base_records() -> list[dict[str, Any]]:
    """The distinct crystals (by structure key) of the shipped legacy MP sets as summary
    documents, in material-id order."""
    from pymatgen.core import Structure

    from atomate2_gmt.tensors.symmetry.analysis import structure_key

    by_id: dict[str, dict[str, Any]] = {}
    gaps: dict[str, float] = {}
    for name in ("dielectric", "piezo", "elastic"):
        with gzip.open(DATASETS / f"mp_legacy_{name}.json.gz", "rt") as fh:
            for rec in json.load(fh):
                if rec.get("band_gap_eV") is not None:
                    gaps[rec["material_id"]] = float(rec["band_gap_eV"])
                by_id.setdefault(
                    rec["material_id"],
                    {"formula_pretty": rec.get("formula"), "structure": rec["structure"]},
                )
    out, keys = [], set()
    for mid, rec in sorted(by_id.items()):
        key = structure_key(Structure.from_dict(rec["structure"]))
        if key in keys:
            continue
        keys.add(key)
        doc = {"material_id": mid, **rec}
        if mid in gaps:
            doc["band_gap"] = gaps[mid]
        out.append(doc)
    return out


def strain_of(copy: int) -> float:
    """Isotropic strain of copy 0, 1, 2, 3, 4, ... : 0, +s, -s, +2s, -2s, ..."""
    steps = (copy + 1) // 2
    return STRAIN_STEP * steps * (1 if copy % 2 else -1)


def strained(structure: dict[str, Any], eps: float) -> dict[str, Any]:
    """A ``Structure.as_dict()`` with its lattice scaled by ``1 + eps`` (fractional coordinates
    kept; Cartesian ones, lengths and volume scaled to match)."""
    f = 1.0 + eps
    lat = structure["lattice"]
    lattice = {
        **lat,
        "matrix": [[f * x for x in row] for row in lat["matrix"]],
        **{k: f * lat[k] for k in ("a", "b", "c") if k in lat},
    }
    if "volume" in lat:
        lattice["volume"] = f**3 * lat["volume"]
    sites = [
        {**site, "xyz": [f * x for x in site["xyz"]]} if "xyz" in site else site
        for site in structure["sites"]
    ]
    return {**structure, "lattice": lattice, "sites": sites}


def write_source(path: Path, n: int, base: list[dict[str, Any]]) -> None:
    """``n`` distinct crystals as a gzipped MP-style summary list, written as a stream."""
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", compresslevel=6) as fh:
        fh.write("[")
        for i in range(n):
            rec = base[i % len(base)]
            copy = i // len(base)
            doc = {
                **rec,
                "material_id": f"scale-{i}-{rec['material_id']}",
                "structure": strained(rec["structure"], strain_of(copy)),
            }
            fh.write(("," if i else "") + json.dumps(doc))
        fh.write("]")
    tmp.replace(path)


def source_file(n: int, cache: Path, base: list[dict[str, Any]] | None) -> Path:
    """The source of ``n`` crystals (written once into ``cache``)."""
    path = cache / f"scale_{n}.json.gz"
    if not path.is_file():
        write_source(path, n, base if base is not None else base_records())
    return path


def tree_memory(proc: psutil.Process) -> tuple[int, int, int]:
    """(resident bytes summed over ``proc`` and all its descendants, their proportional set
    size summed (PSS: a page shared by k forked processes counts 1/k in each, so the sum is
    the memory the tree really holds), resident bytes of ``proc`` alone)."""
    rss = pss = 0
    try:
        members = [proc, *proc.children(recursive=True)]
        own = proc.memory_info().rss
    except psutil.Error:
        return 0, 0, 0
    for p in members:
        with contextlib.suppress(psutil.Error):
            full = p.memory_full_info()
            rss += full.rss
            pss += getattr(full, "pss", full.rss)
    return rss, pss, own


def screen_command(source: Path, project: Path, chunk_size: int) -> list[str]:
    """The command screened: ``atomate2-gmt screen`` (as ``python -m atomate2_gmt.cli.app``,
    so that ``--src`` picks the code) into its own project folder."""
    return [
        sys.executable,
        "-m",
        "atomate2_gmt.cli.app",
        "screen",
        str(source),
        "--chunk-size",
        str(chunk_size),
        "--top",
        "3",
        "--project-dir",
        str(project),
    ]


SRC = [ROOT / "src"]  # the code screened with (--src: another tree, e.g. for an A/B)


def run_screen(
    source: Path, project: Path, chunk_size: int, log: Path, kill_at: int | None = None
) -> dict[str, Any]:
    """Run the command once (stderr, the job log, into ``log``), sampling the tree's memory;
    with ``kill_at``, SIGKILL its process group once the log reports that many done."""
    env = {**os.environ, "PYTHONPATH": str(SRC[0]), "PYTHONUNBUFFERED": "1"}
    samples: list[tuple[float, int, int, int]] = []
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("w") as err, (log.with_suffix(".out")).open("w") as out:
        proc = subprocess.Popen(
            screen_command(source, project, chunk_size),
            stdout=out,
            stderr=err,
            env=env,
            start_new_session=True,
        )
        ps = psutil.Process(proc.pid)
        killed = False
        while proc.poll() is None:
            samples.append((time.perf_counter() - start, *tree_memory(ps)))
            if kill_at is not None and done_in_log(log) >= kill_at:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                proc.wait()
                break
            time.sleep(0.5)
    wall = time.perf_counter() - start
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)  # the tree: each process is reaped
    return {
        "returncode": proc.returncode,
        "killed": killed,
        "wall_s": wall,
        "cpu_user_s": round(cpu.ru_utime - cpu_before.ru_utime, 2),
        "cpu_sys_s": round(cpu.ru_stime - cpu_before.ru_stime, 2),
        "peak_rss_mb": max((s[1] for s in samples), default=0) / 2**20,
        "peak_pss_mb": max((s[2] for s in samples), default=0) / 2**20,
        "peak_parent_rss_mb": max((s[3] for s in samples), default=0) / 2**20,
        # (seconds, tree RSS, tree PSS, the command's RSS) in MB, at most ~400 of them
        "samples": [
            (round(t, 1), *(round(x / 2**20, 1) for x in rest))
            for t, *rest in samples[:: max(1, len(samples) // 400)]
        ],
        "done_at_kill": done_in_log(log) if killed else None,
    }


def done_in_log(log: Path) -> int:
    """The last cumulative count of the ``screening: done/total`` lines in the job log."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return 0
    found = _DONE.findall(text)
    return int(found[-1][0]) if found else 0


def stored(project: Path) -> dict[str, int]:
    """Documents, distinct crystals and successful documents in the project's store."""
    from atomate2_gmt.settings import resolve_settings
    from atomate2_gmt.stores import candidate_store

    store = candidate_store(resolve_settings(project))
    store.connect()
    try:
        return {
            "documents": store.count({}),
            "crystals": len(store.distinct("structure_key")),
            "successful": store.count({"state": "successful"}),
        }
    finally:
        store.close()


def predicted_again(log: Path) -> int | None:
    """Structures the run predicted (not found in the store), from its summary line."""
    text = log.with_suffix(".out").read_text(errors="replace")
    m = re.search(r"screened (\d+) candidates.*?\((\d+) of them already in the store", text, re.S)
    if m is None:
        m2 = re.search(r"screened (\d+) candidates", text)
        return int(m2.group(1)) if m2 else None
    return int(m.group(1)) - int(m.group(2))


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    done = [r for r in rows if r.get("peak_rss_mb")]
    ns = [r["n"] for r in done]
    ax1.plot(ns, [r["peak_rss_mb"] for r in done], "o-", label="process tree, RSS summed")
    ax1.plot(ns, [r["peak_pss_mb"] for r in done], "s-", label="process tree, PSS summed")
    ax1.plot(ns, [r["peak_parent_rss_mb"] for r in done], "^-", label="the command alone, RSS")
    ax1.set_xscale("log")
    ax1.set_xlabel("crystals screened (N)")
    ax1.set_ylabel("peak memory (MB)")
    ax1.legend(fontsize=8)
    ax1.set_ylim(bottom=0)
    ax1.set_title("atomate2-gmt screen: peak memory vs N")
    for r in done:
        t = [x[0] for x in r["samples"]]
        ax2.plot(t, [x[2] for x in r["samples"]], label=f"N = {r['n']:,}, tree PSS")
    ax2.set_xlabel("seconds")
    ax2.set_ylabel("PSS of the process tree (MB)")
    ax2.set_ylim(bottom=0)
    ax2.legend()
    ax2.set_title("memory over the run")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def command_line() -> str:
    """This run's command, with the niceness it ran at."""
    nice = f"nice -n {os.nice(0)} " if os.nice(0) else ""
    return nice + "python benchmarks/bench_scale.py " + " ".join(sys.argv[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e4, 3e4, 1e5])
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument(
        "--kill-at", type=float, default=None, help="also run a kill -9 + resume at this fraction"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="sources and projects here")
    parser.add_argument("--keep", action="store_true", help="keep the project folders")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument("--src", type=Path, default=None, help="screen with the code here")
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the rows of --out of other sizes (e.g. add 1e5 to earlier 1e4, 3e4 rows)",
    )
    parser.add_argument(
        "--ab",
        type=Path,
        default=None,
        metavar="TREE",
        help="alternate each size between the code of TREE (e.g. a git worktree of the code "
        "before) and --src, --rounds times; writes --ab-out instead of --out",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ab-out", type=Path, default=AB_RESULTS)
    args = parser.parse_args()
    if args.src is not None:
        SRC[0] = args.src.resolve()
    if args.ab is not None:
        alternate(args)
        return

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    base = None
    rows: list[dict[str, Any]] = []
    sizes = {int(x) for x in args.sizes}
    if args.append and args.out.is_file():
        rows = [r for r in json.loads(args.out.read_text())["rows"] if r["n"] not in sizes]
    for size in args.sizes:
        n = int(size)
        if not (work / f"scale_{n}.json.gz").is_file() and base is None:
            base = base_records()
        source = source_file(n, work, base)
        row: dict[str, Any] = {"n": n, "chunk_size": args.chunk_size, "load_start": load_average()}
        row["command"] = command_line()  # rows of other sizes may come from other runs
        project = work / f"project_{n}"
        shutil.rmtree(project, ignore_errors=True)
        run = run_screen(source, project, args.chunk_size, work / f"screen_{n}.log")
        row.update(run, load_end=load_average(), **stored(project))
        row["structures_per_s"] = n / run["wall_s"]
        row["ok"] = run["returncode"] == 0 and row["crystals"] == n and row["documents"] == n
        if args.kill_at is not None:
            row["resume"] = resume_run(source, work, n, args.chunk_size, args.kill_at)
        if not args.keep:
            shutil.rmtree(project, ignore_errors=True)
        rows.append(row)
        rows.sort(key=lambda r: r["n"])
        print_table(rows)
        write(rows, args.out)
    plot(rows, args.figure)
    print(f"wrote {args.out} and {args.figure}")


def commit_of(tree: Path) -> str:
    """The git commit checked out in ``tree`` (with ``+changes`` if it has uncommitted ones)."""

    def git(*cmd: str) -> str:
        return subprocess.run(
            ["git", "-C", str(tree), *cmd], capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def alternate(args: argparse.Namespace) -> None:
    """``--ab``: each size screened ``--rounds`` times with each tree, alternating in ABBA order
    (before, after; after, before; ...), so that both see the same machine and neither always
    runs first; a table and ``--ab-out``."""
    trees = {"before": args.ab.resolve() / "src", "after": SRC[0]}
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    base = None
    for size in args.sizes:
        n = int(size)
        if not (work / f"scale_{n}.json.gz").is_file() and base is None:
            base = base_records()
        source = source_file(n, work, base)
        for round_ in range(1, args.rounds + 1):
            order = list(trees.items()) if round_ % 2 else list(trees.items())[::-1]
            for code, tree in order:
                SRC[0] = tree
                project = work / f"project_{n}_{code}"
                shutil.rmtree(project, ignore_errors=True)
                load = load_average()
                run = run_screen(source, project, args.chunk_size, work / f"ab_{n}_{code}.log")
                docs = stored(project)
                shutil.rmtree(project, ignore_errors=True)
                run.pop("samples")
                runs.append(
                    {
                        "n": n,
                        "round": round_,
                        "code": code,
                        "commit": commit_of(tree.parent),
                        "load_start": load,
                        **run,
                        **docs,
                        "structures_per_s": n / run["wall_s"],
                    }
                )
                r = runs[-1]
                print(
                    f"N={n:,} round {round_} {code:6s} {r['commit']:>16s}: {r['wall_s']:6.1f} s "
                    f"{r['structures_per_s']:6.1f}/s  CPU {r['cpu_user_s']:.0f} + "
                    f"{r['cpu_sys_s']:.0f} s  PSS {r['peak_pss_mb']:.0f} MB  "
                    f"documents {r['documents']:,}",
                    flush=True,
                )
    args.ab_out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": command_line(), "machine": platform.machine(), "cpus": os.cpu_count()}
    args.ab_out.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1) + "\n")
    print(f"wrote {args.ab_out}")


def resume_run(source: Path, work: Path, n: int, chunk_size: int, frac: float) -> dict[str, Any]:
    """Kill -9 a fresh screen at ``frac`` of the structures done, then run it again."""
    project = work / f"project_{n}_resume"
    shutil.rmtree(project, ignore_errors=True)
    first = run_screen(source, project, chunk_size, work / f"kill_{n}.log", kill_at=int(frac * n))
    at_kill = stored(project)
    again = run_screen(source, project, chunk_size, work / f"resume_{n}.log")
    after = stored(project)
    shutil.rmtree(project, ignore_errors=True)
    return {
        "killed_after_s": first["wall_s"],
        "reported_done_at_kill": first["done_at_kill"],
        "stored_at_kill": at_kill["documents"],
        "rerun_wall_s": again["wall_s"],
        "rerun_returncode": again["returncode"],
        "rerun_peak_rss_mb": again["peak_rss_mb"],
        "predicted_again": predicted_again(work / f"resume_{n}.log"),
        "not_stored_at_kill": n - at_kill["documents"],
        **{f"after_{k}": v for k, v in after.items()},
        "ok": again["returncode"] == 0 and after["documents"] == n and after["crystals"] == n,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "| N | chunk | wall (s) | structures/s | peak tree RSS (MB) | peak tree PSS (MB) "
        "| peak command RSS (MB) | documents | ok | load |"
        "\n|---|---|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['n']:,} | {r['chunk_size']} | {r['wall_s']:.0f} | {r['structures_per_s']:.1f} "
            f"| {r['peak_rss_mb']:.0f} | {r['peak_pss_mb']:.0f} | {r['peak_parent_rss_mb']:.0f} "
            f"| {r['documents']:,} | {r['ok']} "
            f"| {r['load_start'][0]:.1f}→{r['load_end'][0]:.1f} |"
        )
    for r in rows:
        res = r.get("resume")
        if res:
            print(
                f"N = {r['n']:,}: killed (SIGKILL, process group) after {res['killed_after_s']:.0f} s "
                f"with {res['stored_at_kill']:,} stored; the re-run took {res['rerun_wall_s']:.0f} s, "
                f"predicted {res['predicted_again']} again (at most {res['not_stored_at_kill']:,} "
                f"were missing), {res['after_documents']:,} documents, ok {res['ok']}"
            )


def write(rows: list[dict[str, Any]], out: Path) -> None:
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "command": command_line(),
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
