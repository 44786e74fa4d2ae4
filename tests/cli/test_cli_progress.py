"""Progress output of the CLI commands: plain lines on stderr when it is not a terminal, none
with ``--quiet``, and ``--quiet`` on every long-running command."""

from __future__ import annotations

import pytest
import typer
from jobflow import job
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from atomate2_gmt.cli.app import app

LONG_COMMANDS = (
    ("demo",),
    ("screen",),
    ("predict",),
    ("train",),
    ("evaluate",),
    ("retrain",),
    ("campaign", "simulate"),
)


@pytest.mark.parametrize("path", LONG_COMMANDS, ids=" ".join)
def test_every_long_command_has_quiet(path):
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    opts = {o for p in cmd.params for o in p.opts}
    assert "--quiet" in opts


@pytest.fixture
def two_files(tmp_path):
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    zno = Structure(
        Lattice.hexagonal(3.25, 5.21),
        ["Zn", "Zn", "O", "O"],
        [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.382], [2 / 3, 1 / 3, 0.882]],
    )
    paths = [tmp_path / "NaCl.cif", tmp_path / "ZnO.cif"]
    nacl.to(filename=str(paths[0]))
    zno.to(filename=str(paths[1]))
    return [str(p) for p in paths]


def test_predict_prints_plain_progress_lines_off_a_terminal(two_files):
    result = CliRunner().invoke(app, ["predict", *two_files, "--task", "dielectric"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert "predicting dielectric: 0/2 structures" in lines
    assert any(line.startswith("predicting dielectric: 2/2 structures done in ") for line in lines)
    assert "\x1b[" not in result.stderr
    assert "NaCl" in result.stdout
    assert "ZnO" in result.stdout


def test_predict_quiet_prints_no_progress(two_files):
    result = CliRunner().invoke(app, ["predict", *two_files, "--task", "dielectric", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "predicting" not in result.stderr
    assert "NaCl" in result.stdout


@job
def _maybe_fail(fail: bool) -> int:
    if fail:
        raise RuntimeError("did not converge")
    return 1


def test_job_lines_and_failures_follow_job_metadata_not_names():
    """The screen command's job progress and failure records tell jobs apart by
    ``routing.KIND_KEY`` (set where each job is made): a relaxation named anything gets the
    relaxation lines, a job that only looks like one by name does not, and a failed
    relaxation can be left out of the job failures (the funnel lists it itself)."""
    import io

    from jobflow import Flow, run_locally

    from atomate2_gmt import progress
    from atomate2_gmt.cli.screen import _JobFailureLog, _JobProgress
    from atomate2_gmt.routing import KIND_KEY

    relax_ok = _maybe_fail(False)
    relax_ok.name = "ff relax"
    relax_ok.metadata = {KIND_KEY: "relax", "source": "mp-1", "position": [1, 2]}
    relax_bad = _maybe_fail(True)
    relax_bad.name = "ff relax"
    relax_bad.metadata = {KIND_KEY: "relax", "source": "mp-2", "position": [2, 2]}
    impostor = _maybe_fail(True)
    impostor.name = "gmt_relax 1/1 mp-3"
    stream = io.StringIO()
    with (
        progress.reporting(stream=stream, mode="lines"),
        _JobFailureLog() as failures,
        _JobProgress(),
    ):
        run_locally(Flow([relax_ok, relax_bad, impostor]), ensure_success=False, log=False)
    lines = stream.getvalue().splitlines()
    assert "relaxing 1/2: mp-1" in lines
    assert "relaxing 2/2: mp-2" in lines
    assert any(line.startswith("relaxed mp-1 in ") for line in lines)
    assert "running gmt_relax 1/1 mp-3" in lines
    assert not any("mp-3" in line and line.startswith("relax") for line in lines)
    assert failures.failures(except_kind="relax") == [
        ["gmt_relax 1/1 mp-3", "RuntimeError: did not converge"]
    ]
    assert sorted(name for name, _ in failures.failures()) == ["ff relax", "gmt_relax 1/1 mp-3"]
    assert failures.reason(relax_bad.uuid) == "RuntimeError: did not converge"
    assert failures.reason("no-such-uuid") == "not run: a job it depends on failed"
