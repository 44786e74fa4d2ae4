"""The architecture factory: a model class for each ``arch`` tag a checkpoint stores.

Checkpoints (``model/checkpoint.py``) record the tag of the model they hold; a checkpoint
without one is a GMTNet.
"""

from __future__ import annotations

from atomate2_gmt.model.baselines import INVARIANT_ARCH, InvariantTensorNet
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.gmtnet import GMTNet
from atomate2_gmt.model.tensor_model import TensorModel

__all__ = ["ARCHS", "GMTNET_ARCH", "INVARIANT_ARCH", "build_model", "model_arch"]

#: Architecture tag of :class:`~atomate2_gmt.model.gmtnet.GMTNet` (also read when absent).
GMTNET_ARCH = GMTNet.arch

#: Model classes by the ``arch`` tag of a checkpoint.
ARCHS: dict[str, type[TensorModel]] = {GMTNET_ARCH: GMTNet, INVARIANT_ARCH: InvariantTensorNet}


def model_arch(model: TensorModel) -> str:
    """The ``arch`` tag of a model instance ("gmtnet" for GMTNet itself)."""
    return str(getattr(model, "arch", GMTNET_ARCH))


def build_model(config: GMTNetConfig, arch: str = GMTNET_ARCH) -> TensorModel:
    """A fresh model of architecture ``arch``; ValueError naming the known ones otherwise."""
    if arch not in ARCHS:
        raise ValueError(f"unknown model arch {arch!r}; known: {', '.join(ARCHS)}")
    return ARCHS[arch](config)
