"""Job functions for the jobflow-remote integration test (importable by the worker process)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from jobflow import job

from atomate2_gmt.jobs.predict import GMTPredictMaker
from atomate2_gmt.jobs.retrain import GMTRetrainMaker
from atomate2_gmt.schemas.run import PredictionRunDoc


@job
def add(a: float, b: float) -> float:
    """a + b."""
    return a + b


@job(data="values")
def table(n: int, scale: float) -> dict:
    """``values``: n numbers (goes to the job store's GridFS "data" store)."""
    return {"n": n, "values": [scale * i for i in range(n)]}


@dataclass
class DiesOncePredictMaker(GMTPredictMaker):
    """A prediction job that dies (``os._exit``: no exception, no output file) right after its
    first part of documents is upserted, once: ``crash_marker`` is a file it creates before
    dying, so the re-run does not die. Only the chunk named ``*_0`` dies."""

    crash_marker: str = ""

    @job(output_schema=PredictionRunDoc)
    def make(self, candidates: list) -> PredictionRunDoc:
        """GMTPredictMaker.make, with the store's upsert replaced by upsert-then-die."""
        import atomate2_gmt.stores as stores
        from atomate2_gmt.jobs.predict import predict_documents

        real = stores.upsert_predictions
        marker = Path(self.crash_marker)

        def upsert_then_die(store, docs, *args, **kwargs):
            written = real(store, docs, *args, **kwargs)
            if self.name.endswith("_0") and not marker.exists():
                marker.write_text(json.dumps({"pid": os.getpid(), "written": written}))
                os._exit(1)  # the process dies: no exception, no output, no cleanup
            return written

        stores.upsert_predictions = upsert_then_die
        try:
            return predict_documents(self, candidates)
        finally:
            stores.upsert_predictions = real


@dataclass
class DiesOnceRetrainMaker(GMTRetrainMaker):
    """A retrain job (in-process training, ``use_custodian=False``) that dies (``os._exit``)
    right after the trainer saved ``state.pt`` of epoch ``die_after_epoch``, once
    (``crash_marker``, as above). Every resume of ``state.pt`` is appended to
    ``<crash_marker>.resumed`` (the epoch it resumed at)."""

    use_custodian: bool = False
    crash_marker: str = ""
    die_after_epoch: int = 1

    @job
    def make(self) -> dict:
        """GMTRetrainMaker.make with the trainer's save_state/load_state instrumented."""
        from atomate2_gmt.jobs.retrain import retrain
        from atomate2_gmt.training.trainer import Trainer

        marker = Path(self.crash_marker)
        resumed = Path(f"{self.crash_marker}.resumed")
        save, load = Trainer.save_state, Trainer.load_state

        def save_then_die(trainer: Trainer) -> None:
            save(trainer)
            if trainer.epoch == self.die_after_epoch and not marker.exists():
                marker.write_text(json.dumps({"pid": os.getpid(), "epoch": trainer.epoch}))
                os._exit(1)  # the process dies mid-training: state.pt of this epoch is saved

        def load_and_record(trainer: Trainer) -> bool:
            done = load(trainer)
            if done:
                with resumed.open("a") as fh:
                    fh.write(f"{trainer.epoch}\n")
            return done

        Trainer.save_state, Trainer.load_state = save_then_die, load_and_record
        try:
            return json.loads(json.dumps(retrain(self), default=str))
        finally:
            Trainer.save_state, Trainer.load_state = save, load
