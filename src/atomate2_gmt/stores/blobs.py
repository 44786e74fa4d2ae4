"""Blob stores for the registry's weight files: raw bytes under a ``blob_id``, hash-checked.

Both blob stores offer ``put_bytes`` / ``get_bytes`` / ``remove_blob`` on top of the maggma
``Store`` API of their metadata (key ``blob_id``): :class:`LocalBlobStore` (here) keeps files in a
folder with an :class:`~atomate2_gmt.stores.embedded.EmbeddedStore` index,
:class:`~atomate2_gmt.stores.gridfs.GridFSBlobStore` a GridFS bucket on MongoDB (its own module:
it needs ``maggma.stores``, which the embedded stores do not import).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from maggma.core import Store

from atomate2_gmt.stores.embedded import EmbeddedStore, FileStoreIdentity

__all__ = ["LocalBlobStore", "check_blob_id", "checked_blob", "sha256_of"]


def sha256_of(data: bytes) -> str:
    """The hex sha256 of a blob's bytes."""
    return hashlib.sha256(data).hexdigest()


def check_blob_id(blob_id: str) -> str:
    """``blob_id`` itself; ``ValueError`` unless it is a non-empty string."""
    if not isinstance(blob_id, str) or not blob_id:
        raise ValueError(f"blob_id must be a non-empty string, got {blob_id!r}")
    return blob_id


def checked_blob(blob_id: str, data: bytes) -> tuple[bytes, str]:
    """``(bytes, sha256)`` of a blob to store; ``ValueError`` for a bad id or non-bytes data."""
    check_blob_id(blob_id)
    if not isinstance(data, bytes | bytearray):
        raise ValueError(f"blob data must be bytes, got {type(data).__name__}")
    raw = bytes(data)
    return raw, sha256_of(raw)


class LocalBlobStore(FileStoreIdentity, Store):
    """Blobs as files in a folder; their metadata (key ``blob_id``) in an SQLite index there.

    Files are content-addressed (``<sha256>.bin``) and written atomically; reading checks the
    hash, so a truncated or edited file raises instead of returning wrong weights. The metadata
    live in :attr:`index`, an :class:`EmbeddedStore` (``index.sqlite`` in the folder) to which
    every maggma ``Store`` method is handed.
    """

    __module__ = "atomate2_gmt.stores"  # the public path: stable in as_dict() specs and pickles

    def __init__(self, directory: str, collection_name: str = "blobs", **kwargs: Any) -> None:
        """
        Args:
            directory: folder of the blob files and of ``index.sqlite``.
            collection_name: table name of the metadata.
            kwargs: ``EmbeddedStore`` arguments (``timeout_s``) and maggma ``Store`` arguments;
                ``key`` defaults to ``blob_id``.
        """
        kwargs.setdefault("key", "blob_id")
        self.directory = str(directory)
        self.collection_name = collection_name
        self.index = EmbeddedStore(
            path=str(Path(directory) / "index.sqlite"), collection_name=collection_name, **kwargs
        )
        super().__init__(**{k: v for k, v in kwargs.items() if k != "timeout_s"})
        self.kwargs = kwargs

    # ---- maggma Store API, answered by the metadata index ------------------------------------
    @property
    def name(self) -> str:
        """``blobs://<directory>/<collection>``."""
        return f"blobs://{self.directory}/{self.collection_name}"

    @property
    def path(self) -> str:
        """The SQLite file of the metadata index."""
        return self.index.path

    @property
    def _collection(self) -> sqlite3.Connection:
        return self.index._collection

    def connect(self, force_reset: bool = False) -> None:
        """Open the metadata index (creating the folder and file if needed)."""
        self.index.connect(force_reset=force_reset)

    def close(self) -> None:
        """Close the metadata index."""
        self.index.close()

    def count(self, criteria: dict | None = None, hint: dict | None = None) -> int:
        """Number of blobs whose metadata match ``criteria``."""
        return self.index.count(criteria)

    def query(  # type: ignore[override]
        self,
        criteria: dict | None = None,
        properties: dict | list | None = None,
        sort: dict | None = None,
        skip: int = 0,
        limit: int = 0,
        **kwargs: Any,
    ) -> Iterator[dict]:
        """Metadata documents matching ``criteria``."""
        return self.index.query(criteria, properties, sort, skip, limit)

    def update(self, docs: list[dict] | dict, key: list | str | None = None) -> None:
        """Upsert metadata documents (``put_bytes`` is the way to add a blob)."""
        self.index.update(docs, key=key)

    def ensure_index(self, key: str, unique: bool | None = False) -> bool:
        """Index a metadata field."""
        return self.index.ensure_index(key, unique=unique)

    def ensure_compound_index(
        self, keys: list[str] | tuple[str, ...], unique: bool = False
    ) -> bool:
        """Index several metadata fields together."""
        return self.index.ensure_compound_index(keys, unique=unique)

    def groupby(
        self,
        keys: list[str] | str,
        criteria: dict | None = None,
        properties: dict | list | None = None,
        sort: dict | None = None,
        skip: int = 0,
        limit: int = 0,
    ) -> Iterator[tuple[dict, list[dict]]]:
        """Metadata grouped by ``keys``."""
        return self.index.groupby(keys, criteria, properties, sort, skip, limit)

    def distinct(self, field: str, criteria: dict | None = None, all_exist: bool = False) -> list:
        """Distinct values of a metadata field."""
        return self.index.distinct(field, criteria, all_exist)

    def remove_docs(self, criteria: dict) -> None:
        """Delete metadata documents (their files stay; ``remove_blob`` deletes both)."""
        self.index.remove_docs(criteria)

    @property
    def location(self) -> str:
        """The blob folder (its identity with ``collection_name`` and ``key``)."""
        return self.directory

    # ---- blobs --------------------------------------------------------------------------------
    def put_bytes(self, blob_id: str, data: bytes, metadata: dict[str, Any] | None = None) -> str:
        """Store ``data`` under ``blob_id`` (replacing any older version); returns its sha256."""
        raw, digest = checked_blob(blob_id, data)
        folder = Path(self.directory)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{digest}.bin"
        if not target.exists():
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(raw)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        self.update(
            {
                "blob_id": blob_id,
                "sha256": digest,
                "size": len(raw),
                "file": target.name,
                "metadata": dict(metadata or {}),
                self.last_updated_field: datetime.now().astimezone(),
            },
            key="blob_id",
        )
        return digest

    def get_bytes(self, blob_id: str) -> bytes:
        """The bytes stored under ``blob_id``; ``KeyError`` if absent, ``ValueError`` if corrupt."""
        check_blob_id(blob_id)
        doc = self.query_one({"blob_id": blob_id})
        if doc is None:
            raise KeyError(f"no blob {blob_id!r} in {self.name}")
        path = Path(self.directory) / doc["file"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ValueError(f"blob {blob_id!r}: file {path} is missing") from None
        if sha256_of(data) != doc["sha256"]:
            raise ValueError(f"blob {blob_id!r}: file {path} does not match its sha256")
        return data

    def remove_blob(self, blob_id: str) -> None:
        """Forget ``blob_id`` (its file is deleted when no other blob shares the content)."""
        doc = self.query_one({"blob_id": check_blob_id(blob_id)})
        if doc is None:
            return
        self.remove_docs({"blob_id": blob_id})
        if self.count({"sha256": doc["sha256"]}) == 0:
            with contextlib.suppress(FileNotFoundError):
                (Path(self.directory) / doc["file"]).unlink()
