"""Pictures the web app shows: the tensor surfaces of a candidate, drawn once and cached."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomate2_gmt.schemas.fields import PREDICTION_KEY, TASKS
from atomate2_gmt.web.common import NotFoundError

__all__ = ["TensorPictures"]


@dataclass
class TensorPictures:
    """PNG pictures of the tensor surfaces (:func:`atomate2_gmt.plotting.plot_tensor_surfaces`),
    drawn once per (document version, task) and kept in ``cache_dir``."""

    cache_dir: Path
    resolution: int = 40
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def path(self, doc: dict[str, Any], task: str | None) -> Path:
        """The PNG of ``task`` (None: every successful task in one picture) for ``doc``.

        ``ValueError`` for an unknown task or a tensor that has no picture (e.g. a singular
        elastic tensor), :class:`NotFoundError` if the task has no successful prediction."""
        from atomate2_gmt.plotting import plot_tensor_surfaces

        preds = doc.get("predictions") or {}
        if task is not None and task not in TASKS:
            raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
        wanted = [task] if task is not None else [t for t in TASKS if t in preds]
        tensors = {
            t: preds[t]["tensor"]
            for t in wanted
            if (preds.get(t) or {}).get("state") == "successful" and preds[t].get("tensor")
        }
        if not tensors:
            what = f"{task} prediction" if task else "prediction"
            raise NotFoundError(
                f"the document {doc.get(PREDICTION_KEY)!r} has no successful {what} to draw"
            )
        stamp = f"{doc.get(PREDICTION_KEY)}|{doc.get('last_updated')}|{','.join(tensors)}"
        name = hashlib.sha256(stamp.encode()).hexdigest()[:24] + ".png"
        out = self.cache_dir / name
        with self._lock:  # matplotlib is not thread-safe
            if not out.exists():
                tmp = out.with_suffix(f".{threading.get_ident()}.png")
                plot_tensor_surfaces(
                    tensors, tmp, title=str(doc.get("formula_pretty")), resolution=self.resolution
                )
                tmp.replace(out)
        return out
