"""Training under custodian: a real NaN loss and a real allocation failure, recovered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.tiny_model import TINY

from atomate2_gmt.data.mp import load_mp
from atomate2_gmt.training.custodian import (
    TRAIN_LOG,
    TRAIN_SPEC,
    GMTTrainJob,
    NanLossHandler,
    OutOfMemoryHandler,
    read_spec,
    run_train_spec,
    run_training_with_custodian,
    write_train_spec,
)
from atomate2_gmt.training.trainer import TrainConfig

OOM_CODE = "import torch; torch.empty(2**42, dtype=torch.float32)"  # 16 TiB: a real ENOMEM


@pytest.fixture(scope="module")
def records():
    return load_mp("dielectric").records[:32]


def _spec(tmp_path: Path, records, **train) -> Path:
    cfg = TrainConfig(**{"batch_size": 4, "device": "cpu", "warmup_epochs": 0, **train})
    write_train_spec(
        tmp_path, "dielectric", records[:16], records[16:24], records[24:], cfg,
        model_overrides=TINY,
    )  # fmt: skip
    return tmp_path


def _set_train(directory: Path, **values) -> None:
    spec = read_spec(directory)
    spec["train"].update(values)
    (directory / TRAIN_SPEC).write_text(json.dumps(spec))


def test_nan_loss_restarts_from_last_state_at_lower_lr(tmp_path, records):
    d = _spec(tmp_path, records, epochs=1, lr=1e-2)
    first = run_train_spec(d)  # one good epoch: state.pt at epoch 1
    assert first["epochs_run"] == 1
    good_epoch = json.loads((d / "log.json").read_text())["history"][0]
    _set_train(d, epochs=3, lr=1e6)  # an absurd peak lr: the loss becomes non-finite
    result = run_training_with_custodian(d, handlers=[NanLossHandler(lr_factor=0.01)])
    assert [c["handler"] for c in result["corrections"]] == ["NanLossHandler"]
    assert result["corrections"][0]["errors"] == ["non-finite loss at lr 1e+06"]
    failed_log = (d / f"{TRAIN_LOG}.err1").read_text()
    assert "FloatingPointError: non-finite loss at epoch 1" in failed_log
    assert read_spec(d)["train"]["lr"] == pytest.approx(1e4)
    assert result["train_config"]["lr"] == pytest.approx(1e4)
    history = json.loads((d / "log.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[0] == good_epoch  # resumed from the saved state, not restarted
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in history)
    assert result["test"]["n"] == 8


def test_nan_handler_gives_up_after_max_restarts(tmp_path):
    handler = NanLossHandler(max_restarts=2)
    assert (handler.lr_factor, handler.max_num_corrections, handler.raise_on_max) == (0.5, 2, True)
    with pytest.raises(ValueError, match="lr_factor must be in"):
        NanLossHandler(lr_factor=2.0)


def _real_oom_text() -> str:
    proc = subprocess.run([sys.executable, "-c", OOM_CODE], capture_output=True, text=True)
    assert proc.returncode != 0
    return proc.stderr


def test_oom_handler_on_real_allocation_failure(tmp_path, records):
    d = _spec(tmp_path, records, epochs=1, batch_size=8)
    text = _real_oom_text()
    assert "DefaultCPUAllocator: can't allocate memory" in text
    (d / TRAIN_LOG).write_text(text)
    handler = OutOfMemoryHandler()
    assert handler.check(str(d))
    out = handler.correct(str(d))
    assert out["errors"] == ["out of memory at batch size 8"]
    assert read_spec(d)["train"]["batch_size"] == 4
    assert not (d / TRAIN_LOG).exists()
    assert (d / f"{TRAIN_LOG}.err1").exists()
    assert not handler.check(str(d))
    _set_train(d, batch_size=2)
    (d / TRAIN_LOG).write_text(text)
    assert handler.correct(str(d))["actions"] is None  # at the minimum: not correctable


class _OomOnceJob(GMTTrainJob):
    """First attempt: a child that really runs out of memory; then the real training."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def run(self, directory: str = "./") -> subprocess.Popen[bytes]:
        self.attempts += 1
        if self.attempts > 1:
            return super().run(directory)
        with open(Path(directory) / TRAIN_LOG, "wb") as log:
            return subprocess.Popen([sys.executable, "-c", OOM_CODE], stdout=log, stderr=log)


def test_custodian_reruns_with_halved_batch_after_oom(tmp_path, records):
    d = _spec(tmp_path, records, epochs=1, batch_size=8, lr=1e-2)
    job = _OomOnceJob()
    result = run_training_with_custodian(d, job=job)
    assert job.attempts == 2
    assert [c["handler"] for c in result["corrections"]] == ["OutOfMemoryHandler"]
    assert result["train_config"]["batch_size"] == 4
    state = torch.load(d / "state.pt", weights_only=True)
    assert json.loads(state["train_json"])["batch_size"] == 4
    assert result["epochs_run"] == 1


def test_unrecoverable_failure_names_the_log(tmp_path, records):
    d = _spec(tmp_path, records, epochs=1)
    (d / "gmt_records.json").write_text("{}")  # the child cannot read its records
    with pytest.raises(RuntimeError, match="failed without a recoverable error"):
        run_training_with_custodian(d)


def test_handlers_and_job_serialise():
    for obj in (NanLossHandler(0.25, 3), OutOfMemoryHandler(4, 2), GMTTrainJob(omp_threads=1)):
        again = type(obj).from_dict(obj.as_dict())
        assert again.as_dict() == obj.as_dict()


def test_epochs_of_the_child_process_are_reported(tmp_path, records):
    """The training runs in a child process under custodian; the parent's progress follows
    the epochs the child writes to log.json (plain lines off a terminal, none when quiet)."""
    import io
    import re

    from atomate2_gmt import progress

    d = _spec(tmp_path / "run", records, epochs=3)
    stream = io.StringIO()
    with progress.reporting(stream=stream):
        result = run_training_with_custodian(d)
    assert result["epochs_run"] == 3
    lines = stream.getvalue().splitlines()
    assert lines[0] == "training dielectric: 0/3 epochs"
    assert re.fullmatch(r"training dielectric: 3/3 epochs done in [\d.]+ s", lines[-1])
    quiet = io.StringIO()
    with progress.reporting(stream=quiet, quiet=True):
        run_training_with_custodian(_spec(tmp_path / "quiet", records, epochs=1))
    assert quiet.getvalue() == ""
