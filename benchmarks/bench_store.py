"""Write and query throughput of the prediction stores, with every index in place.

Backends: a MongoDB server (SecantusDB's ``secantusd-py``, the test suite's wire-protocol
server, a local subprocess; or with ``--mongod PATH`` a real ``mongod``), the embedded SQLite
store (the default), maggma's writable ``JSONStore`` (the alternative embedded store that needs
no new dependency; it rewrites its whole file on every update) and maggma's
``MontyStore(storage="sqlite")`` (montydb, when installed; it builds no indexes, so it gets
fewer documents and its rankings are checked against the embedded store's on the same
documents). Documents are real ``GMTPredictionDoc``s with all four tasks (dielectric,
dielectric_total, piezo, elastic tensors in three forms + structure), built from shipped MP
structures with symmetry-consistent tensors and replicated under distinct keys.

    python benchmarks/bench_store.py            # 5000 documents, batches of 500
    python benchmarks/bench_store.py --n 2000 --skip-json --skip-monty
    python benchmarks/bench_store.py --n 20000 --skip-json --skip-monty \
        --mongod /opt/mongod/bin/mongod --out benchmarks/results/bench_store_mongod.json

Prints a table and writes benchmarks/results/bench_store.json (or ``--out``).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from atomate2_gmt.query import CandidateQuery, query_candidates
from atomate2_gmt.schemas.prediction import GMTPredictionDoc
from atomate2_gmt.stores import EmbeddedStore, upsert_predictions
from atomate2_gmt.tensors.conventions import full_to_voigt
from atomate2_gmt.tensors.properties import isotropic_elastic_tensor
from atomate2_gmt.tensors.symmetry import symmetrize

RESULTS = Path(__file__).parent / "results" / "bench_store.json"


def template_docs(n_templates: int, seed: int = 0) -> list[GMTPredictionDoc]:
    """Real prediction documents for MP piezo structures (≤ 12 sites), all four tasks."""
    path = resources.files("atomate2_gmt.data") / "datasets" / "mp_legacy_piezo.json.gz"
    with path.open("rb") as fh, gzip.open(fh, "rt") as gz:
        records = [r for r in json.load(gz) if len(r["structure"]["sites"]) <= 12]
    records = records[:: max(1, len(records) // n_templates)][:n_templates]  # varied structures
    rng = np.random.default_rng(seed)
    docs = []
    for rec in records:
        s = Structure.from_dict(rec["structure"])
        tensors = {
            "dielectric": symmetrize(np.diag(rng.uniform(2, 12, 3)), s, "dielectric"),
            "dielectric_total": symmetrize(np.diag(rng.uniform(5, 40, 3)), s, "dielectric"),
            "piezo": symmetrize(rng.normal(size=(3, 3, 3)), s, "piezo"),
            "elastic": isotropic_elastic_tensor(rng.uniform(30, 250), rng.uniform(10, 120))
            + symmetrize(rng.normal(size=(3, 3, 3, 3)) * 5, s, "elastic"),
        }
        kinds = {"dielectric_total": "dielectric"}
        preds = {
            t: {
                "state": "successful",
                "error": None,
                "tensor": v.tolist(),
                "voigt": full_to_voigt(v, kinds.get(t, t)).tolist(),
            }
            for t, v in tensors.items()
        }
        info = {t: {"name": f"gmtnet-{t}", "version": "bench", "checkpoint_hash": "0" * 64}
                for t in tensors}  # fmt: skip
        docs.append(
            GMTPredictionDoc.from_predictions(
                s, preds, info, source=rec["material_id"], device="cpu"
            )
        )
    return docs


def replicate(templates: list[GMTPredictionDoc], n: int, seed: int = 1) -> list[dict[str, Any]]:
    """``n`` store documents with distinct keys and spread-out sort values."""
    rng = np.random.default_rng(seed)
    base = [t.to_store_dict() for t in templates]
    out = []
    for i in range(n):
        d = dict(base[i % len(base)])
        d["structure_key"] = f"sk1-bench{i:08d}"
        d["prediction_id"] = f"{d['structure_key']}:{d['model_version']}"
        for f in ("e_ij_max", "K_VRH", "G_VRH", "dielectric_eig_max", "dielectric_total_mean"):
            d[f] = float(d[f]) * float(rng.uniform(0.5, 1.5))
        out.append(d)
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_mongo(storage: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(storage),
         "--standalone", "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(400):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"mongodb://127.0.0.1:{port}/"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("secantusd-py did not start")


def start_mongod(storage: Path, mongod: str) -> tuple[subprocess.Popen[bytes], str]:
    """A real MongoDB server (the ``mongod`` executable at that path) with its defaults
    (WiredTiger, its own cache size), listening on localhost only, its files in ``storage``."""
    import pymongo

    storage.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    proc = subprocess.Popen(
        [mongod, "--dbpath", str(storage), "--port", str(port), "--bind_ip", "127.0.0.1",
         "--nounixsocket", "--quiet", "--logpath", str(storage / "mongod.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    uri = f"mongodb://127.0.0.1:{port}/"
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"mongod exited with code {proc.returncode} ({storage}/mongod.log)")
        client: Any = pymongo.MongoClient(uri, serverSelectionTimeoutMS=200)
        try:
            client["admin"].command("ping")
            return proc, uri
        except pymongo.errors.PyMongoError:
            time.sleep(0.1)
        finally:
            client.close()
    proc.kill()
    proc.wait()
    raise RuntimeError("mongod did not start")


def start_mongo_server(
    storage: Path, mongod: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """The test suite's wire-protocol server, or with ``mongod`` (a path) a real MongoDB."""
    return start_mongo(storage) if mongod is None else start_mongod(storage, mongod)


