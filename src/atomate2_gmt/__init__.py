"""atomate2-gmt: GMTNet crystal-tensor prediction as an atomate2/jobflow discovery engine.

Layers (see docs/architecture.md): ``tensors`` (physics, no torch) → ``model`` (torch + e3nn) →
``data`` → ``training`` → ``schemas``/``stores`` → ``jobs``/``flows`` → ``cli``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pymatgen.core import Structure

__all__ = ["__version__", "predict"]


def predict(
    structures: Sequence[Structure],
    task: str,
    model: Any = None,
    device: str | None = None,
    batch_size: int = 64,
) -> list[dict[str, Any]]:
    """Predict a crystal tensor for each structure; see :func:`atomate2_gmt.model.predict.predict`.

    ``model``: a ``GMTNet``, a checkpoint path, or None (the shipped pretrained model).
    Each result dict has ``state``, ``error``, ``tensor`` (full Cartesian, structure's frame) and
    ``voigt`` (standard order xx,yy,zz,yz,xz,xy). One bad structure never fails the batch.
    """
    from atomate2_gmt.model.predict import predict as _predict

    return _predict(structures, task, model=model, device=device, batch_size=batch_size)
