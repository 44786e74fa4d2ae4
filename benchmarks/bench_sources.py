"""Streaming a large candidate source: records/s and peak memory at 1e4, 3e4 and 1e5 records.

The file: an MP-API-style summary list (``material_id``, ``formula_pretty``, ``structure``,
``band_gap``), gzipped, made of the real MP structures of the shipped datasets (the legacy
dielectric, piezo and elastic sets; band gaps where the dielectric set gives one) under distinct
ids (``bench-<i>-<mp id>``), written as a stream. Each measurement runs in a fresh process, and
its peak RSS is that process's maximum resident set (``getrusage``), interpreter and imports
(torch, pymatgen, emmet) included; the RSS after the imports is reported beside it, and the time
is that of the stream alone (imports done first):

- ``records``: the records decoded (:func:`atomate2_gmt.sources.iter_records`, ijson);
- ``candidates``: every record made a checked candidate (structure, emmet-named source values,
  the model's structure check: :func:`atomate2_gmt.candidates.candidates_from_collection`);
- ``split``: the screening flow's pass that cuts the file into part files of 500 records
  (:func:`atomate2_gmt.sources.split_source`);
- ``json.load``: for comparison, the whole file loaded as one list (skipped above 3e4 records:
  it needs gigabytes).

    python benchmarks/bench_sources.py                 # 1e4, 3e4, 1e5
    python benchmarks/bench_sources.py --sizes 2000    # a quick run

Prints a table and writes benchmarks/results/bench_sources.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "bench_sources.json"
DATASETS = ROOT / "src" / "atomate2_gmt" / "data" / "datasets"
NAIVE_MAX = 30_000


def base_records() -> list[dict[str, Any]]:
    """The distinct MP crystals of the shipped legacy sets as summary documents."""
    gaps: dict[str, float] = {}
    out: dict[str, dict[str, Any]] = {}
    for name in ("dielectric", "piezo", "elastic"):
        with gzip.open(DATASETS / f"mp_legacy_{name}.json.gz", "rt") as fh:
            for rec in json.load(fh):
                if rec.get("band_gap_eV") is not None:
                    gaps[rec["material_id"]] = float(rec["band_gap_eV"])
                out.setdefault(
                    rec["material_id"],
                    {"formula_pretty": rec.get("formula"), "structure": rec["structure"]},
                )
    records = []
    for mid, rec in sorted(out.items()):
        doc = {"material_id": mid, **rec}
        if mid in gaps:
            doc["band_gap"] = gaps[mid]
        records.append(doc)
    return records


def write_file(path: Path, n: int, base: list[dict[str, Any]]) -> None:
    """``n`` records cycled from ``base`` under distinct ids, written as a stream."""
    with gzip.open(path, "wt", compresslevel=6) as fh:
        fh.write("[")
        for i in range(n):
            rec = base[i % len(base)]
            doc = {**rec, "material_id": f"bench-{i}-{rec['material_id']}"}
            fh.write(("," if i else "") + json.dumps(doc))
        fh.write("]")


CHILD = r"""
import json, resource, sys, time
from pathlib import Path
mode, path, work = sys.argv[1], sys.argv[2], sys.argv[3]
import atomate2_gmt.candidates, atomate2_gmt.model.graph, atomate2_gmt.schemas.prediction, ijson
t_import = time.perf_counter()
rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
n = ok = 0
if mode == "records":
    from atomate2_gmt.sources import iter_records
    for rec in iter_records(path, "json-list"):
        n += 1
        ok += rec.error is None
elif mode == "candidates":
    from atomate2_gmt.candidates import candidates_from_collection
    for cand in candidates_from_collection(path):
        n += 1
        ok += cand.state == "successful"
elif mode == "split":
    from atomate2_gmt.sources import SourceSlice, split_source
    parts = split_source(SourceSlice(path, "json-list"), 500, work)
    n = ok = sum(p.count for p in parts)
elif mode == "json.load":
    import gzip
    with gzip.open(path, "rt") as fh:
        data = json.load(fh)
    n = ok = len(data)
elapsed = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
print(json.dumps({"n": n, "ok": ok, "seconds": elapsed, "peak_rss_mb": rss,
                  "rss_after_imports_mb": rss_import}))
"""


def measure(mode: str, path: Path, work: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path), str(work)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["records_per_s"] = result["n"] / result["seconds"] if result["seconds"] else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument(
        "--modes", nargs="+", default=["records", "candidates", "split", "json.load"]
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    base = base_records()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = Path(tmp) / f"summary_{n}.json.gz"
            t0 = time.perf_counter()
            write_file(path, n, base)
            written = time.perf_counter() - t0
            size = path.stat().st_size
            for mode in args.modes:
                if mode == "json.load" and n > NAIVE_MAX:
                    continue
                r = measure(mode, path, Path(tmp) / f"work_{n}_{mode}")
                row = {"records": n, "mode": mode, "file_mb": size / 1e6, "write_s": written, **r}
                rows.append(row)
                print(
                    f"{n:>7} {mode:<11} {r['records_per_s']:>9.0f} records/s "
                    f"{r['seconds']:>7.1f} s  peak RSS {r['peak_rss_mb']:>7.0f} MB  "
                    f"(after imports {r['rss_after_imports_mb']:.0f} MB; {r['ok']} of {r['n']} usable; {size / 1e6:.1f} MB gz)",
                    flush=True,
                )
    result = {
        "benchmark": "bench_sources",
        "base_crystals": len(base),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "command": "python benchmarks/bench_sources.py " + " ".join(sys.argv[1:]),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
