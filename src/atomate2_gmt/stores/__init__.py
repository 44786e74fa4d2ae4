"""Stores for screening: built from :class:`~atomate2_gmt.settings.GMTSettings`.

Default (no server): every store is an :class:`EmbeddedStore` — a maggma ``Store`` whose
documents are JSON rows of one SQLite file in ``PROJECT_DIR/stores/``; Mongo-style queries are
translated to SQL over SQLite's JSON functions (indexes on JSON expressions), anything outside
that subset is evaluated in Python with mongomock's matcher. Registry weights go to files in
``PROJECT_DIR/stores/<blob collection>/`` (:class:`LocalBlobStore`).

With ``MONGO_URI`` the stores are maggma ``MongoStore`` collections and the weights a GridFS
bucket (:class:`~atomate2_gmt.stores.gridfs.GridFSBlobStore`). A per-store spec in the settings
(a ``Store.as_dict()``) overrides both.

Writes of prediction documents go through :func:`upsert_predictions` (bulk, idempotent on the
``prediction_id`` = ``structure_key:model_version``); :func:`check_store` fails fast, naming the
host but never the password, when a store cannot be reached.

Modules:

- :mod:`~atomate2_gmt.stores.errors`: the exceptions of every module below;
- :mod:`~atomate2_gmt.stores.sql`: the MongoDB-filter → SQLite translator (no maggma in it);
- :mod:`~atomate2_gmt.stores.embedded`: :class:`EmbeddedStore`;
- :mod:`~atomate2_gmt.stores.writes`: indexes, health check, descriptions, bulk upserts;
- :mod:`~atomate2_gmt.stores.blobs`: :class:`LocalBlobStore`;
- :mod:`~atomate2_gmt.stores.gridfs`: ``GridFSBlobStore`` (not imported here: it needs
  ``maggma.stores``, ≈ 0.3 s of imports that an embedded-store command never pays);
- :mod:`~atomate2_gmt.stores.factory`: settings → stores.

The translator stays rather than maggma's ``MontyStore(storage="sqlite")``: montydb builds no
indexes, and on ``benchmarks/bench_store.py`` it wrote 110-360x slower and queried 160x slower
(docs/benchmarks.md, Stores).

Import from ``atomate2_gmt.stores`` (``GridFSBlobStore`` from its module): the public classes
report it as their module. Code that
must honour a test's replacement of :func:`upsert_predictions` looks it up here at call time.
"""

from atomate2_gmt.stores.blobs import LocalBlobStore
from atomate2_gmt.stores.counting import MatchCount, count_matches
from atomate2_gmt.stores.embedded import EmbeddedStore
from atomate2_gmt.stores.errors import StoreConnectionError, StoreIndexError, StoreWriteError
from atomate2_gmt.stores.factory import (
    candidate_store,
    embedded_store_path,
    registry_blob_store,
    registry_store,
    store_from_spec,
    training_store,
)
from atomate2_gmt.stores.writes import (
    REGISTRY_INDEXES,
    add_sources,
    check_store,
    describe_store,
    ensure_indexes,
    ensure_prediction_indexes,
    store_error_reason,
    upsert_predictions,
)

__all__ = [
    "REGISTRY_INDEXES",
    "EmbeddedStore",
    "LocalBlobStore",
    "MatchCount",
    "StoreConnectionError",
    "StoreIndexError",
    "StoreWriteError",
    "add_sources",
    "candidate_store",
    "check_store",
    "count_matches",
    "describe_store",
    "embedded_store_path",
    "ensure_indexes",
    "ensure_prediction_indexes",
    "registry_blob_store",
    "registry_store",
    "store_error_reason",
    "store_from_spec",
    "training_store",
    "upsert_predictions",
]
