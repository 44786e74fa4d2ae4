"""A/B of the embedded store: another implementation file against ``atomate2_gmt.stores``.

Loads a single-file stores module (for example the one before the ``stores/`` package:
``git show 825ce96:src/atomate2_gmt/stores.py > /tmp/stores_old.py``) next to the installed
package and times both on the workload of ``bench_store.py`` (first write, rewrite, top-20
queries) in one process, alternating the order each round, so that both see the same load.

    python benchmarks/bench_store_ab.py /tmp/stores_old.py --rounds 6

Prints the per-round figures and the medians.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_store import QUERIES, replicate, template_docs

import atomate2_gmt.stores as package
from atomate2_gmt.query import CandidateQuery, query_candidates


def load_module(path: Path) -> ModuleType:
    """The stores module in ``path`` under the name ``stores_under_test``."""
    spec = importlib.util.spec_from_file_location("stores_under_test", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_round(module: Any, docs: list[dict[str, Any]], batch_size: int) -> tuple[float, ...]:
    """(first-write docs/s, rewrite docs/s, ms per top-20 query) on a fresh embedded store."""
    tmp = Path(tempfile.mkdtemp(prefix="bench_store_ab_"))
    try:
        store = module.EmbeddedStore(str(tmp / "e.sqlite"), "gmt_predictions", key="prediction_id")
        t0 = time.perf_counter()
        module.upsert_predictions(store, docs, batch_size=batch_size)
        t1 = time.perf_counter()
        module.upsert_predictions(store, docs, batch_size=batch_size)
        t2 = time.perf_counter()
        reps = 5
        for _ in range(reps):
            for q in QUERIES:
                assert query_candidates(store, CandidateQuery(top=20, **q))
        t3 = time.perf_counter()
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = len(docs)
    return n / (t1 - t0), n / (t2 - t1), 1000 * (t3 - t2) / (reps * len(QUERIES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="a single-file stores module")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    old = load_module(args.old)
    docs = replicate(template_docs(40), args.n)
    runs: dict[str, list[tuple[float, ...]]] = {"old": [], "package": []}
    for i in range(args.rounds):
        order = [("old", old), ("package", package)]
        for name, module in order if i % 2 == 0 else order[::-1]:
            runs[name].append(one_round(module, docs, args.batch_size))
    print(f"{args.n} documents, {args.rounds} alternated rounds in one process")
    print(f"{'':<8} {'insert docs/s':>14} {'upsert docs/s':>14} {'query ms':>9}   (medians)")
    for name, rows in runs.items():
        ins, ups, qms = (statistics.median(col) for col in zip(*rows, strict=True))
        print(f"{name:<8} {ins:>14.0f} {ups:>14.0f} {qms:>9.2f}")
        print("         rounds: " + ", ".join(f"{a:.0f}/{b:.0f}/{c:.1f}" for a, b, c in rows))


if __name__ == "__main__":
    main()
