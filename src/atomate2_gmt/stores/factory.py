"""Settings → stores: which maggma store holds candidates, training records and the registry.

No server configured: :class:`~atomate2_gmt.stores.embedded.EmbeddedStore` tables in
``PROJECT_DIR/stores/gmt_stores.sqlite`` and registry weights as files in
``PROJECT_DIR/stores/<blob collection>/``. With ``MONGO_URI``: maggma ``MongoStore`` collections
and a GridFS bucket. A per-store spec in the settings (a ``Store.as_dict()``) overrides both.
No store is connected here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maggma.core import Store
from monty.json import MontyDecoder

from atomate2_gmt.schemas.fields import PREDICTION_KEY
from atomate2_gmt.settings import GMTSettings, resolve_settings
from atomate2_gmt.stores.blobs import LocalBlobStore
from atomate2_gmt.stores.embedded import EmbeddedStore

__all__ = [
    "candidate_store",
    "embedded_store_path",
    "registry_blob_store",
    "registry_store",
    "store_from_spec",
    "training_store",
]


def embedded_store_path(settings: GMTSettings | None = None) -> Path:
    """The SQLite file of the embedded stores: ``PROJECT_DIR/stores/gmt_stores.sqlite``."""
    settings = settings or resolve_settings()
    return Path(settings.PROJECT_DIR).expanduser() / "stores" / "gmt_stores.sqlite"


def store_from_spec(spec: dict[str, Any]) -> Store:
    """A maggma store from its ``as_dict()`` spec; ``ValueError`` if the spec is not a Store."""
    if not isinstance(spec, dict) or not {"@module", "@class"} <= set(spec):
        raise ValueError("a store spec must be a dict with '@module' and '@class' keys")
    try:
        store = MontyDecoder().process_decoded(dict(spec))
    except Exception as exc:
        raise ValueError(
            f"cannot build a store from the spec {spec.get('@module')}.{spec.get('@class')}: {exc}"
        ) from None
    if isinstance(store, dict):
        raise ValueError(
            f"cannot build a store from the spec {spec['@module']}.{spec['@class']}: "
            "no such class (is its package installed?)"
        )
    if not isinstance(store, Store):
        raise ValueError(
            f"the spec {spec['@module']}.{spec['@class']} does not describe a maggma Store"
        )
    return store


def _mongo_kwargs(settings: GMTSettings) -> dict[str, Any]:
    return {"serverSelectionTimeoutMS": int(settings.STORE_TIMEOUT_S * 1000)}


def _build(settings: GMTSettings | None, spec_field: str, collection_field: str, key: str) -> Store:
    settings = settings or resolve_settings()
    spec = getattr(settings, spec_field)
    collection = getattr(settings, collection_field)
    if spec is not None:
        return store_from_spec(spec)
    uri = settings.mongo_uri
    if uri is not None:
        # maggma.stores only here: an embedded-store command never loads it (see stores.gridfs)
        from maggma.stores import MongoStore

        return MongoStore(
            database=settings.MONGO_DATABASE,
            collection_name=collection,
            uri=uri,
            key=key,
            mongoclient_kwargs=_mongo_kwargs(settings),
        )
    return EmbeddedStore(
        path=str(embedded_store_path(settings)),
        collection_name=collection,
        timeout_s=max(settings.STORE_TIMEOUT_S, 30.0),
        key=key,
    )


def candidate_store(settings: GMTSettings | None = None) -> Store:
    """Store of prediction documents (key ``prediction_id``); not connected yet."""
    return _build(settings, "CANDIDATE_STORE", "CANDIDATE_COLLECTION", PREDICTION_KEY)


def training_store(settings: GMTSettings | None = None) -> Store:
    """Store of training records (key ``record_id``); not connected yet."""
    return _build(settings, "TRAINING_STORE", "TRAINING_COLLECTION", "record_id")


def registry_store(settings: GMTSettings | None = None) -> Store:
    """Store of model-registry documents (key ``model_id``); not connected yet."""
    return _build(settings, "REGISTRY_STORE", "REGISTRY_COLLECTION", "model_id")


def registry_blob_store(settings: GMTSettings | None = None) -> Store:
    """Store of the registry's weight files: GridFS on MongoDB, files in the project folder."""
    settings = settings or resolve_settings()
    if settings.REGISTRY_BLOB_STORE is not None:
        return store_from_spec(settings.REGISTRY_BLOB_STORE)
    uri = settings.mongo_uri
    if uri is not None:
        from atomate2_gmt.stores.gridfs import GridFSBlobStore

        return GridFSBlobStore(
            database=settings.MONGO_DATABASE,
            collection_name=settings.REGISTRY_BLOB_COLLECTION,
            uri=uri,
            key="blob_id",
            mongoclient_kwargs=_mongo_kwargs(settings),
        )
    folder = embedded_store_path(settings).parent / settings.REGISTRY_BLOB_COLLECTION
    return LocalBlobStore(directory=str(folder), collection_name="blobs")
