"""Queries, web table pages and counts at 10⁵ and 10⁶ stored prediction documents, on the
embedded SQLite store and on MongoDB: a real ``mongod`` given by ``--mongod PATH``, else the test
suite's wire-protocol server (SecantusDB's ``secantusd-py``).

Documents: the shipped models (all four tasks) run on 42 shipped MP structures (six of each
crystal system); the benchmark stores copies of these real prediction documents under distinct
keys (``structure_key``, ``prediction_id``, ``source``), written in bulk (SQLite ``executemany``
in one transaction per 20 000 rows, MongoDB ``insert_many``), indexes built afterwards
(``ensure_prediction_indexes``). The shipped structures carry no candidate-source values, so
each copy gets a band gap and an energy above the hull drawn from a fixed seed (band gap 0-6 eV
on 70 % of the copies, none on the rest; energy above the hull 0-0.4 eV/atom where a gap is
given), and the stored figures (Φ, Φ − σ_Φ) are those of its values, so that the presets that
need them select a realistic part of the store. The predictions are cached (``--base-cache``)
and migrated to the current schema (``migrate_prediction_dict``) when read.

Timed (wall clock, median and worst of ``--repeat`` after one first call, in this process):
the ``query`` command's work (``query_candidates`` + ``missing_values``) for piezo by e_ij_max
without Pb and Cd and for each preset; the web table (``service.candidate_page`` with the app's
count cache) page 1, the page after page 1 by its cursor, a deep page by its cursor (rank
10 001) and by skip (rank 10 001); ``count_matches``; the API request
(``/candidates/?property=piezo&sort=e_ij_max&exclude_elements=Pb,Cd``) over HTTP to a uvicorn
server in a thread; and the whole ``atomate2-gmt query --property piezo --sort e_ij_max --top
20`` process. MongoDB is filled in batches until ``--n`` or ``--mongo-max-s`` seconds of
inserting, whichever comes first (the documents reached and the insert rate are recorded).

    python benchmarks/bench_query_scale.py --n 100000 1000000 --base-cache /tmp/base.json
    python benchmarks/bench_query_scale.py --n 100000 --stores embedded
    python benchmarks/bench_query_scale.py --n 1000000 --stores mongo --mongod /opt/mongod/bin/mongod

Prints a table and writes benchmarks/results/bench_query_scale.json. The SQLite file of 10⁶
documents takes several GB in a temporary folder (deleted at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from bench_store import server_name, start_mongo_server  # noqa: E402
from bench_web import Server  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "bench_query_scale.json"
TARGET_MS = 300.0
PER_PAGE = 25
DEEP_RANK = 10_000


def predict_base(project: Path) -> list[dict[str, Any]]:
    """Real prediction documents (shipped models, all four tasks) of 42 MP structures, as
    stored."""
    from atomate2_gmt.data.mp import structures_by_crystal_system
    from atomate2_gmt.jobs.predict import GMTPredictMaker, predict_documents
    from atomate2_gmt.settings import resolve_settings
    from atomate2_gmt.stores import candidate_store, upsert_predictions

    groups = structures_by_crystal_system(6)
    structures = [s for cs in groups for s in groups[cs]]
    tasks = ("dielectric", "dielectric_total", "piezo", "elastic")
    maker = GMTPredictMaker(tasks=tasks, workers=0, model_workers=0)
    docs = predict_documents(maker, structures).documents
    assert isinstance(docs, list)
    store = candidate_store(resolve_settings(project))
    upsert_predictions(store, docs)
    store.connect()
    out = [{k: v for k, v in d.items() if k != "_id"} for d in store.query()]
    store.close()
    return out


def load_base(cache: Path | None, project: Path) -> list[dict[str, Any]]:
    """The base documents (from ``cache`` when it exists, else predicted and cached there),
    migrated to the current schema."""
    from atomate2_gmt.schemas.prediction import migrate_prediction_dict

    if cache is not None and cache.exists():
        docs = orjson.loads(cache.read_bytes())
    else:
        docs = predict_base(project)
        if cache is not None:
            cache.write_bytes(orjson.dumps(docs, default=str))
    return [migrate_prediction_dict(d) for d in docs]


def _unit(i: int, salt: int) -> float:
    """A deterministic number in [0, 1) of copy ``i``."""
    return ((i * 2654435761 + salt * 40503) % 2**32) / 2**32


def copies(base: list[dict[str, Any]], start: int, stop: int) -> Iterator[dict[str, Any]]:
    """Copies ``start`` … ``stop`` − 1 of the base documents under distinct keys, each with its
    own source values and the stored figures of those values."""
    from atomate2_gmt.schemas.prediction import figure_fields

    for i in range(start, stop):
        doc = dict(base[i % len(base)])
        key = f"{doc['structure_key']}-c{i:07d}"
        gap = round(6.0 * _unit(i, 1), 3) if _unit(i, 2) < 0.7 else None
        hull = round(0.4 * _unit(i, 3), 4) if gap is not None else None
        doc.update(
            structure_key=key,
            prediction_id=f"{key}:{doc['model_version']}",
            source=f"{doc['source']}-c{i:07d}",
            sources=[f"{doc['source']}-c{i:07d}"],
            band_gap=gap,
            energy_above_hull=hull,
            **figure_fields(gap, doc.get("dielectric_total_mean"), doc.get("uncertainty") or {}),
        )
        yield doc


def mean_bytes(docs: list[dict[str, Any]]) -> float:
    """Mean size of the documents as stored JSON text (the embedded store's row)."""
    from atomate2_gmt.stores.embedded import _dumps

    return statistics.mean(len(_dumps(d).encode()) for d in docs)


# --------------------------------------------------------------------------------------------
# filling the stores
# --------------------------------------------------------------------------------------------


def fill_embedded(store: Any, base: list[dict[str, Any]], n: int) -> dict[str, float]:
    """``n`` copies in the embedded store: the first ``len(base)`` through ``update`` (which
    records the array fields), the rest by ``executemany``; then the indexes."""
    from atomate2_gmt.stores import ensure_prediction_indexes
    from atomate2_gmt.stores.embedded import _dumps

    store.connect()
    t0 = time.perf_counter()
    store.update(list(copies(base, 0, len(base))))
    conn = store._collection
    sql = f'INSERT INTO "{store.collection_name}" (doc) VALUES (?)'
    batch = 20_000
    for start in range(len(base), n, batch):
        rows = [(_dumps(d),) for d in copies(base, start, min(n, start + batch))]
        conn.execute("BEGIN")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
    t1 = time.perf_counter()
    ensure_prediction_indexes(store)
    conn.execute("ANALYZE")
    t2 = time.perf_counter()
    size = os.path.getsize(store.path)
    return {"insert_s": t1 - t0, "index_s": t2 - t1, "file_bytes": size, "n": n}


def fill_mongo(store: Any, base: list[dict[str, Any]], n: int, max_s: float) -> dict[str, float]:
    """Up to ``n`` copies by ``insert_many`` (batches of 5000) until ``max_s`` seconds; then
    the indexes."""
    from atomate2_gmt.stores import ensure_prediction_indexes

    store.connect()
    coll = store._collection
    t0 = time.perf_counter()
    done = 0
    batch = 5000
    rates = []
    while done < n and time.perf_counter() - t0 < max_s:
        t = time.perf_counter()
        docs = list(copies(base, done, min(n, done + batch)))
        coll.insert_many(docs, ordered=False)
        done += len(docs)
        rates.append(len(docs) / (time.perf_counter() - t))
    t1 = time.perf_counter()
    ensure_prediction_indexes(store)
    t2 = time.perf_counter()
    return {
        "insert_s": t1 - t0,
        "index_s": t2 - t1,
        "n": done,
        "first_batch_docs_per_s": rates[0],
        "last_batch_docs_per_s": rates[-1],
    }


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any], repeat: int) -> tuple[dict[str, float], Any]:
    t = time.perf_counter()
    out = fn()
    first = (time.perf_counter() - t) * 1000
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return {
        "first_ms": round(first, 1),
        "median_ms": round(statistics.median(times), 1),
        "max_ms": round(max(times), 1),
    }, out


