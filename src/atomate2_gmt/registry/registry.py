"""The model registry: versioned GMTNet checkpoints with hash-checked weights and promotion.

Documents (:class:`~atomate2_gmt.registry.schema.ModelVersionDoc`) live in the registry store and
the weights in the registry blob store (both from :mod:`atomate2_gmt.stores`: embedded SQLite +
files in ``PROJECT_DIR`` by default, MongoDB + GridFS with ``MONGO_URI``).

Integrity: the sha256 of the weights is recorded at registration; every fetch checks the bytes
against it (and the blob store checks its own copy), so a changed blob is refused, never loaded.
Concurrency: registering the same checkpoint twice (even at the same time, from several processes)
yields one document; two different checkpoints never share a version number (unique indexes on
MongoDB, a file lock on the embedded store).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maggma.core import Store
from maggma.stores import MongoStore

from atomate2_gmt.registry.schema import (
    CreatedBy,
    ModelVersionDoc,
    PromotionEvent,
    model_id_for,
    version_label,
)
from atomate2_gmt.settings import GMTSettings, resolve_settings
from atomate2_gmt.stores import (
    REGISTRY_INDEXES,
    EmbeddedStore,
    StoreIndexError,
    describe_store,
    ensure_indexes,
    registry_blob_store,
    registry_store,
    store_error_reason,
)

__all__ = [
    "LOWER_IS_BETTER",
    "MODEL_REGISTRY_INDEXES",
    "ModelRegistry",
    "NoPromotedModelError",
    "PromotionRefusedError",
    "RegistryError",
    "WeightsIntegrityError",
]

logger = logging.getLogger(__name__)

MODEL_REGISTRY_INDEXES: tuple[tuple[tuple[str, ...], bool], ...] = (
    *REGISTRY_INDEXES,
    (("task", "version_number"), True),
    (("task", "promoted"), False),
    (("promoted",), False),
    (("parent",), False),
    (("weights_sha256",), False),
    (("blob_id",), False),
    (("training_data_hash",), False),
    (("created_at",), False),
    (("created_by.user",), False),
    (("created_by.job_uuid",), False),
)
"""Every key field of the registry (unique ``model_id`` and ``(task, version_number)``)."""

LOWER_IS_BETTER = frozenset({"fnorm", "mae", "rmse", "loss", "mse"})
"""Metric names where a smaller value is better (all others: larger is better)."""


_MAX_VERSION_ATTEMPTS = 50


class RegistryError(RuntimeError):
    """A registry operation failed; the message says which model and why."""


class WeightsIntegrityError(RegistryError):
    """Stored weights do not match their recorded sha256: they are refused, never loaded."""


class NoPromotedModelError(RegistryError, LookupError):
    """No model version is promoted for a task."""


class PromotionRefusedError(RegistryError):
    """The promotion policy refused a promotion (the message gives the numbers)."""


class _DuplicateError(Exception):
    """Insert clashed with an existing model_id or (task, version_number)."""


def _is_duplicate_key(exc: BaseException) -> bool:
    return "DuplicateKey" in type(exc).__name__ or getattr(exc, "code", None) == 11000


def _now() -> datetime:
    return datetime.now(UTC)


def _metric_number(metrics: dict[str, Any], name: str) -> float | None:
    value: Any = metrics
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class ModelRegistry:
    """Register, promote, list and fetch GMTNet model versions.

    ``ModelRegistry()`` uses the stores of :class:`GMTSettings`; pass ``store``/``blob_store`` to
    use others (a maggma ``Store`` of documents and a blob store with ``put_bytes``/
    ``get_bytes``). Fetched weights are cached by sha256 in ``cache_dir`` (default
    ``PROJECT_DIR/models/cache``).
    """

    def __init__(
        self,
        store: Store | None = None,
        blob_store: Store | None = None,
        settings: GMTSettings | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.settings = settings or resolve_settings()
        self.store = store if store is not None else registry_store(self.settings)
        self.blob_store = (
            blob_store if blob_store is not None else registry_blob_store(self.settings)
        )
        for name in ("put_bytes", "get_bytes", "remove_blob"):
            if not hasattr(self.blob_store, name):
                raise TypeError(
                    f"the registry blob store {type(self.blob_store).__name__} has no {name}(); "
                    "use LocalBlobStore or GridFSBlobStore"
                )
        base = Path(self.settings.PROJECT_DIR).expanduser()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else base / "models" / "cache"
        self._connected = False

    # ---- connection -------------------------------------------------------------------------
    def connect(self) -> ModelRegistry:
        """Connect both stores and create the registry indexes (idempotent)."""
        if self._connected:
            return self
        try:
            self.store.connect()
            self.blob_store.connect()
            ensure_indexes(self.store, MODEL_REGISTRY_INDEXES)
        except StoreIndexError as exc:  # names the store and the reason already
            raise RegistryError(f"cannot open the model registry: {exc}") from None
        except Exception as exc:
            raise RegistryError(
                f"cannot open the model registry {describe_store(self.store)}: "
                f"{store_error_reason(exc)}"
            ) from None
        self._connected = True
        return self

    def close(self) -> None:
        """Close both stores."""
        for store in (self.store, self.blob_store):
            with contextlib.suppress(Exception):
                store.close()
        self._connected = False

    def __enter__(self) -> ModelRegistry:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading ----------------------------------------------------------------------------
    def _find(self, criteria: dict[str, Any], sort: dict[str, Any] | None = None) -> list[dict]:
        self.connect()
        return list(self.store.query(criteria=criteria, sort=sort))

    def get(self, model_id_or_version: str) -> ModelVersionDoc:
        """The document of a ``model_id`` or a version name (``piezo-v3``); KeyError if absent."""
        docs = self._find({"model_id": model_id_or_version}) or self._find(
            {"version": model_id_or_version}
        )
        if not docs:
            raise KeyError(
                f"no model {model_id_or_version!r} in the registry {describe_store(self.store)}; "
                "`atomate2-gmt models list` shows the registered versions"
            )
        return ModelVersionDoc.from_store(docs[0])

    def list_versions(self, task: str | None = None) -> list[ModelVersionDoc]:
        """All versions of ``task`` (every task if None), oldest first."""
        criteria = {} if task is None else {"task": _check_task(task)}
        docs = self._find(criteria, sort={"task": 1, "version_number": 1})
        return [ModelVersionDoc.from_store(d) for d in docs]

    def promoted(self, task: str) -> ModelVersionDoc | None:
        """The promoted version of ``task``, or None."""
        docs = self._find({"task": _check_task(task), "promoted": True}, sort={"promoted_at": -1})
        return ModelVersionDoc.from_store(docs[0]) if docs else None

    def latest(self, task: str) -> ModelVersionDoc | None:
        """The highest version of ``task``, or None."""
        docs = self._find({"task": _check_task(task)}, sort={"version_number": -1})
        return ModelVersionDoc.from_store(docs[0]) if docs else None

    # ---- registering ------------------------------------------------------------------------
    def register(
        self,
        checkpoint_path: str | Path,
        task: str,
        metrics: dict[str, Any] | None = None,
        parent: str | None = None,
        created_by: CreatedBy | dict[str, Any] | None = None,
        *,
        metrics_set: str | None = None,
        training_data_hash: str | None = None,
        training_data_size: int | None = None,
        notes: str | None = None,
    ) -> ModelVersionDoc:
        """Register a checkpoint as the next version of ``task``; returns its document.

        The checkpoint must be a weights-only atomate2-gmt checkpoint for ``task`` (checked).
        Registering weights already in the registry returns the existing document unchanged
        (idempotent, also under concurrent calls). ``parent`` must be a registered model of the
        same task. Training-data hash/size default to the checkpoint's metadata.
        """
        from atomate2_gmt.model.checkpoint import file_sha256, read_checkpoint
        from atomate2_gmt.model.validate import load_validated

        _check_task(task)
        path = Path(checkpoint_path).expanduser()
        payload = read_checkpoint(path)  # weights-only load; clear error for anything else
        config = payload.get("config")
        ck_task = config.get("task") if isinstance(config, dict) else None
        if ck_task != task:
            raise ValueError(f"{path}: checkpoint is for task {ck_task!r}, not {task!r}")
        # every check of a load (config types and sizes, weight shapes) and of the outputs
        # (model.validate) before anything is written: a refused checkpoint leaves no blob
        load_validated(path, task=task)
        data = path.read_bytes()
        digest = file_sha256(path)
        self.connect()
        existing = self._find({"task": task, "weights_sha256": digest})
        if existing:
            return ModelVersionDoc.from_store(existing[0])
        parent = self._parent_id(parent, task)
        meta = dict(payload.get("metadata") or {})
        if isinstance(created_by, dict):
            created_by = CreatedBy.model_validate(created_by)
        model_id = model_id_for(task, digest)
        size = training_data_size if training_data_size is not None else meta.get("n_train")
        blob_id = self._put_weights(path, data, digest, model_id, task)
        doc_fields: dict[str, Any] = {
            "model_id": model_id,
            "task": task,
            "parent": parent,
            "training_data_hash": training_data_hash or meta.get("training_data_hash"),
            "training_data_size": size if isinstance(size, int) else None,
            "metrics": dict(metrics or {}),
            "metrics_set": metrics_set,
            "config": dict(payload.get("config") or {}),
            "created_by": created_by or CreatedBy.current(),
            "weights_sha256": digest,
            "weights_size": len(data),
            "blob_id": blob_id,
            "notes": notes,
        }
        try:
            return self._insert_next_version(task, doc_fields)
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                if not self._find({"blob_id": blob_id}):  # no document names it: an orphan
                    self._drop_blob(blob_id)
            raise

    def _parent_id(self, parent: str | None, task: str) -> str | None:
        """The model id of ``parent`` (a registered ``task`` model; None stays None)."""
        if parent is None:
            return None
        parent_doc = self.get(parent)
        if parent_doc.task != task:
            raise ValueError(
                f"parent {parent!r} is a {parent_doc.task!r} model, not a {task!r} model"
            )
        return parent_doc.model_id

    def _put_weights(self, path: Path, data: bytes, digest: str, model_id: str, task: str) -> str:
        """Store the weights ``data`` (sha256 ``digest``) under a fresh blob id; returns it."""
        blob_id = f"{model_id}.{uuid.uuid4().hex[:12]}"  # private to this call: no blob races
        stored = self.blob_store.put_bytes(  # type: ignore[attr-defined]
            blob_id, data, metadata={"model_id": model_id, "task": task, "sha256": digest}
        )
        if stored != digest:
            self._drop_blob(blob_id)
            raise WeightsIntegrityError(
                f"{path}: the blob store recorded sha256 {stored} for weights hashed {digest}"
            )
        return blob_id

    def _insert_next_version(self, task: str, doc_fields: dict[str, Any]) -> ModelVersionDoc:
        """Insert ``doc_fields`` as the next version of ``task``, retrying on version races.

        Another process registering the same weights first wins: its document is returned and
        this call's blob is dropped.
        """
        model_id, blob_id = doc_fields["model_id"], doc_fields["blob_id"]
        for _ in range(_MAX_VERSION_ATTEMPTS):
            latest = self.latest(task)
            number = 1 if latest is None else latest.version_number + 1
            doc = ModelVersionDoc(
                version=version_label(task, number), version_number=number, **doc_fields
            )
            try:
                self._insert_new(doc)
            except _DuplicateError:
                same = self._find({"model_id": model_id})
                if same:  # another process registered the same weights first
                    self._drop_blob(blob_id)
                    return ModelVersionDoc.from_store(same[0])
                continue  # another checkpoint took this version number: take the next
            digest = doc_fields["weights_sha256"]
            logger.info("registered %s as %s (%s)", model_id, doc.version, digest[:12])
            return doc
        self._drop_blob(blob_id)
        raise RegistryError(
            f"could not allocate a version number for {task!r} after {_MAX_VERSION_ATTEMPTS} "
            "attempts (too many concurrent registrations?)"
        )

    def _drop_blob(self, blob_id: str) -> None:
        try:
            self.blob_store.remove_blob(blob_id)  # type: ignore[attr-defined]
        except Exception as exc:  # pragma: no cover - best effort clean-up
            logger.warning("could not remove the unused blob %s: %s", blob_id, exc)

    def _insert_new(self, doc: ModelVersionDoc) -> None:
        """Insert ``doc``; _DuplicateError if its model_id or (task, version) exists."""
        record = doc.to_store_dict()
        if isinstance(self.store, MongoStore) and not isinstance(self.store, EmbeddedStore):
            try:
                self.store._collection.insert_one(record)
            except Exception as exc:
                if _is_duplicate_key(exc):
                    raise _DuplicateError(str(exc)) from None
                raise
            return
        with self._store_lock():
            clash = self.store.count({"model_id": doc.model_id}) or self.store.count(
                {"task": doc.task, "version_number": doc.version_number}
            )
            if clash:
                raise _DuplicateError(doc.model_id)
            self.store.update(record, key="model_id")

    @contextlib.contextmanager
    def _store_lock(self) -> Iterator[None]:
        """Exclusive lock across processes for check-then-write on a file-backed store."""
        path = getattr(self.store, "path", None)
        if not path:
            yield
            return
        from filelock import FileLock

        lock_path = Path(str(path) + ".registry.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(lock_path):  # blocks until the other process's write is done
            yield

    def _save(self, doc: ModelVersionDoc) -> None:
        doc.last_updated = _now()
        self.store.update(doc.to_store_dict(), key="model_id")

    # ---- promotion --------------------------------------------------------------------------
    def promote(
        self,
        model_id: str,
        reason: str,
        *,
        compare_on: str | None = None,
        force: bool = False,
        by: str | None = None,
    ) -> ModelVersionDoc:
        """Make ``model_id`` the promoted model of its task, recording ``reason``.

        The previously promoted version is demoted, with a reason naming its successor.
        Policy: a reason is required; with ``compare_on`` (a metric name, dotted for nested
        metrics) the promotion is refused unless the candidate is at least as good as the
        current promoted model on that metric, measured on the same held-out set (``force``
        overrides). Promoting the promoted model again is a no-op.
        """
        reason = (reason or "").strip()
        if not reason:
            raise ValueError("a promotion needs a reason (it is recorded in the history)")
        doc = self.get(model_id)
        current = self.promoted(doc.task)
        if current is not None and current.model_id == doc.model_id:
            return current
        if compare_on and current is not None and not force:
            self._check_policy(doc, current, compare_on)
        self._check_equivariance(doc)
        who = by or CreatedBy.current().user
        now = _now()
        doc.promoted = True
        doc.promoted_at = now
        doc.promotion_history.append(
            PromotionEvent(
                action="promote",
                reason=reason,
                at=now,
                by=who,
                superseded=current.model_id if current else None,
            )
        )
        self._save(doc)
        for other in self._find({"task": doc.task, "promoted": True}):
            if other["model_id"] == doc.model_id:
                continue
            old = ModelVersionDoc.from_store(other)
            old.promoted = False
            old.promotion_history.append(
                PromotionEvent(
                    action="demote",
                    reason=f"superseded by {doc.version} ({doc.model_id}): {reason}",
                    at=now,
                    by=who,
                    superseded=doc.model_id,
                )
            )
            self._save(old)
        logger.info("promoted %s (%s) for %s: %s", doc.version, doc.model_id, doc.task, reason)
        return doc

    def demote(self, model_id: str, reason: str, *, by: str | None = None) -> ModelVersionDoc:
        """Withdraw ``model_id``'s promotion, recording ``reason`` (its task then has none)."""
        reason = (reason or "").strip()
        if not reason:
            raise ValueError("a demotion needs a reason (it is recorded in the history)")
        doc = self.get(model_id)
        if not doc.promoted:
            raise RegistryError(f"{doc.version} ({doc.model_id}) is not promoted")
        doc.promoted = False
        doc.promotion_history.append(
            PromotionEvent(action="demote", reason=reason, by=by or CreatedBy.current().user)
        )
        self._save(doc)
        return doc

    def _check_equivariance(self, doc: ModelVersionDoc) -> None:
        """PromotionRefusedError unless the model's outputs are physical and it rotates with
        the crystal, on the smallest shipped MP structure of each crystal system (no override:
        a model that does not is wrong in every frame but one;
        :func:`~atomate2_gmt.model.validate.equivariance_problem`)."""
        from atomate2_gmt.data.mp import structures_by_crystal_system
        from atomate2_gmt.model.validate import equivariance_problem, load_validated

        with tempfile.TemporaryDirectory() as tmp:  # the cache is left as it was
            path = self.fetch_weights(doc.model_id, tmp)
            try:
                model, _ = load_validated(path, task=doc.task)
            except ValueError as exc:  # name the model, not the temporary file
                reason = str(exc).replace(f"{path}: ", "")
                raise PromotionRefusedError(
                    f"refused: {doc.version} ({doc.model_id}): {reason}"
                ) from None
        structures = [s for group in structures_by_crystal_system(1).values() for s in group]
        problem = equivariance_problem(model, structures)
        if problem is not None:
            raise PromotionRefusedError(
                f"refused: {doc.version} ({doc.model_id}) is not rotation-equivariant: {problem}"
            )

    @staticmethod
    def _check_policy(doc: ModelVersionDoc, current: ModelVersionDoc, metric: str) -> None:
        if doc.metrics_set != current.metrics_set:
            raise PromotionRefusedError(
                f"cannot compare {doc.version} with the promoted {current.version} on "
                f"{metric!r}: measured on different held-out sets ({doc.metrics_set!r} vs "
                f"{current.metrics_set!r}); pass force=True (--force) to promote anyway"
            )
        new = _metric_number(doc.metrics, metric)
        old = _metric_number(current.metrics, metric)
        if new is None or old is None:
            missing = doc.version if new is None else current.version
            raise PromotionRefusedError(
                f"metric {metric!r} is missing from {missing}; cannot apply the policy "
                "(pass force=True / --force to promote anyway)"
            )
        lower = metric.split(".")[-1].lower() in LOWER_IS_BETTER
        worse = new > old if lower else new < old
        if worse:
            raise PromotionRefusedError(
                f"refused: {doc.version} has {metric} = {new:.6g}, worse than the promoted "
                f"{current.version} ({old:.6g}, {'lower' if lower else 'higher'} is better); "
                "pass force=True (--force) to promote anyway"
            )

    # ---- weights ----------------------------------------------------------------------------
    def fetch_weights(self, model_id: str, dest_dir: str | Path | None = None) -> Path:
        """The checkpoint file of ``model_id`` in ``dest_dir`` (default the cache), verified.

        The file is named by its sha256; a cached file is reused only if its hash matches.
        Bytes from the blob store whose sha256 differs from the registered one are refused with
        :class:`WeightsIntegrityError`. The file is then loaded with ``load_checkpoint``
        (``torch.load(weights_only=True)``) to prove it is a usable model of the right task.
        """
        from atomate2_gmt.model.checkpoint import file_sha256, load_checkpoint

        doc = self.get(model_id)
        folder = Path(dest_dir) if dest_dir is not None else self.cache_dir
        folder = folder.expanduser()
        target = folder / f"{doc.weights_sha256}.pt"
        if target.is_file() and file_sha256(target) == doc.weights_sha256:
            return target
        try:
            data = self.blob_store.get_bytes(doc.blob_id)  # type: ignore[attr-defined]
        except KeyError:
            raise RegistryError(
                f"the weights of {doc.version} ({doc.model_id}) are missing from the blob store "
                f"{describe_store(self.blob_store)} (blob {doc.blob_id!r})"
            ) from None
        except ValueError as exc:
            raise WeightsIntegrityError(
                f"refused the weights of {doc.version} ({doc.model_id}): the stored blob is "
                f"corrupt or was changed ({exc})"
            ) from None
        got = hashlib.sha256(data).hexdigest()
        if got != doc.weights_sha256:
            raise WeightsIntegrityError(
                f"refused the weights of {doc.version} ({doc.model_id}): blob {doc.blob_id!r} "
                f"has sha256 {got}, but {doc.weights_sha256} was registered"
            )
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            try:
                load_checkpoint(tmp, task=doc.task)
            except ValueError as exc:  # name the model, not the temporary file
                reason = str(exc).replace(f"{tmp}: ", "").replace(str(tmp), "the weights")
                raise WeightsIntegrityError(
                    f"refused the weights of {doc.version} ({doc.model_id}): {reason}"
                ) from None
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return target

    def resolve(self, task: str) -> tuple[Path, dict[str, Any]]:
        """(checkpoint path, registry metadata) of the promoted model of ``task``."""
        doc = self.promoted(task)
        if doc is None:
            versions = [d.version for d in self.list_versions(task)]
            hint = (
                f"registered versions: {', '.join(versions)}; promote one with "
                "`atomate2-gmt models promote <version> --reason ...`"
                if versions
                else "none is registered; `atomate2-gmt models seed` registers the shipped "
                "pretrained models"
            )
            raise NoPromotedModelError(
                f"no promoted {task!r} model in the registry {describe_store(self.store)} ({hint})"
            )
        path = self.fetch_weights(doc.model_id)
        meta = {
            "model_id": doc.model_id,
            "version": doc.version,
            "task": doc.task,
            "weights_sha256": doc.weights_sha256,
            "metrics": doc.metrics,
            "metrics_set": doc.metrics_set,
            "parent": doc.parent,
        }
        return path, meta


def _check_task(task: str) -> str:
    from atomate2_gmt.tensors.tasks import check_task

    return check_task(task)
