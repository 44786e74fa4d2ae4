"""Progress reporting: plain lines off a terminal, nothing when quiet, right counts from the
prediction engine, the trainer, the custodian training watcher and the ABINIT log watcher."""

from __future__ import annotations

import gzip
import io
import json
import multiprocessing
import re
from pathlib import Path

import pytest
from jobflow import run_locally

from atomate2_gmt import progress
from atomate2_gmt.dfpt.abinit.watch import AbinitLogWatcher, describe_perturbation

ALP_LOG = Path(__file__).parents[1] / "dfpt" / "data" / "abinit" / "anaddb_alp" / "log.gz"
COUNT = re.compile(r"^(?P<label>[^:]+): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+)")


def _counts(text: str, label: str) -> list[tuple[int, int]]:
    out = []
    for line in text.splitlines():
        m = COUNT.match(line)
        if m and m["label"] == label:
            out.append((int(m["done"]), int(m["total"])))
    return out


def test_non_tty_stream_gives_plain_lines_with_right_counts():
    stream = io.StringIO()  # isatty() is False: a log file, CI, SLURM
    with progress.reporting(stream=stream) as reporter:
        assert isinstance(reporter, progress.LineReporter)
        with progress.task("work", 50, unit="items") as bar:
            for _ in range(50):
                bar.advance(1)
        progress.phase("phase two")
    text = stream.getvalue()
    assert "\x1b[" not in text  # no terminal control codes
    counts = _counts(text, "work")
    assert counts[0] == (0, 50)
    assert counts[-1] == (50, 50)
    assert text.splitlines()[-2].startswith("work: 50/50 items done in ")
    assert [d for d, _ in counts] == sorted(d for d, _ in counts)
    assert len(counts) == 11  # start, one line per 10 %, the end: not one per item
    assert text.splitlines()[-1] == "phase two"


def test_quiet_gives_no_output_and_hides_an_outer_reporter():
    stream = io.StringIO()
    with progress.reporting(stream=stream, quiet=True) as reporter:
        assert reporter is None
        assert not progress.active()
        with progress.task("work", 3) as bar:
            bar.advance(3)
        progress.phase("hidden")
    assert stream.getvalue() == ""
    outer = io.StringIO()
    with progress.reporting(stream=outer), progress.reporting(quiet=True):
        progress.phase("hidden too")
    assert outer.getvalue() == ""


def test_without_a_reporter_the_library_is_silent(capsys, caplog):
    with progress.task("work", 2) as bar:
        bar.advance(2)
    progress.phase("nobody listens")
    assert capsys.readouterr() == ("", "")
    assert "nobody listens" not in caplog.text


def test_phase_logs_when_no_reporter(caplog):
    import logging

    logger = logging.getLogger("atomate2_gmt.test_progress")
    with caplog.at_level(logging.INFO, logger=logger.name):
        progress.phase("ABINIT dataset 1/3: ground state", logger)
    assert "ABINIT dataset 1/3: ground state" in caplog.text


def test_stopped_loop_says_so():
    stream = io.StringIO()
    with progress.reporting(stream=stream), progress.task("work", 10) as bar:
        bar.advance(4)
    assert stream.getvalue().splitlines()[-1].startswith("work: 4/10 items stopped in ")


def test_bad_mode_and_total_are_refused():
    with (
        pytest.raises(ValueError, match="progress mode must be auto, bar, lines or quiet"),
        progress.reporting(mode="fancy"),  # type: ignore[arg-type]
    ):
        pass
    with pytest.raises(ValueError, match="total must be >= 0"):
        progress.task("work", -1)


def test_bar_mode_draws_a_rich_bar():
    stream = io.StringIO()
    with progress.reporting(mode="bar", stream=stream) as reporter:
        assert isinstance(reporter, progress.RichReporter)
        with progress.task("work", 4, unit="items") as bar:
            bar.advance(4)
    assert "4/4" in stream.getvalue()


def _child_phase() -> None:
    progress.phase("from the child")


def test_a_forked_worker_never_writes_to_the_parents_reporter(tmp_path):
    path = tmp_path / "progress.log"
    with open(path, "w") as fh, progress.reporting(mode="lines", stream=fh):
        proc = multiprocessing.get_context("fork").Process(target=_child_phase)
        proc.start()
        proc.join()
        progress.phase("from the parent")
    assert path.read_text() == "from the parent\n"