CLI_QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("query piezo e_ij_max, no Pb/Cd", {"prop": "piezo", "sort": "e_ij_max",
                                        "exclude_elements": "Pb,Cd"}),
    ("query --preset mp-piezo", {"preset": "mp-piezo"}),
    ("query --preset jarvis-piezo", {"preset": "jarvis-piezo"}),
    ("query --preset jarvis-dielectric", {"preset": "jarvis-dielectric"}),
    ("query --preset riebesell-dielectric", {"preset": "riebesell-dielectric"}),
]  # fmt: skip


def measure(store: Any, repeat: int) -> list[dict[str, Any]]:
    """Rows of (case, timings, what came back) on a connected store."""
    from atomate2_gmt.query import CandidateQuery, missing_values, query_candidates
    from atomate2_gmt.stores import count_matches
    from atomate2_gmt.web.service import MatchCounts, candidate_page

    rows = []
    for name, options in CLI_QUERIES:
        query = CandidateQuery.build(top=20, **options)

        def cli(q: CandidateQuery = query) -> tuple[int, dict[str, Any]]:
            hits = query_candidates(store, q)
            return len(hits), {k: v.label() for k, v in missing_values(store, q).items()}

        t, (n_rows, left_out) = timed(cli, repeat)
        rows.append({"case": name, **t, "rows": n_rows, "left_out": left_out})

    table = CandidateQuery.build(prop="piezo", sort="e_ij_max", exclude_elements="Pb,Cd")
    counts = MatchCounts()
    t, (page, total) = timed(lambda: candidate_page(store, table, 0, PER_PAGE, counts), repeat)
    rows.append({"case": "web table page 1 (piezo, no Pb/Cd)", **t, "rows": len(page),
                 "total": total.label(), "estimated": total.estimated})  # fmt: skip
    after = (page[-1]["e_ij_max"], page[-1]["prediction_id"])
    t, (page2, _) = timed(
        lambda: candidate_page(store, table, PER_PAGE, PER_PAGE, counts, after=after), repeat
    )
    rows.append({"case": "web table page 2 by its cursor", **t, "rows": len(page2)})
    deep_skip = DEEP_RANK
    t, (deep, _) = timed(lambda: candidate_page(store, table, deep_skip, PER_PAGE, counts), 1)
    rows.append({"case": f"web table deep page by skip (rank {DEEP_RANK + 1})", **t,
                 "rows": len(deep)})  # fmt: skip
    if deep:
        before = deep[0]
        prev = candidate_page(store, table, deep_skip - 1, 1, counts)[0][0]
        cursor = (prev["e_ij_max"], prev["prediction_id"])
        t, (deep2, _) = timed(
            lambda: candidate_page(store, table, deep_skip, PER_PAGE, counts, after=cursor),
            repeat,
        )
        same = [r["prediction_id"] for r in deep2] == [r["prediction_id"] for r in deep]
        rows.append({"case": f"web table deep page by cursor (rank {DEEP_RANK + 1})", **t,
                     "rows": len(deep2), "same_rows_as_skip": same,
                     "first_row": before["prediction_id"]})  # fmt: skip
    criteria = table.criteria()
    t, n = timed(lambda: count_matches(store, criteria), repeat)
    rows.append({"case": "count_matches (piezo, no Pb/Cd)", **t, "total": n.label(),
                 "estimated": n.estimated, "n": n.n})  # fmt: skip
    return rows


