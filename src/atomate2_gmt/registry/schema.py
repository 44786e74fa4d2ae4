"""Documents of the model registry: one :class:`ModelVersionDoc` per registered model version."""

from __future__ import annotations

import getpass
import os
import socket
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CreatedBy", "ModelVersionDoc", "PromotionEvent", "model_id_for", "version_label"]


def _now() -> datetime:
    return datetime.now(UTC)


def model_id_for(task: str, weights_sha256: str) -> str:
    """The registry key of a checkpoint: content-addressed, so the same weights get the same id."""
    return f"gmtnet-{task}-{weights_sha256[:16]}"


def version_label(task: str, number: int) -> str:
    """The human version name, e.g. ``piezo-v3``."""
    return f"{task}-v{number}"


def _current_job_uuid() -> str | None:
    """The uuid of the running jobflow job, if this code runs inside one."""
    try:
        from jobflow import CURRENT_JOB

        job = CURRENT_JOB.job
    except Exception:
        return None
    return None if job is None else str(job.uuid)


class CreatedBy(BaseModel):
    """Who or what registered a model: user, host, jobflow job uuid, command line."""

    model_config = ConfigDict(extra="allow")

    user: str | None = None
    host: str | None = None
    job_uuid: str | None = None
    command: str | None = None

    @classmethod
    def current(cls, command: str | None = None, job_uuid: str | None = None) -> CreatedBy:
        """This process: login user, host name, the running jobflow job (if any), ``sys.argv``."""
        try:
            user: str | None = getpass.getuser()
        except Exception:
            user = os.environ.get("USER")
        return cls(
            user=user,
            host=socket.gethostname(),
            job_uuid=job_uuid or _current_job_uuid(),
            command=command if command is not None else " ".join(sys.argv),
        )


class PromotionEvent(BaseModel):
    """One promotion or demotion of a model version, with its reason."""

    action: Literal["promote", "demote"]
    reason: str = Field(min_length=1)
    at: datetime = Field(default_factory=_now)
    by: str | None = None
    superseded: str | None = Field(
        default=None, description="promote: the model_id it replaced; demote: the one replacing it"
    )


class ModelVersionDoc(BaseModel):
    """A registered GMTNet model version (registry key ``model_id``)."""

    model_config = ConfigDict(extra="ignore")

    model_id: str = Field(description="Registry key: gmtnet-<task>-<sha256 prefix of weights>.")
    task: str
    version: str = Field(description="'<task>-v<n>', monotonic per task.")
    version_number: int = Field(ge=1)
    parent: str | None = Field(default=None, description="model_id this one was trained from.")
    training_data_hash: str | None = None
    training_data_size: int | None = Field(default=None, ge=0)
    metrics: dict[str, Any] = Field(default_factory=dict)
    metrics_set: str | None = Field(
        default=None, description="The fixed held-out set the metrics were measured on."
    )
    config: dict[str, Any] = Field(default_factory=dict, description="GMTNetConfig of the model.")
    created_at: datetime = Field(default_factory=_now)
    created_by: CreatedBy = Field(default_factory=CreatedBy)
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    weights_size: int = Field(ge=0)
    blob_id: str = Field(description="Key of the weights in the registry blob store.")
    promoted: bool = False
    promoted_at: datetime | None = None
    promotion_history: list[PromotionEvent] = Field(default_factory=list)
    notes: str | None = None
    last_updated: datetime = Field(default_factory=_now)

    def to_store_dict(self) -> dict[str, Any]:
        """The document as stored (datetimes kept as datetimes for MongoDB)."""
        return self.model_dump(mode="python")

    @classmethod
    def from_store(cls, doc: dict[str, Any]) -> ModelVersionDoc:
        """Parse a stored document (drops MongoDB's ``_id``)."""
        return cls.model_validate({k: v for k, v in doc.items() if k != "_id"})

    def summary(self) -> dict[str, Any]:
        """A short, JSON-safe view for tables and logs."""
        return {
            "model_id": self.model_id,
            "version": self.version,
            "task": self.task,
            "promoted": self.promoted,
            "parent": self.parent,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "created_by": self.created_by.user,
            "weights_sha256": self.weights_sha256[:12],
        }
