"""Shipped pretrained GMTNet weights, one checkpoint per task, with their metrics and command.

``gmtnet_<task>.pt`` (weights-only checkpoint) and ``gmtnet_<task>.json`` (metrics, training-data
hash, the command that reproduced it) sit beside this file; see README.md here.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from atomate2_gmt.tensors.tasks import TASK_SPECS, check_task


def pretrained_path(task: str) -> Path:
    """Path of the shipped checkpoint for ``task``; FileNotFoundError if none is shipped."""
    check_task(task)
    path = Path(str(resources.files("atomate2_gmt.pretrained").joinpath(f"gmtnet_{task}.pt")))
    if not path.is_file():
        raise FileNotFoundError(
            f"no pretrained GMTNet model is shipped for task {task!r} (looked for {path}); "
            "pass a checkpoint path, or train one with `atomate2-gmt train`"
        )
    return path


def available() -> list[str]:
    """Tasks with a shipped checkpoint."""
    out = []
    for task in TASK_SPECS:
        try:
            pretrained_path(task)
        except FileNotFoundError:
            continue
        out.append(task)
    return out
