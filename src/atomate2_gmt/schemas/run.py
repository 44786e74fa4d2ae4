"""The output document of one prediction run: what :class:`~atomate2_gmt.jobs.predict.
GMTPredictMaker`'s job and :func:`atomate2_gmt.engine.predict_documents` return."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["PredictionRunDoc"]


class PredictionRunDoc(BaseModel):
    """What one prediction run did, and, when asked for, its documents.

    Inputs that are the same crystal share one document (whose ``sources`` name them all), so
    ``n_documents`` ≤ ``n``. ``documents`` holds the store dicts of the run's documents (those
    predicted and those found in the store) only when the run was asked to return them
    (``return_documents``); a screening flow's chunk jobs leave it empty, so that large
    documents are not copied into the jobflow job store.
    """

    n: int = Field(description="Inputs of the run.")
    n_documents: int = Field(description="Distinct crystals (documents) of the run.")
    n_successful: int = Field(description="Inputs whose documents are successful.")
    n_failed: int = Field(description="Inputs whose documents are failed.")
    n_skipped: int = Field(
        default=0,
        description="Inputs whose successful document of this model version was already in "
        "the store (not predicted again).",
    )
    prediction_ids: list[str] = Field(
        default_factory=list,
        description="Key of each input's document, in input order (empty when ``ids_file`` "
        "holds them).",
    )
    ids_file: str | None = Field(
        default=None,
        description="The JSON file (a PredictionRunDoc with the keys) that holds "
        "``prediction_ids`` when this document leaves them out: a screening flow's chunk jobs "
        "(their done markers), so that a run's job outputs do not grow with its inputs.",
    )
    failures: list[tuple[str, str]] = Field(
        default_factory=list, description="(source, reason) of every failed input."
    )
    replaced: list[tuple[str, str]] = Field(
        default_factory=list,
        description="(prediction id, reason) of every stored document that was not trusted "
        "(its identity or content hash disagreed) and was predicted again.",
    )
    model_version: str = Field(description="Version label of the models used.")
    tasks: list[str] = Field(description="Tasks predicted.")
    device: str | None = Field(default=None, description="Device the forward passes ran on.")
    timings: dict[str, float] = Field(
        default_factory=dict, description="Seconds: total_s and per stage."
    )
    written: int = Field(default=0, description="Documents upserted into the store.")
    documents: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Store dicts of the documents (GMTPredictionDoc.to_store_dict), when returned.",
    )

    def all_prediction_ids(self) -> list[str]:
        """``prediction_ids``, read from ``ids_file`` when they are kept there (a missing or
        unreadable file raises ``OSError`` / ``ValueError``)."""
        if self.ids_file is None:
            return list(self.prediction_ids)
        from pathlib import Path

        return PredictionRunDoc.model_validate_json(Path(self.ids_file).read_text()).prediction_ids