def server_name(uri: str, mongod: str | None) -> str:
    """What answers at ``uri``: "mongod <its version>" or "secantusd-py <SecantusDB's
    version>" (SecantusDB reports the MongoDB version it emulates, not its own)."""
    if mongod is None:
        from importlib.metadata import version

        return f"secantusd-py {version('secantusdb')}"
    return f"mongod {server_version(uri)}"


def server_version(uri: str) -> str:
    import pymongo

    client: Any = pymongo.MongoClient(uri)
    try:
        return str(client.server_info().get("version"))
    finally:
        client.close()


def measure(store: Any, docs: list[dict[str, Any]], batch_size: int) -> dict[str, float]:
    """Seconds for: first write (inserts), second write (replacing upserts), queries."""
    t0 = time.perf_counter()
    upsert_predictions(store, docs, batch_size=batch_size)
    t1 = time.perf_counter()
    upsert_predictions(store, docs, batch_size=batch_size)
    t2 = time.perf_counter()
    assert store.count() == len(docs)
    t3 = time.perf_counter()
    reps = 5
    for _ in range(reps):
        for q in QUERIES:
            rows = query_candidates(store, CandidateQuery(top=20, **q))
            assert rows
    t4 = time.perf_counter()
    n = len(docs)
    return {
        "insert_docs_per_s": n / (t1 - t0),
        "upsert_docs_per_s": n / (t2 - t1),
        "query_top20_ms": 1000 * (t4 - t3) / (reps * len(QUERIES)),
    }


QUERIES: tuple[dict[str, Any], ...] = (
    {"prop": "piezo", "sort": "e_ij_max"},
    {"prop": "elastic", "sort": "K_VRH", "stable_only": True, "exclude_elements": "Pb,Cd"},
    {"prop": "dielectric", "sort": "eig_max", "crystal_system": "hexagonal"},
)


def rankings(store: Any) -> list[list[str]]:
    """The ``prediction_id``s of the top 20 of each benchmark query, in order."""
    return [
        [r["prediction_id"] for r in query_candidates(store, CandidateQuery(top=20, **q))]
        for q in QUERIES
    ]


