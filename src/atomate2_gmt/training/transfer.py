"""Transfer learning: start a model from the weights of a model trained on another task.

GMTNet's layers below the tensor head (atom and edge embeddings, the invariant Comformer layers,
most of the equivariant layers) have the same shapes for every task of the same architecture;
the head and the last equivariant layer's output irreps differ (a rank-2 dielectric tensor needs
l ≤ 2, a rank-3 piezo tensor l ≤ 3). :func:`transfer_weights` copies every parameter whose name
and shape agree and leaves the rest as initialised, so a piezo model can start from a
dielectric model's learnt description of crystals.

Buffers are never copied: they hold task-specific state (the target offset, batch-norm running
statistics) or constants that the new model computes itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["TransferReport", "load_state", "transfer_weights"]


@dataclass
class TransferReport:
    """What :func:`transfer_weights` did: parameter names copied and left as initialised, and
    the number of values copied out of the model's total."""

    copied: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    n_copied: int = 0
    n_total: int = 0

    @property
    def fraction(self) -> float:
        """Share of the model's parameter values that were copied."""
        return self.n_copied / self.n_total if self.n_total else 0.0

    def summary(self) -> str:
        """One line for a log."""
        return (
            f"transferred {len(self.copied)} of {len(self.copied) + len(self.kept)} parameter "
            f"tensors ({self.n_copied} of {self.n_total} values, {100 * self.fraction:.0f} %)"
        )


def transfer_weights(model: nn.Module, state: dict[str, Any]) -> TransferReport:
    """Copy into ``model`` every parameter of ``state`` (a state dict) whose name and shape match
    one of the model's parameters; returns what was copied. Raises ``ValueError`` if nothing
    matches (a state of another architecture)."""
    report = TransferReport()
    own = dict(model.named_parameters())
    with torch.no_grad():
        for name, param in own.items():
            report.n_total += param.numel()
            source = state.get(name)
            if isinstance(source, torch.Tensor) and source.shape == param.shape:
                param.copy_(source.to(param.dtype))
                report.copied.append(name)
                report.n_copied += param.numel()
            else:
                report.kept.append(name)
    if not report.copied:
        raise ValueError(
            "no parameter of the state matches the model by name and shape "
            "(is it a GMTNet state of the same architecture?)"
        )
    return report


def load_state(path: str | Path) -> dict[str, Any]:
    """The model state dict of a checkpoint file written by this package (any task), loaded
    with ``weights_only=True``; refuses a file without one with an error naming it."""
    from atomate2_gmt.model.checkpoint import load_checkpoint

    net, _ = load_checkpoint(path)
    return net.state_dict()
