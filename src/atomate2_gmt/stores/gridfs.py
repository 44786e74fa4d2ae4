"""The registry's weight files on MongoDB: :class:`GridFSBlobStore`, a GridFS bucket.

A module of its own because it subclasses maggma's ``GridFSStore``: importing ``maggma.stores``
(which also loads boto3 and paramiko for maggma's S3 and SSH stores) costs ≈ 0.3 s of CPU, and an
embedded-store command (``atomate2-gmt query``) never needs it (docs/benchmarks.md, Command-line
start-up). The factory imports it when the settings name a MongoDB.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from maggma.stores import GridFSStore

from atomate2_gmt.stores.blobs import check_blob_id, checked_blob, sha256_of
from atomate2_gmt.stores.writes import describe_store

__all__ = ["GridFSBlobStore"]


class GridFSBlobStore(GridFSStore):
    """maggma ``GridFSStore`` with raw-bytes access (``put_bytes``/``get_bytes``) on ``blob_id``.

    A subclass, not a wrapper: it is a ``GridFSStore`` in every other respect (its settings,
    ``as_dict`` spec, the files collection that the index and health-check helpers and the
    registry's integrity checks reach), so composing would re-expose that whole API to add three
    methods.
    """

    def put_bytes(self, blob_id: str, data: bytes, metadata: dict[str, Any] | None = None) -> str:
        """Store ``data`` under ``blob_id`` (older versions are removed); returns its sha256."""
        raw, digest = checked_blob(blob_id, data)
        meta = {
            "blob_id": blob_id,
            "sha256": digest,
            "size": len(raw),
            "metadata": dict(metadata or {}),
            self.last_updated_field: datetime.now().astimezone(),
        }
        new_id = self._collection.put(raw, filename=blob_id, metadata=meta)
        for old in self._files_collection.find({"metadata.blob_id": blob_id}, ["_id"]):
            if old["_id"] != new_id:
                self._collection.delete(old["_id"])
        return digest

    def get_bytes(self, blob_id: str) -> bytes:
        """The bytes stored under ``blob_id``; ``KeyError`` if absent, ``ValueError`` if corrupt."""
        check_blob_id(blob_id)
        files = list(
            self._files_collection.find({"metadata.blob_id": blob_id})
            .sort("uploadDate", -1)
            .limit(1)
        )
        if not files:
            raise KeyError(f"no blob {blob_id!r} in {describe_store(self)}")
        data = self._collection.get(files[0]["_id"]).read()
        if sha256_of(data) != files[0]["metadata"]["sha256"]:
            raise ValueError(f"blob {blob_id!r} does not match its sha256")
        return bytes(data)

    def remove_blob(self, blob_id: str) -> None:
        """Delete every version of ``blob_id``."""
        for old in self._files_collection.find({"metadata.blob_id": check_blob_id(blob_id)}):
            self._collection.delete(old["_id"])
