"""Pydantic documents of atomate2-gmt (layer 5, see docs/architecture.md).

``GMTPredictionDoc`` and friends import emmet lazily, so that ``atomate2_gmt.schemas.fields`` and
``atomate2_gmt.schemas.keys`` stay cheap to import (the CLI and the stores use only those).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atomate2_gmt.schemas.keys import structure_key
    from atomate2_gmt.schemas.prediction import (
        GMTPredictionDoc,
        ModelInfo,
        TaskPrediction,
        derive_model_version,
    )

__all__ = [
    "GMTPredictionDoc",
    "ModelInfo",
    "TaskPrediction",
    "derive_model_version",
    "structure_key",
]

_LAZY = {
    "GMTPredictionDoc": "atomate2_gmt.schemas.prediction",
    "ModelInfo": "atomate2_gmt.schemas.prediction",
    "TaskPrediction": "atomate2_gmt.schemas.prediction",
    "derive_model_version": "atomate2_gmt.schemas.prediction",
    "structure_key": "atomate2_gmt.schemas.keys",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