def measure_http(settings: Any, repeat: int) -> list[dict[str, Any]]:
    def get(url: str) -> dict[str, Any]:
        with urllib.request.urlopen(url, timeout=300) as r:
            return json.loads(r.read()) if "candidates" in url else {"status": r.status}

    rows = []
    with Server(settings) as url:
        cases = [
            ("API /candidates/ piezo e_ij_max, no Pb/Cd",
             "/candidates/?property=piezo&sort=e_ij_max&exclude_elements=Pb,Cd&_per_page=20"),
            ("API /candidates/ preset riebesell-dielectric",
             "/candidates/?preset=riebesell-dielectric&_per_page=20"),
            ("HTML table page 1 (default: dielectric)", "/"),
            ("HTML table page 1 (jarvis-piezo)", "/?preset=jarvis-piezo"),
        ]  # fmt: skip
        for name, path in cases:
            t, body = timed(lambda p=path: get(url + p), repeat)
            meta = body.get("meta", {})
            rows.append({"case": name, **t, "total": meta.get("total_label"),
                         "estimated": meta.get("estimated")})  # fmt: skip
    return rows


def cli_process(env: dict[str, str], repeat: int) -> dict[str, Any]:
    """Wall time of the whole ``atomate2-gmt query --property piezo --sort e_ij_max --top 20``
    process (this checkout's sources)."""
    launcher = (
        "import sys; from atomate2_gmt.cli.app import main; sys.argv[0] = 'atomate2-gmt'; main()"
    )
    args = [sys.executable, "-c", launcher, "query", "--property", "piezo", "--sort", "e_ij_max",
            "--top", "20"]  # fmt: skip
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT / "src")}
    import resource

    times = []
    cpu = []
    out = ""
    for _ in range(repeat + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        proc = subprocess.run(args, env=full_env, capture_output=True, text=True)
        times.append((time.perf_counter() - t) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(1000 * (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime))
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        out = proc.stdout
    lines = [line for line in out.splitlines() if line.strip()]
    return {
        "case": "atomate2-gmt query --property piezo --sort e_ij_max --top 20 (process)",
        "first_ms": round(times[0], 1),
        "median_ms": round(statistics.median(times[1:]), 1),
        "max_ms": round(max(times[1:]), 1),
        "cpu_median_ms": round(statistics.median(cpu[1:]), 1),
        "rows": len(lines),
    }


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def mongo_scaling(
    base: list[dict[str, Any]], sizes: list[int], tmp: Path, mongod: str | None = None
) -> list[dict]:
    """How a MongoDB server scales, without the store layer: at each size, the insert rate, a
    sorted top-20 without a filter, the filtered top-20, the plans of both, a lookup by key,
    and the server's resident memory (SecantusDB: why it cannot hold 10⁶ documents here)."""
    import pymongo

    from atomate2_gmt.query import CandidateQuery

    proc, uri = start_mongo_server(tmp / "mongo-scaling", mongod)
    rows = []
    client: Any = None
    try:
        server = server_name(uri, mongod)
        client = pymongo.MongoClient(uri)
        coll = client["bench"]["predictions"]
        coll.create_index([("e_ij_max", 1), ("prediction_id", 1)])
        coll.create_index([("prediction_id", 1)], unique=True)
        query = CandidateQuery.build(prop="piezo", sort="e_ij_max", exclude_elements="Pb,Cd")
        order = [("e_ij_max", -1), ("prediction_id", -1)]
        done = 0
        for n in sizes:
            docs = list(copies(base, done, n))
            t = time.perf_counter()
            coll.insert_many(docs)
            rate = len(docs) / (time.perf_counter() - t)
            done = n
            t = time.perf_counter()
            list(coll.find({}, {"prediction_id": 1}).sort(order).limit(20))
            plain = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            list(coll.find(query.criteria(), {"prediction_id": 1}).sort(order).limit(20))
            filtered = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            coll.find_one({"prediction_id": docs[-1]["prediction_id"]})
            by_key = (time.perf_counter() - t) * 1000

            def stages(plan: dict[str, Any]) -> list[str]:
                out = []
                while isinstance(plan, dict) and plan.get("stage"):
                    out.append(plan["stage"])
                    plan = plan.get("inputStage", {})
                return out

            explain = coll.find({}).sort(order).limit(20).explain()["queryPlanner"]
            explain_f = coll.find(query.criteria()).sort(order).limit(20).explain()
            rows.append({
                "server": server, "n": n, "insert_docs_per_s": round(rate),
                "top20_no_filter_ms": round(plain, 1),
                "plan_no_filter": stages(explain["winningPlan"]),
                "top20_piezo_filter_ms": round(filtered, 1),
                "plan_piezo_filter": stages(explain_f["queryPlanner"]["winningPlan"]),
                "find_by_key_ms": round(by_key, 1), "server_rss_mb": rss_mb(proc.pid),
            })  # fmt: skip
            print(rows[-1], flush=True)
    finally:
        if client is not None:
            client.close()
        proc.terminate()
        proc.wait(timeout=60)
    return rows


def run_size(
    kind: str, n: int, base: list[dict[str, Any]], tmp: Path, args: argparse.Namespace
) -> dict[str, Any]:
    from atomate2_gmt.settings import GMTSettings, resolve_settings
    from atomate2_gmt.stores import candidate_store

    project = tmp / f"{kind}-{n}"
    env = {"ATOMATE2_GMT_PROJECT_DIR": str(project)}
    proc = None
    if kind == "mongo":
        proc, uri = start_mongo_server(tmp / f"mongo-{n}", args.mongod)
        env["ATOMATE2_GMT_MONGO_URI"] = uri
        settings = GMTSettings(PROJECT_DIR=project, MONGO_URI=uri)
    else:
        settings = resolve_settings(project)
    try:
        server = server_name(uri, args.mongod) if kind == "mongo" else "embedded SQLite"
        store = candidate_store(settings)
        if kind == "mongo":
            fill = fill_mongo(store, base, n, args.mongo_max_s)
            fill["server_rss_mb"] = rss_mb(proc.pid) if proc else None
        else:
            fill = fill_embedded(store, base, n)
        print(f"{kind} {n}: filled {fill}", flush=True)
        rows = measure(store, args.repeat)
        store.close()
        rows += measure_http(settings, args.repeat)
        rows.append(cli_process(env, args.repeat))
        if kind == "mongo" and proc:
            fill["server_rss_mb_after"] = rss_mb(proc.pid)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(project, ignore_errors=True)
        shutil.rmtree(tmp / f"mongo-{n}", ignore_errors=True)
    for r in rows:
        print(f"  {r['case']:<62} first {r['first_ms']:>9.1f}  median {r['median_ms']:>8.1f}  "
              f"worst {r['max_ms']:>8.1f} ms  {r.get('total') or r.get('rows', '')}"
              + (f"  (CPU {r['cpu_median_ms']:.0f} ms)" if "cpu_median_ms" in r else ""),
              flush=True)  # fmt: skip
    return {"store": kind, "server": server, "n_requested": n, "fill": fill, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--stores", nargs="*", default=["embedded", "mongo"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--base-cache", type=Path, default=None)
    parser.add_argument("--mongo-max-s", type=float, default=900.0)
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the stores")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON written")
    parser.add_argument(
        "--mongo-scaling",
        type=int,
        nargs="*",
        default=[],
        help="sizes of the MongoDB server probe (e.g. 500 1000 2000 4000)",
    )
    parser.add_argument(
        "--mongod",
        default=None,
        help="path of a MongoDB server executable (mongod) to run instead of secantusd-py",
    )
    args = parser.parse_args()
    os.environ.setdefault("ATOMATE2_GMT_DEVICE", "cpu")
    for name in ("ATOMATE2_GMT_MONGO_URI", "ATOMATE2_GMT_CANDIDATE_STORE"):
        os.environ.pop(name, None)

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp_name:
        tmp = Path(tmp_name)
        base = load_base(args.base_cache, tmp / "base")
        footprint = round(mean_bytes(list(copies(base, 0, len(base)))))
        print(f"{len(base)} base documents, {footprint} bytes per stored document", flush=True)
        results: list[dict[str, Any]] = []
        scaling = (
            mongo_scaling(base, args.mongo_scaling, tmp, args.mongod) if args.mongo_scaling else []
        )
        for kind in args.stores:
            for n in args.n:
                results.append(run_size(kind, n, base, tmp, args))
                args.out.parent.mkdir(exist_ok=True)
                summary = _summary(results, footprint, args)
                args.out.write_text(json.dumps({**summary, "mongo_scaling": scaling}, indent=1))
        if scaling and not results:
            summary = _summary(results, footprint, args)
            args.out.write_text(json.dumps({**summary, "mongo_scaling": scaling}, indent=1))
    print(f"wrote {args.out}")


def _summary(results: list[dict[str, Any]], footprint: int, args: argparse.Namespace) -> dict:
    return {
        "bytes_per_document": footprint,
        "target_ms": TARGET_MS,
        "repeat": args.repeat,
        "results": results,
        "command": " ".join(["python", "benchmarks/bench_query_scale.py", *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, SQLite "
        f"{__import__('sqlite3').sqlite_version}, load {os.getloadavg()[0]:.1f}",
    }


if __name__ == "__main__":
    main()
