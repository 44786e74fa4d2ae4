"""``--help`` of every ``atomate2-gmt`` command: it works, names every option in full at 80
columns, and reflows docstrings into paragraphs."""

from __future__ import annotations

import inspect
import itertools
import re
import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from atomate2_gmt.cli.app import app
from atomate2_gmt.training.data_sources import DATA_SOURCES

WIDTH = 80


def _commands() -> list[tuple[tuple[str, ...], Any]]:
    """(path, command) for every leaf command of the app (typer's click commands)."""
    root = typer.main.get_command(app)
    out: list[tuple[tuple[str, ...], Any]] = []

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        if hasattr(cmd, "commands"):  # a group
            for name, sub in cmd.commands.items():
                walk(sub, (*path, name))
        else:
            out.append((path, cmd))

    walk(root, ())
    return out


COMMANDS = _commands()


def _help(*args: str) -> str:
    result = CliRunner().invoke(
        app, [*args, "--help"], env={"COLUMNS": str(WIDTH)}, terminal_width=WIDTH
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_group_is_walked() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    expected = {"query", "demo", "retrain", "train", "campaign simulate", "models promote"}
    assert expected <= names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_names_every_option_in_full(path: tuple[str, ...], command: Any) -> None:
    text = _help(*path)
    assert text.startswith("Usage: ")
    assert f" {' '.join(path)} " in text.splitlines()[0] + " "
    for param in command.params:
        if param.param_type_name == "option":
            for name in [*param.opts, *param.secondary_opts]:
                found = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)
                assert found, f"{name} missing or cut in {path} --help"
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= WIDTH


def test_query_help_shows_long_option_names_at_80_columns() -> None:
    text = _help("query")
    for name in ("--crystal-system", "--exclude-elements", "--non-centrosymmetric",
                 "--centrosymmetric", "--max-e-above-hull", "--min-band-gap",
                 "--preset"):  # fmt: skip
        assert name in text.split()


@pytest.mark.parametrize("path", [("demo",), ("retrain",), ("campaign", "simulate")])
def test_docstring_is_one_reflowed_paragraph(path: tuple[str, ...]) -> None:
    """The docstring's own line breaks do not survive: its first paragraph is filled to width."""
    command = dict(COMMANDS)[path]
    callback = command.callback
    assert callback is not None
    first = inspect.getdoc(callback).split("\n\n")[0]  # type: ignore[union-attr]
    assert "\n" in first  # the source docstring is broken over lines
    lines = _help(*path).split("\n\n")[1].splitlines()  # the paragraph after "Usage:"
    assert " ".join(lines).split() == first.split()
    for line, nxt in itertools.pairwise(lines):  # every line is filled to the width
        assert len(line) + 1 + len(nxt.split()[0]) > WIDTH - 2, lines


def test_train_data_help_lists_every_data_source() -> None:
    words = " ".join(_help("train").split())
    for name, description in DATA_SOURCES.items():
        assert f"{name}: {' '.join(description.split())}" in words


def test_help_does_not_import_torch() -> None:
    """The console script's help never loads the model stack (it made every call slow)."""
    code = (
        "import sys\n"
        "from atomate2_gmt.cli.app import app\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(app, ['query', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = ('torch', 'e3nn', 'jobflow', 'atomate2.jobs', 'maggma')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