def test_polling_follows_a_growing_count():
    stream = io.StringIO()
    done = {"n": 0}
    with (
        progress.reporting(stream=stream),
        progress.task("watched", 3, unit="epochs") as bar,
        progress.polling(lambda: bar.advance(done["n"] - bar.done), interval_s=0.01),
    ):
        done["n"] = 3
    assert _counts(stream.getvalue(), "watched")[-1] == (3, 3)


def test_prediction_engine_reports_every_structure_and_the_skipped_ones(good_structures):
    from tests.screening.conftest import TEST_TASKS, SmallModelPredictMaker

    structures = good_structures * 4  # 40 structures: several parts
    stream = io.StringIO()
    maker = SmallModelPredictMaker(
        tasks=TEST_TASKS, batch_size=8, part_size=8, write_to_store=True, return_documents=False
    )
    with progress.reporting(stream=stream):
        job = maker.make(structures)
        run_locally(job, ensure_success=True, log=False)
    text = stream.getvalue()
    assert "loading the dielectric, piezo, elastic models" in text
    counts = _counts(text, "predicting")
    assert counts[0] == (0, 40)
    assert counts[-1] == (40, 40)
    assert "predicting: 40/40 structures done in" in text
    # a second run finds them in the store (skipped): still counted, so the bar completes
    again = io.StringIO()
    with progress.reporting(stream=again):
        job = maker.make(structures)
        run_locally(job, ensure_success=True, log=False)
    assert _counts(again.getvalue(), "predicting")[-1] == (40, 40)


def test_trainer_reports_epochs(tmp_path):
    from atomate2_gmt.model.config import GMTNetConfig
    from atomate2_gmt.model.gmtnet import GMTNet
    from atomate2_gmt.training.run import load_records
    from atomate2_gmt.training.trainer import TrainConfig, Trainer, prepare_records
    from tests.tiny_model import TINY

    records, _ = load_records("dielectric", "mp")
    model = GMTNet(GMTNetConfig(task="dielectric", **TINY))
    stream = io.StringIO()
    with progress.reporting(stream=stream):
        train = prepare_records(records[:12], model.config)
        val = prepare_records(records[12:16], model.config)
        cfg = TrainConfig(epochs=3, batch_size=6, device="cpu", warmup_epochs=0)
        Trainer(model, train, val, tmp_path, cfg, {}).fit(resume=False)
    text = stream.getvalue()
    prepared = _counts(text, "preparing crystals")
    assert prepared[0] == (0, 12)
    assert (12, 12) in prepared
    assert prepared[-1] == (4, 4)
    assert _counts(text, "training dielectric")[-1] == (3, 3)
    assert re.search(r"training dielectric: 3/3 epochs done in [\d.]+ s loss [\d.]+", text)
    quiet = io.StringIO()
    with progress.reporting(stream=quiet, quiet=True):
        Trainer(model, train, val, tmp_path / "q", cfg, {}).fit(resume=False)
    assert quiet.getvalue() == ""


def test_custodian_training_watcher_counts_the_epochs_in_log_json(tmp_path):
    from atomate2_gmt.training.custodian import _epochs_done

    assert _epochs_done(tmp_path) == 0  # no log yet
    (tmp_path / "log.json").write_text('{"history": [{"epoch": 1}, {"ep')  # being rewritten
    assert _epochs_done(tmp_path) == 0
    (tmp_path / "log.json").write_text(json.dumps({"history": [{"epoch": 1}, {"epoch": 2}]}))
    assert _epochs_done(tmp_path) == 2


def test_describe_perturbation():
    assert describe_perturbation(1, 2, natom=2) == "phonon, atom 2 along direction 1"
    assert describe_perturbation(2, 3, natom=2) == "d/dk along direction 2"
    assert describe_perturbation(3, 4, natom=2) == "electric field along direction 3"
    assert describe_perturbation(2, 5, natom=2) == "uniaxial strain yy"
    assert describe_perturbation(3, 6, natom=2) == "shear strain xy"


