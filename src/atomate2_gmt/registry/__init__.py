"""Model registry: versioned, hash-checked GMTNet checkpoints with promotion per task.

``ModelRegistry().register(path, task, metrics)`` → ``promote(model_id, reason)`` →
``resolve(task)`` gives the verified checkpoint of the promoted model; ``resolve_model_spec``
maps the settings' ``MODELS[task]`` to a ``model=`` argument of :func:`atomate2_gmt.predict`.
"""

from __future__ import annotations

from atomate2_gmt.registry.registry import (
    LOWER_IS_BETTER,
    MODEL_REGISTRY_INDEXES,
    ModelRegistry,
    NoPromotedModelError,
    PromotionRefusedError,
    RegistryError,
    WeightsIntegrityError,
)
from atomate2_gmt.registry.schema import CreatedBy, ModelVersionDoc, PromotionEvent
from atomate2_gmt.registry.seed import SEED_REASON, seed_from_pretrained
from atomate2_gmt.registry.spec import resolve_model_spec

__all__ = [
    "LOWER_IS_BETTER",
    "MODEL_REGISTRY_INDEXES",
    "SEED_REASON",
    "CreatedBy",
    "ModelRegistry",
    "ModelVersionDoc",
    "NoPromotedModelError",
    "PromotionEvent",
    "PromotionRefusedError",
    "RegistryError",
    "WeightsIntegrityError",
    "resolve_model_spec",
    "seed_from_pretrained",
]
