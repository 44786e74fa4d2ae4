"""Screen into MongoDB instead of the embedded store.

The connection comes from the settings, never from code: set it in the environment (or in
``~/.atomate2_gmt.yaml``) before running:

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

from jobflow import run_locally

from atomate2_gmt.flows.screen import GMTScreenMaker
from atomate2_gmt.settings import GMTSettings
from atomate2_gmt.stores import candidate_store, describe_store

settings = GMTSettings()
if settings.mongo_uri is None and settings.CANDIDATE_STORE is None:
    sys.exit("set ATOMATE2_GMT_MONGO_URI (or ATOMATE2_GMT_CANDIDATE_STORE) first")
print("screening into", describe_store(candidate_store(settings)))  # password masked
flow = GMTScreenMaker(chunk_size=500).make(sys.argv[1])  # fails now if the server is unreachable
run_locally(flow, ensure_success=True)