def test_abinit_log_watcher_reports_each_dataset_and_perturbation(tmp_path):
    """The real AlP log (GS, DDK, response with phonons, E-field, strain), fed as it grows."""
    text = gzip.decompress(ALP_LOG.read_bytes())
    log = tmp_path / "log"
    watcher = AbinitLogWatcher(log, {"gs": 1, "ddk": 2, "response": 3}, natom=2)
    assert watcher.poll() == []  # not written yet
    lines: list[str] = []
    for start in range(0, len(text), 7000):  # arbitrary chunks: lines cut in the middle
        with open(log, "ab") as fh:
            fh.write(text[start : start + 7000])
        lines += watcher.poll()
    assert lines[0] == "ABINIT dataset 1/3: ground state"
    assert lines[1] == "ABINIT dataset 2/3: DDK"
    assert "ABINIT dataset 2/3 (DDK): perturbation 3/3, d/dk along direction 3" in lines
    assert "ABINIT dataset 3/3: response" in lines
    response = [line for line in lines if line.startswith("ABINIT dataset 3/3 (response)")]
    assert len(response) == 9
    assert response[0].endswith("perturbation 1/9, phonon, atom 1 along direction 1")
    assert response[2].endswith("perturbation 3/9, electric field along direction 1")
    assert response[-1].endswith("perturbation 9/9, shear strain xy")
    assert lines[-1] == "ABINIT calculation completed"
    # custodian restarts ABINIT after a correction: the log starts again from nothing
    log.write_bytes(text[:2000])
    assert watcher.poll()[0] == "ABINIT started again after a custodian correction"


def test_overall_counts_its_parts_with_a_line_per_part_and_an_eta():
    stream = io.StringIO()
    with progress.reporting(stream=stream):
        with progress.overall("screening", 30, unit="structures", parts=3) as whole:
            with progress.task("predicting", 10, unit="structures") as part:
                part.skip(10)  # a finished part of an earlier run
            progress.phase("loading the models")
            for _ in range(2):
                progress.phase("loading the models")  # each part says it: shown once
                with progress.task("predicting", 10, unit="structures") as part:
                    part.grow(2)  # a file of several structures
                    for _ in range(12):
                        part.advance(1)
        assert whole.done == 34
        assert whole.total == 34
        assert whole.skipped == 10
    text = stream.getvalue()
    assert "predicting" not in text  # the parts are counted in the whole, not shown
    assert text.count("loading the models") == 1
    lines = [ln for ln in text.splitlines() if ln.startswith("screening: ")]
    assert lines[0] == "screening: 0/30 structures"
    assert lines[1].startswith("screening: 10/30 structures (33 %, chunk 1/3, 10 already done")
    assert "chunk 2/3" in lines[2]
    assert lines[2].startswith("screening: 22/32 structures")
    assert "ETA " in lines[2]
    assert "structures/s" in lines[2]
    assert lines[3].startswith("screening: 34/34 structures (100 %, chunk 3/3")
    assert "ETA" not in lines[3]
    assert lines[-1].startswith("screening: 34/34 structures done in ")


def test_heartbeat_reports_a_long_step_and_not_a_short_one():
    import time

    stream = io.StringIO()
    with progress.reporting(stream=stream):
        with progress.heartbeat("short step", every_s=5.0):
            pass
        with progress.heartbeat("long step", every_s=0.1):
            time.sleep(0.45)  # a step with nothing to count, e.g. building one model
    lines = stream.getvalue().splitlines()
    assert not any(line.startswith("short step") for line in lines)
    beats = [line for line in lines if line.startswith("long step (")]
    assert 2 <= len(beats) <= 5  # about every 0.1 s while it ran, nothing after it ended


def test_every_s_bounds_the_silence_of_a_slowly_advancing_loop():
    import time

    stream = io.StringIO()
    with progress.reporting(stream=stream, every_s=0.05), progress.task("slow", 100) as bar:
        for _ in range(3):  # 3 % of the loop: no 10 % step reached
            time.sleep(0.08)
            bar.advance(1)
    lines = [line for line in stream.getvalue().splitlines() if line.startswith("slow: ")]
    assert [c for c in _counts("\n".join(lines), "slow")][:4] == [
        (0, 100),
        (1, 100),
        (2, 100),
        (3, 100),
    ]


def test_model_loading_reports_each_model(monkeypatch):
    from atomate2_gmt.registry import loading

    monkeypatch.setattr(loading, "_MODEL_CACHE", {})
    monkeypatch.setattr(loading, "_VALIDATED", set())
    stream = io.StringIO()
    with progress.reporting(stream=stream):
        loading.load_model_spec("dielectric", "pretrained")
        loading.load_model_spec("dielectric", "pretrained")  # cached: no second line
    lines = [line for line in stream.getvalue().splitlines() if line.startswith("loaded the ")]
    assert len(lines) == 1
    assert re.fullmatch(
        r"loaded the dielectric model gmtnet_dielectric\.pt \(\d+\.\d s\)", lines[0]
    )
