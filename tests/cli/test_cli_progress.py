"""Progress output of the CLI commands: plain lines on stderr when it is not a terminal, none
with ``--quiet``, and ``--quiet`` on every long-running command."""

from __future__ import annotations

import pytest
import typer
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