def measure_monty(folder: Path, docs: list[dict[str, Any]], batch_size: int) -> dict[str, Any]:
    """maggma ``MontyStore(storage="sqlite")`` on ``docs``, and whether its rankings equal the
    embedded store's on the same documents."""
    from maggma.stores import MontyStore

    store = MontyStore("gmt_predictions", database_path=str(folder / "monty"), storage="sqlite",
                       key="prediction_id")  # fmt: skip
    res: dict[str, Any] = measure(store, docs, batch_size)
    emb = EmbeddedStore(str(folder / "same_docs.sqlite"), "gmt_predictions", key="prediction_id")
    upsert_predictions(emb, docs, batch_size=batch_size)
    res["n_documents"] = len(docs)
    res["rankings_equal_embedded"] = rankings(store) == rankings(emb)
    emb.close()
    store.close()
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="documents to write")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--templates", type=int, default=40)
    parser.add_argument("--json-n", type=int, default=2000, help="documents for JSONStore")
    parser.add_argument("--monty-n", type=int, default=500, help="documents for MontyStore")
    parser.add_argument("--skip-mongo", action="store_true")
    parser.add_argument("--skip-json", action="store_true")
    parser.add_argument("--skip-monty", action="store_true", help="also skipped without montydb")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON written")
    parser.add_argument(
        "--mongod",
        default=None,
        help="path of a MongoDB server executable (mongod): run it instead of secantusd-py",
    )
    args = parser.parse_args()

    t = time.perf_counter()
    templates = template_docs(args.templates)
    build_s = (time.perf_counter() - t) / len(templates)
    docs = replicate(templates, args.n)
    doc_kb = float(np.mean([len(json.dumps(d, default=str)) for d in docs[:200]])) / 1024
    results: dict[str, Any] = {
        "n_documents": args.n,
        "batch_size": args.batch_size,
        "document_kb_json": round(doc_kb, 2),
        "build_doc_ms": round(1000 * build_s, 2),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": __import__("os").cpu_count(),
        },
        "backends": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench_store_"))
    try:
        emb = EmbeddedStore(str(tmp / "embedded.sqlite"), "gmt_predictions", key="prediction_id")
        results["backends"]["embedded (SQLite)"] = measure(emb, docs, args.batch_size)
        emb.close()
        if not args.skip_mongo:
            from maggma.stores import MongoStore

            proc, uri = start_mongo_server(tmp / "mongo", args.mongod)
            try:
                name = f"MongoDB ({server_name(uri, args.mongod)})"
                store = MongoStore("bench", "gmt_predictions", uri=uri, key="prediction_id")
                results["backends"][name] = measure(store, docs, args.batch_size)
                store.close()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        if not args.skip_json:
            from maggma.stores import JSONStore

            n_json = min(args.json_n, args.n)
            js = JSONStore(str(tmp / "store.json"), read_only=False, key="prediction_id")
            res = measure(js, docs[:n_json], args.batch_size)
            res["n_documents"] = n_json
            results["backends"]["maggma JSONStore"] = res
        if not args.skip_monty and importlib.util.find_spec("montydb") is not None:
            results["backends"]["maggma MontyStore (sqlite)"] = measure_monty(
                tmp, docs[: min(args.monty_n, args.n)], args.batch_size
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"{args.n} prediction documents ({doc_kb:.1f} kB JSON each), batches of {args.batch_size}, "
          f"all prediction indexes; building one document: {1000 * build_s:.1f} ms")  # fmt: skip
    print(
        f"{'backend':<30} {'docs':>6} {'insert docs/s':>14} {'upsert docs/s':>14} {'query ms':>9}"
    )
    for name, r in results["backends"].items():
        print(f"{name:<30} {r.get('n_documents', args.n):>6} {r['insert_docs_per_s']:>14.0f} "
              f"{r['upsert_docs_per_s']:>14.0f} {r['query_top20_ms']:>9.1f}")  # fmt: skip
        if "rankings_equal_embedded" in r:
            print(f"  {name}: top-20 rankings equal the embedded store's on the same documents: "
                  f"{r['rankings_equal_embedded']}")  # fmt: skip
    results["command"] = " ".join(["python", "benchmarks/bench_store.py", *sys.argv[1:]])
    results["load_average_1min_end"] = round(__import__("os").getloadavg()[0], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
