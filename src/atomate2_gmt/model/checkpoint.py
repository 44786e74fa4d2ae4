"""Checkpoints: config + weights + target normalisation + metadata, loaded weights-only.

A checkpoint is a ``torch.save`` of a plain dict (strings, numbers, lists, tensors), so it loads
with ``torch.load(weights_only=True)``: a file that needs arbitrary code to unpickle is refused.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.factory import GMTNET_ARCH, build_model, model_arch
from atomate2_gmt.model.tensor_model import TensorModel

FORMAT = "atomate2-gmt-checkpoint"
FORMAT_VERSION = 1


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    path: str | Path, model: TensorModel, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` (config, weights incl. target normalisation) and JSON-safe ``metadata``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arch = model_arch(model)
    meta = {
        "name": f"{arch}-{model.config.task}",
        "task": model.config.task,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(metadata or {}),
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.as_dict(),
        "arch": arch,  # absent in pre-baseline checkpoints: read as "gmtnet"
        "state_dict": state,
        "metadata": meta,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a crash never leaves a half-written checkpoint
    return path


_DISALLOWED_RE = re.compile(r"unsupported global|not an allowed global|GLOBAL \S+ whose", re.I)
"""How torch's weights-only unpickler says that a file asks for an object it refuses."""
_ADVICE_RE = re.compile(
    r"weights[ _]only|please file an issue|please use|check the documentation|safe_globals|"
    r"allowlist|trust|can still be loaded|if you are seeing this error|internal miniz error",
    re.I,
)
"""Sentences of torch's error messages that give advice, not a reason; dropped (one of them
suggests loading with ``weights_only=False``, which would run the file's code)."""


def torch_load_reason(exc: BaseException) -> str:
    """The reason in a ``torch.load`` error, without torch's advice (:data:`_ADVICE_RE`)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # terminal colours
    if "WeightsUnpickler error:" in text:  # the reason follows torch's paragraph of advice
        text = text.split("WeightsUnpickler error:", 1)[1]
    sentences = re.split(r"(?<=[.!?])\s+|\n+", text)
    kept = [s.strip() for s in sentences if s.strip() and not _ADVICE_RE.search(s)]
    return " ".join(kept) or type(exc).__name__


def _weights_only_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with errors that say which of three cases it is: not a
    ``torch.save`` archive (corrupt, truncated or another kind of file), an archive that asks for
    objects other than plain weights (refused, never loaded), or a damaged archive."""
    import warnings
    import zipfile

    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path}: corrupt or truncated checkpoint, or not a checkpoint at all (not a "
            "torch.save zip archive)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's protocol notices
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = torch_load_reason(exc)
        if _DISALLOWED_RE.search(str(exc)):
            raise ValueError(
                f"{path}: refused: the checkpoint asks for objects that are not plain weights "
                f"({reason}); it was not loaded"
            ) from None
        raise ValueError(f"{path}: corrupt checkpoint ({reason})") from None
    except Exception as exc:  # a damaged archive
        raise ValueError(
            f"{path}: corrupt or truncated checkpoint ({type(exc).__name__}: "
            f"{torch_load_reason(exc)})"
        ) from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load the raw checkpoint dict, weights-only; ValueError naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = _weights_only_load(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not an atomate2-gmt checkpoint (missing format tag {FORMAT!r})")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format version {payload.get('format_version')} "
            f"is not supported (expected {FORMAT_VERSION})"
        )
    return payload


def load_checkpoint(
    path: str | Path, task: str | None = None, config: GMTNetConfig | None = None
) -> tuple[TensorModel, dict[str, Any]]:
    """Build the model a checkpoint describes and load its weights; nothing more (no forward
    pass: what a model predicts is checked where models enter use, :mod:`atomate2_gmt.model.
    validate`).

    ``task``/``config``, when given, must match the checkpoint's; any mismatch (task, config field,
    missing or unexpected weights, wrong shapes) is a ValueError naming the file and the mismatch.
    Returns (model in eval mode on CPU, metadata incl. ``checkpoint_sha256``).
    """
    payload = read_checkpoint(path)
    try:
        stored = GMTNetConfig.from_dict(payload["config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: invalid model config in checkpoint: {exc}") from exc
    if task is not None and stored.task != task:
        raise ValueError(f"{path}: checkpoint is for task {stored.task!r}, not {task!r}")
    if config is not None:
        diff = {
            k: (v, getattr(stored, k))
            for k, v in config.as_dict().items()
            if getattr(stored, k) != v and k != "dtype"
        }
        if diff:
            raise ValueError(f"{path}: config mismatch (expected, stored): {diff}")
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise ValueError(f"{path}: checkpoint has no state_dict")
    not_tensors = [
        f"{k!s:.60} ({type(v).__name__})"
        for k, v in state.items()
        if not isinstance(v, torch.Tensor)
    ]
    if not_tensors or not all(isinstance(k, str) for k in state):
        raise ValueError(
            f"{path}: every weight must be a tensor; refused: {', '.join(not_tensors[:5])}"
        )
    arch = payload.get("arch", GMTNET_ARCH)
    if not isinstance(arch, str):
        raise ValueError(f"{path}: the architecture tag is a {type(arch).__name__}, not a string")
    try:
        model = build_model(stored, arch)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    own = model.state_dict()
    if "target_offset" not in state:  # written before the offset existed: a zero offset
        state = {**state, "target_offset": torch.zeros_like(own["target_offset"])}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{path}: weights do not match the config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {shapes[:5]}"
        )
    model.load_state_dict(state)
    model.eval()
    meta = dict(payload.get("metadata") or {})
    meta["checkpoint_sha256"] = file_sha256(path)
    meta["checkpoint_path"] = str(path)
    meta["arch"] = arch
    return model, meta
