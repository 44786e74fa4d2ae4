"""Screen into MongoDB instead of the embedded store, then query the ranking from it.

The connection comes from the settings, never from code. To try it on one machine, start the
local MongoDB-compatible server (SecantusDB, the ``mongo`` extra; for trying and tests only):

    atomate2-gmt mongo start                     # prints the URI, e.g. mongodb://127.0.0.1:27018/
    export ATOMATE2_GMT_MONGO_URI=mongodb://127.0.0.1:27018/
    python examples/screen_mongodb.py            # 24 generated candidates (or: a folder of CIFs)
    atomate2-gmt query --property piezo --top 5  # the same store, from the command line
    atomate2-gmt mongo stop

In production the URI names a real MongoDB server (set it in the environment or in
``~/.atomate2_gmt.yaml``):

    export ATOMATE2_GMT_MONGO_URI="mongodb://user:password@db.example.org:27017/?authSource=admin"
    export ATOMATE2_GMT_MONGO_DATABASE=atomate2_gmt
    python examples/screen_mongodb.py path/to/cifs

Every store (predictions, training data, model registry with GridFS weights) then lives in that
database. To point only the prediction store elsewhere, give a maggma store spec instead:

    export ATOMATE2_GMT_CANDIDATE_STORE='{"@module": "maggma.stores", "@class": "MongoStore",
        "database": "screening", "collection_name": "predictions", "host": "db.example.org",
        "port": 27017, "key": "prediction_id"}'

The screening jobs build the store from the settings on the machine they run on, so the
credentials never enter the jobflow job documents.
"""

from __future__ import annotations

import sys
from typing import Any

from jobflow import run_locally

from atomate2_gmt.flows.screen import GMTScreenMaker
from atomate2_gmt.query import query_candidates
from atomate2_gmt.settings import resolve_settings
from atomate2_gmt.stores import candidate_store, describe_store


def main(argv: list[str]) -> None:
    """Screen ``argv[0]`` (a folder of structure files) or 24 generated candidates."""
    settings = resolve_settings()
    if settings.mongo_uri is None and settings.CANDIDATE_STORE is None:
        sys.exit(
            "set ATOMATE2_GMT_MONGO_URI (or ATOMATE2_GMT_CANDIDATE_STORE) first; to try it "
            "locally: atomate2-gmt mongo start"
        )
    candidates: Any
    if argv:
        candidates = argv[0]
    else:
        from atomate2_gmt.substitution import generate_substitution_candidates

        candidates = generate_substitution_candidates(n=24, seed=0)
    store = candidate_store(settings)
    print("screening into", describe_store(store))  # password masked
    flow = GMTScreenMaker(chunk_size=500).make(candidates)  # fails now if the server is down
    run_locally(flow, ensure_success=True, log=False)
    store.connect()
    try:
        rows = query_candidates(store, "piezo", top=5)
    finally:
        store.close()
    for row in rows:
        print(f"{row['formula']:<12} {row['space_group']:<10} e_ij_max {row['e_ij_max']:.3g} C/m²")


if __name__ == "__main__":
    main(sys.argv[1:])
