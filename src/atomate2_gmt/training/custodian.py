"""Training under custodian: a subprocess training run with error handlers that recover it.

A run folder holds a spec (:data:`TRAIN_SPEC`, written by :func:`write_train_spec`: task,
records file, optional checkpoint to fine-tune from, ``TrainConfig``, model overrides,
checkpoint metadata). :class:`GMTTrainJob` runs ``python -m atomate2_gmt.training.custodian
DIR`` with stdout and stderr in :data:`TRAIN_LOG`; the child trains (resuming ``state.pt`` if
present), evaluates the best-on-validation checkpoint on the spec's test records and writes
:data:`TRAIN_RESULT`. After each run the handlers read the log and edit the spec:

- :class:`NanLossHandler`: "non-finite loss" / "non-finite weights" (the trainer's
  ``FloatingPointError``; nothing non-finite is ever saved) → peak lr × ``lr_factor`` (0.5) and
  rerun, which resumes from the last saved ``state.pt`` (up to ``max_restarts``).
- :class:`OutOfMemoryHandler`: CUDA / MPS / CPU allocator out-of-memory text → batch size
  halved (down to ``min_batch_size``) and rerun, resuming the same way.

:func:`run_training_with_custodian` runs the job with both handlers.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from custodian.custodian import ErrorHandler, Job

from atomate2_gmt.data.records import TensorRecord

__all__ = [
    "NAN_PATTERNS",
    "OOM_PATTERNS",
    "TRAIN_LOG",
    "TRAIN_RESULT",
    "TRAIN_SPEC",
    "GMTTrainJob",
    "NanLossHandler",
    "OutOfMemoryHandler",
    "read_spec",
    "run_train_spec",
    "run_training_with_custodian",
    "write_train_spec",
]

logger = logging.getLogger(__name__)

TRAIN_SPEC = "gmt_train.json"
TRAIN_RECORDS = "gmt_records.json"
TRAIN_LOG = "gmt_train.log"
TRAIN_RESULT = "gmt_train_result.json"

NAN_PATTERNS: tuple[str, ...] = ("non-finite loss", "non-finite weights")
"""Log text of a diverged run (trainer.py raises FloatingPointError with these words)."""

OOM_PATTERNS: tuple[str, ...] = (
    "CUDA out of memory",
    "OutOfMemoryError",
    "MPS backend out of memory",
    "DefaultCPUAllocator: can't allocate memory",
)
"""Log text of an allocation failure (torch.OutOfMemoryError on CUDA, the CPU allocator)."""


# ---- spec ----------------------------------------------------------------------------------
def write_train_spec(
    directory: str | Path,
    task: str,
    train: Sequence[TensorRecord],
    val: Sequence[TensorRecord],
    test: Sequence[TensorRecord],
    train_config: Any,
    init_checkpoint: str | Path | None = None,
    model_overrides: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write the records file and the spec of one training run into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    records = {name: [r.as_dict() for r in recs] for name, recs in
               (("train", train), ("val", val), ("test", test))}  # fmt: skip
    (d / TRAIN_RECORDS).write_text(json.dumps(records))
    spec = {
        "task": task,
        "records": TRAIN_RECORDS,
        "init_checkpoint": None if init_checkpoint is None else str(init_checkpoint),
        "model_overrides": dict(model_overrides or {}),
        "train": asdict(train_config),
        "metadata": dict(metadata or {}),
    }
    path = d / TRAIN_SPEC
    path.write_text(json.dumps(spec, indent=1, default=str))
    return path


def read_spec(directory: str | Path) -> dict[str, Any]:
    """The spec of a run folder; FileNotFoundError naming the folder if there is none."""
    path = Path(directory) / TRAIN_SPEC
    if not path.is_file():
        raise FileNotFoundError(f"no training spec {TRAIN_SPEC} in {Path(directory).resolve()}")
    spec: dict[str, Any] = json.loads(path.read_text())
    return spec


def _write_spec(directory: str | Path, spec: dict[str, Any]) -> None:
    (Path(directory) / TRAIN_SPEC).write_text(json.dumps(spec, indent=1, default=str))


def run_train_spec(directory: str | Path, progress: bool = False) -> dict[str, Any]:
    """Train as the spec of ``directory`` says (resuming ``state.pt``); write and return the
    result: best validation record, test metrics of ``best.pt``, the train config used.

    Fine-tuning (``init_checkpoint``) keeps the checkpoint's config and target scale
    (``target_scaling`` is turned off so the trainer does not rescale the outputs).
    """
    import torch

    from atomate2_gmt.model.checkpoint import load_checkpoint
    from atomate2_gmt.model.config import GMTNetConfig
    from atomate2_gmt.model.gmtnet import GMTNet
    from atomate2_gmt.training.evaluate import evaluate_prepared
    from atomate2_gmt.training.trainer import TrainConfig, Trainer, prepare_records

    d = Path(directory)
    spec = read_spec(d)
    task = spec["task"]
    known = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in spec["train"].items() if k in known})
    raw = json.loads((d / spec["records"]).read_text())
    parts = {k: [TensorRecord.from_dict(r) for r in raw[k]] for k in ("train", "val", "test")}
    torch.manual_seed(cfg.seed)
    if spec.get("init_checkpoint"):
        model, _ = load_checkpoint(spec["init_checkpoint"], task=task)
        cfg.target_scaling = False
    else:
        model = GMTNet(GMTNetConfig(task=task, **spec.get("model_overrides", {})))
    sets = {k: prepare_records(v, model.config) for k, v in parts.items() if v}
    meta = {**spec.get("metadata", {}), "init_checkpoint": spec.get("init_checkpoint")}
    trainer = Trainer(model, sets["train"], sets["val"], d, cfg, meta)
    trainer.fit(resume=True, progress=progress)
    result: dict[str, Any] = {
        "task": task,
        "best": trainer.best,
        "epochs_run": trainer.epoch,
        "train_config": asdict(cfg),
        "best_path": str(trainer.best_path),
        "failed_records": {k: v.failed for k, v in sets.items() if v.failed},
    }
    if "test" in sets and trainer.best_path.is_file():
        best, _ = load_checkpoint(trainer.best_path, task=task)
        report = evaluate_prepared(best, sets["test"], batch_size=cfg.batch_size)
        result["test"] = report["overall"]
    (d / TRAIN_RESULT).write_text(json.dumps(result, indent=1, default=str))
    return result


# ---- custodian job and handlers -------------------------------------------------------------
class GMTTrainJob(Job):
    """One training run of a spec folder in a child Python (log in :data:`TRAIN_LOG`)."""

    def __init__(self, python: str | None = None, omp_threads: int | None = None) -> None:
        self.python = python or sys.executable
        self.omp_threads = omp_threads

    def setup(self, directory: str = "./") -> None:
        """Check the spec exists (written by :func:`write_train_spec`); drop a stale result."""
        read_spec(directory)
        (Path(directory) / TRAIN_RESULT).unlink(missing_ok=True)

    def run(self, directory: str = "./") -> subprocess.Popen[bytes]:
        """Start the child; custodian waits for it, then runs the handlers."""
        env = dict(os.environ)
        if self.omp_threads is not None:
            env["OMP_NUM_THREADS"] = str(self.omp_threads)
        cmd = [self.python, "-m", "atomate2_gmt.training.custodian", str(Path(directory))]
        with open(Path(directory) / TRAIN_LOG, "wb") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)

    def postprocess(self, directory: str = "./") -> None:
        """Nothing to clean up: best.pt, state.pt, logs and the result stay."""


def _log_text(directory: str) -> str:
    path = Path(directory) / TRAIN_LOG
    return path.read_text(errors="replace") if path.is_file() else ""


def _backup_log(directory: str) -> str:
    """Move the failed run's log aside (``gmt_train.log.errN``); returns the new name."""
    d = Path(directory)
    n = 1
    while (d / f"{TRAIN_LOG}.err{n}").exists():
        n += 1
    if (d / TRAIN_LOG).exists():
        (d / TRAIN_LOG).rename(d / f"{TRAIN_LOG}.err{n}")
    return f"{TRAIN_LOG}.err{n}"


