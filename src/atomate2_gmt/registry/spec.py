"""Map the settings' ``MODELS[task]`` to what :func:`atomate2_gmt.predict` takes as ``model``."""

from __future__ import annotations

from pathlib import Path

from atomate2_gmt.settings import GMTSettings, resolve_settings

__all__ = ["resolve_model_spec"]


def resolve_model_spec(
    task: str, settings: GMTSettings | None = None, spec: str | None = None
) -> str | Path | None:
    """``'pretrained'`` → None (shipped weights), ``'registry'`` → the fetched, verified
    checkpoint of the promoted model, a path → that path (it must be an existing file).

    ``spec`` overrides the settings' ``MODELS[task]`` (e.g. a maker's own ``models`` entry);
    the registry and the cache are still those of ``settings``.

    Raises ``NoPromotedModelError`` (registry, nothing promoted) or ``FileNotFoundError``
    (a path that does not exist), each naming the task and the setting.
    """
    settings = settings or resolve_settings()
    if spec is None:
        spec = settings.model_for(task)
    else:
        settings.model_for(task)  # unknown task: same clear error
        spec = str(spec).strip()
    if spec == "pretrained":
        return None
    if spec == "registry":
        from atomate2_gmt.registry.registry import ModelRegistry

        registry = ModelRegistry(settings=settings)
        try:
            path, _ = registry.resolve(task)
        finally:
            registry.close()
        return path
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"MODELS[{task!r}] = {spec!r}: no checkpoint file at {path.resolve()}; set it to "
            "'pretrained', 'registry' or the path of an existing checkpoint "
            "(ATOMATE2_GMT_MODELS or the settings YAML)"
        )
    return path
