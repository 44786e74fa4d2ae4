"""Load the models a prediction uses: a model spec → the network and its info, kept per process.

A spec is ``"pretrained"`` (the shipped checkpoint), ``"registry"`` (the promoted version, whose
registry label names the documents) or a checkpoint path. Two or more specs of one task make an
ensemble: its info names all members (:func:`_ensemble_info`) and its prediction is the members'
mean tensor with their spread (:func:`_combine_members`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from atomate2_gmt.model.gmtnet import GMTNet
    from atomate2_gmt.settings import GMTSettings

__all__ = ["load_members", "load_model_spec"]

_MODEL_CACHE: dict[tuple[str, str, int, int], tuple[Any, dict[str, Any]]] = {}


def _load_cached(path: Path, task: str) -> tuple[GMTNet, dict[str, Any]]:
    """``load_checkpoint`` once per process and file version (path, size, mtime): the chunk
    jobs of a flow run in one process by ``run_locally`` build each model once (building the
    e3nn layers takes seconds). A changed file is loaded again."""
    from atomate2_gmt.model.checkpoint import load_checkpoint

    stat = path.stat()
    key = (str(path.resolve()), task, stat.st_size, stat.st_mtime_ns)
    if key not in _MODEL_CACHE:
        if len(_MODEL_CACHE) >= 8:
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _MODEL_CACHE[key] = load_checkpoint(path, task=task)
    return _MODEL_CACHE[key]


def load_model_spec(
    task: str, spec: str, settings: GMTSettings | None = None
) -> tuple[GMTNet, dict[str, Any]]:
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
            from atomate2_gmt.settings import GMTSettings

            settings = GMTSettings()
        registry = ModelRegistry(settings=settings)
        try:
            path, registry_meta = registry.resolve(task)
        finally:
            registry.close()
    elif spec != "pretrained":
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ValueError(f"model for task {task!r}: checkpoint {str(path)!r} not found")
    net, meta = _load_cached(Path(path), task)
    info = {
        "name": meta.get("name") or f"gmtnet-{task}",
        "version": registry_meta.get("version") or meta.get("version"),
        "checkpoint_hash": meta.get("checkpoint_sha256"),
        "spec": spec if not registry_meta else f"registry:{registry_meta['model_id']}",
    }
    return net, info


def load_members(
    task: str, specs: Sequence[str], settings: GMTSettings | None = None
) -> list[tuple[GMTNet, dict[str, Any]]]:
    """The models of ``task``: one spec → one model, two or more → the ensemble's members.

    Raises a ``ValueError`` when ``specs`` is empty.
    """
    if not specs:
        raise ValueError(f"no model spec for task {task!r}")
    return [load_model_spec(task, spec, settings) for spec in specs]


def _ensemble_info(
    task: str, members: list[tuple[Any, dict[str, Any]]], spread_scale: float = 1.0
) -> dict[str, Any]:
    """Model info of a task: the model's own, or one describing the ensemble (its members and
    the calibration factor of its σ, ``spread_scale``, which is part of its version: another
    factor means other stored uncertainties)."""
    import hashlib

    if len(members) == 1:
        return members[0][1]
    label = "|".join(str(info.get("checkpoint_hash") or info.get("name")) for _, info in members)
    spec = f"ensemble of {len(members)}: " + ", ".join(
        str(info.get("version") or info.get("name")) for _, info in members
    )
    scale = float(spread_scale)  # 4, 4.0 and np.float64(4.0) are one factor and one version
    if scale != 1.0:
        label += f"|spread_scale={scale:.12g}"
        spec += f"; uncertainty = spread × {scale:.6g}"
    digest = hashlib.sha256(label.encode()).hexdigest()
    return {
        "name": f"ensemble-{task}",
        "version": f"ens{len(members)}-{digest[:12]}",
        "checkpoint_hash": digest,
        "spec": spec,
    }


def _combine_members(
    task: str, results: list[dict[str, Any]], ieee_rotation: Any = None, spread_scale: float = 1.0
) -> tuple[dict[str, Any], dict]:
    """One task's result from its ensemble members' results (mean tensor) and the standard
    deviation of each numeric derived field over the members, times ``spread_scale`` (a
    calibration factor; ``ieee_rotation``: the structure's rotation to the IEEE frame, for the
    fields defined there)."""
    import numpy as np

    from atomate2_gmt.schemas.fields import DERIVED_FIELDS
    from atomate2_gmt.schemas.prediction import derived_quantities
    from atomate2_gmt.tensors.conventions import full_to_voigt, kind_of

    failed = [r for r in results if r["state"] != "successful"]
    if failed:
        return failed[0], {}
    tensors = [np.asarray(r["tensor"], dtype=float) for r in results]
    mean = np.mean(tensors, axis=0)
    spread: dict[str, float] = {}
    derived = [derived_quantities(task, t, ieee_rotation) for t in tensors]
    for name in DERIVED_FIELDS[task]:
        values = [d.get(name) for d in derived]
        numbers = [float(v) for v in values if isinstance(v, float) and np.isfinite(v)]
        if len(numbers) == len(values):
            spread[name] = spread_scale * float(np.std(numbers))
    combined = {
        **results[0],
        "tensor": mean.tolist(),
        "voigt": full_to_voigt(mean, kind_of(task)).tolist(),
    }
    return combined, spread