class NanLossHandler(ErrorHandler):
    """A non-finite loss or weights: rerun from the last saved state at lr × ``lr_factor``."""

    is_monitor = False

    def __init__(self, lr_factor: float = 0.5, max_restarts: int = 5) -> None:
        if not 0 < lr_factor < 1:
            raise ValueError(f"lr_factor must be in (0, 1), got {lr_factor}")
        self.lr_factor = lr_factor
        self.max_restarts = max_restarts
        self.max_num_corrections = max_restarts
        self.raise_on_max = True

    def check(self, directory: str = "./") -> bool:
        """True if the training log reports a non-finite loss or weights."""
        text = _log_text(directory)
        return any(p in text for p in NAN_PATTERNS)

    def correct(self, directory: str = "./") -> dict[str, Any]:
        """Lower the peak learning rate in the spec; the rerun resumes ``state.pt``."""
        spec = read_spec(directory)
        old = float(spec["train"]["lr"])
        new = old * self.lr_factor
        spec["train"]["lr"] = new
        _write_spec(directory, spec)
        _backup_log(directory)
        return {
            "errors": [f"non-finite loss at lr {old:g}"],
            "actions": [{"dict": TRAIN_SPEC, "action": {"_set": {"train.lr": new}}}],
        }


class OutOfMemoryHandler(ErrorHandler):
    """Out of memory (CUDA, MPS or CPU allocator): halve the batch size and rerun."""

    is_monitor = False

    def __init__(self, min_batch_size: int = 2, max_retries: int = 5) -> None:
        self.min_batch_size = max(2, min_batch_size)  # BatchNorm needs two samples
        self.max_retries = max_retries
        self.max_num_corrections = max_retries
        self.raise_on_max = True

    def check(self, directory: str = "./") -> bool:
        """True if the training log holds out-of-memory text."""
        text = _log_text(directory)
        return any(p in text for p in OOM_PATTERNS)

    def correct(self, directory: str = "./") -> dict[str, Any]:
        """Halve ``batch_size`` in the spec; not correctable at ``min_batch_size``."""
        spec = read_spec(directory)
        old = int(spec["train"]["batch_size"])
        if old <= self.min_batch_size:
            return {"errors": [f"out of memory at batch size {old} (the minimum)"], "actions": None}
        new = max(self.min_batch_size, old // 2)
        spec["train"]["batch_size"] = new
        _write_spec(directory, spec)
        _backup_log(directory)
        return {
            "errors": [f"out of memory at batch size {old}"],
            "actions": [{"dict": TRAIN_SPEC, "action": {"_set": {"train.batch_size": new}}}],
        }


def _epochs_done(directory: Path) -> int:
    """Epochs the run in ``directory`` has finished (the history in its ``log.json``; 0 when
    there is none yet or it is being rewritten)."""
    try:
        return len(json.loads((directory / "log.json").read_text())["history"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def run_training_with_custodian(
    directory: str | Path,
    handlers: Sequence[ErrorHandler] | None = None,
    job: GMTTrainJob | None = None,
    max_errors: int = 10,
) -> dict[str, Any]:
    """Run the spec in ``directory`` under custodian (NaN and OOM handlers by default).

    Returns the result (:data:`TRAIN_RESULT`) plus ``corrections`` (handler, errors, actions).
    Raises custodian's error (naming the handler) when a failure cannot be corrected, or a
    RuntimeError with the log's tail when the child failed for another reason.
    """
    import warnings

    from custodian import Custodian

    from atomate2_gmt import progress

    d = Path(directory)
    custodian = Custodian(
        list(handlers) if handlers is not None else [NanLossHandler(), OutOfMemoryHandler()],
        [job or GMTTrainJob()],
        max_errors=max_errors,
        directory=str(d),
        gzipped_output=False,
        checkpoint=False,
        terminate_on_nonzero_returncode=False,
        polling_time_step=1,
    )
    spec = read_spec(d)
    with (
        warnings.catch_warnings(),
        progress.task(
            f"training {spec['task']}", int(spec["train"]["epochs"]), "epochs", _epochs_done(d)
        ) as bar,
        progress.polling(lambda: bar.advance(max(0, _epochs_done(d) - bar.done))),
    ):  # the child process writes its epochs to log.json: the bar follows that file
        warnings.filterwarnings("ignore", message="subprocess returned a non-zero return code")
        run_log = custodian.run()
    result_path = d / TRAIN_RESULT
    if not result_path.is_file():
        tail = "\n".join(_log_text(str(d)).splitlines()[-15:])
        raise RuntimeError(f"training in {d} failed without a recoverable error:\n{tail}")
    result: dict[str, Any] = json.loads(result_path.read_text())
    result["corrections"] = [
        {"handler": type(x["handler"]).__name__, "errors": x["errors"], "actions": x["actions"]}
        for entry in run_log
        for x in entry.get("corrections", [])
    ]
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Child entry point: ``python -m atomate2_gmt.training.custodian DIR``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m atomate2_gmt.training.custodian RUN_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = run_train_spec(args[0])
    print(json.dumps({"best": result["best"], "test": result.get("test")}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
