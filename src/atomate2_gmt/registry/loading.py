"""Load the models a prediction uses: a model spec → the network and its info, kept per process.

A spec is ``"pretrained"`` (the shipped checkpoint), ``"registry"`` (the promoted version, whose
registry label names the documents) or a checkpoint path. Two or more specs of one task make an
ensemble (:mod:`atomate2_gmt.model.ensemble`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atomate2_gmt import progress
from atomate2_gmt.model.checkpoint import load_checkpoint
from atomate2_gmt.model.validate import build_lock, check_output_scale, load_validated

if TYPE_CHECKING:
    from collections.abc import Sequence

    from atomate2_gmt.model.tensor_model import TensorModel
    from atomate2_gmt.settings import GMTSettings

__all__ = ["load_members", "load_model_spec"]

logger = logging.getLogger(__name__)

_MODEL_CACHE: dict[tuple[str, str, int, int], tuple[Any, dict[str, Any]]] = {}
_VALIDATED: set[tuple[str, str, int, int]] = set()


def _load_cached(
    path: Path, task: str, validate: bool = True
) -> tuple[TensorModel, dict[str, Any]]:
    """The model of a checkpoint file, loaded once per process and file version (path, size,
    mtime): the chunk jobs of a flow run in one process by ``run_locally`` build each model once.
    A changed file is loaded again.

    ``validate``: check its outputs (:func:`~atomate2_gmt.model.validate.check_output_scale`,
    one forward pass) once per file version before it is used. Off for the shipped checkpoints
    and for registry versions, whose files were checked where they entered use (the test suite;
    registration and promotion, with the registry's sha256 checked on every fetch)."""
    stat = path.stat()
    key = (str(path.resolve()), task, stat.st_size, stat.st_mtime_ns)
    if key not in _MODEL_CACHE:
        if len(_MODEL_CACHE) >= 8:
            _VALIDATED.discard(next(iter(_MODEL_CACHE)))
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        start = time.perf_counter()
        with progress.heartbeat(f"loading the {task} model"):
            if validate:
                _MODEL_CACHE[key] = load_validated(path, task=task)
                _VALIDATED.add(key)
            else:
                with build_lock():  # building sets torch's default dtype, global to the process
                    _MODEL_CACHE[key] = load_checkpoint(path, task=task)
        progress.phase(
            f"loaded the {task} model {path.name} ({time.perf_counter() - start:.1f} s)", logger
        )
    elif validate and key not in _VALIDATED:
        with build_lock():  # a forward pass also sets the default dtype
            check_output_scale(_MODEL_CACHE[key][0], path)
        _VALIDATED.add(key)
    return _MODEL_CACHE[key]


def load_model_spec(
    task: str, spec: str, settings: GMTSettings | None = None
) -> tuple[TensorModel, dict[str, Any]]:
    """The model of ``task`` named by ``spec`` and its info (``name``, ``version``,
    ``checkpoint_hash``, ``spec``); ``settings`` give the registry (default: those in force).

    Raises a ``ValueError`` naming the task for a checkpoint path that is not a file.
    """
    path: Any = None
    if spec == "pretrained":
        from atomate2_gmt.pretrained import pretrained_path

        path = pretrained_path(task)
    registry_meta: dict[str, Any] = {}
    if spec == "registry":  # the promoted version; its registry label names the documents
        from atomate2_gmt.registry.registry import ModelRegistry

        if settings is None:
            from atomate2_gmt.settings import resolve_settings

            settings = resolve_settings()
        registry = ModelRegistry(settings=settings)
        try:
            path, registry_meta = registry.resolve(task)
        finally:
            registry.close()
    elif spec != "pretrained":
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ValueError(f"model for task {task!r}: checkpoint {str(path)!r} not found")
    net, meta = _load_cached(Path(path), task, validate=spec not in ("pretrained", "registry"))
    info = {
        "name": meta.get("name") or f"gmtnet-{task}",
        "version": registry_meta.get("version") or meta.get("version"),
        "checkpoint_hash": meta.get("checkpoint_sha256"),
        "spec": spec if not registry_meta else f"registry:{registry_meta['model_id']}",
    }
    return net, info


def load_members(
    task: str, specs: Sequence[str], settings: GMTSettings | None = None
) -> list[tuple[TensorModel, dict[str, Any]]]:
    """The models of ``task``: one spec → one model, two or more → the ensemble's members.

    Raises a ``ValueError`` when ``specs`` is empty.
    """
    if not specs:
        raise ValueError(f"no model spec for task {task!r}")
    return [load_model_spec(task, spec, settings) for spec in specs]
