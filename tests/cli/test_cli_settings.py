"""One settings object per ``atomate2-gmt`` invocation: built on first use from the environment
and ``--project-dir``, reused by the command, never written back to the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import atomate2_gmt.cli as cli_package
from atomate2_gmt.cli import context
from atomate2_gmt.cli.app import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_env(tmp_path, monkeypatch):
    for name in ("PROJECT_DIR", "CONFIG_FILE", "MONGO_URI", "DEVICE", "MODELS"):
        monkeypatch.delenv(f"ATOMATE2_GMT_{name}", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.atomate2_gmt.yaml


def test_settings_are_built_once_and_the_command_option_wins(tmp_path, monkeypatch):
    built: list[Path | None] = []
    original = context._build_settings

    def counting(project_dir):
        built.append(project_dir)
        return original(project_dir)

    monkeypatch.setattr(context, "_build_settings", counting)
    state = context.CLIState(project_dir=tmp_path / "app")
    first = state.settings()
    assert state.settings() is first
    assert tmp_path / "app" == first.PROJECT_DIR
    assert built == [tmp_path / "app"]
    assert state.settings(tmp_path / "app") is first  # the same folder: nothing rebuilt
    second = state.settings(tmp_path / "cmd")
    assert tmp_path / "cmd" == second.PROJECT_DIR
    assert built == [tmp_path / "app", tmp_path / "cmd"]
    assert Path("./gmt_project") == context.cli_settings(None).PROJECT_DIR


def test_global_project_dir_reaches_a_subcommand_group(tmp_path):
    result = runner.invoke(app, ["--project-dir", str(tmp_path / "p"), "models", "list"])
    assert result.exit_code == 0, result.output
    assert "0 registered model version(s)" in result.output
    assert (tmp_path / "p").is_dir()  # the embedded registry was made there
    assert not (tmp_path / "gmt_project").exists()


def test_mongo_status_uses_the_global_project_dir(tmp_path):
    result = runner.invoke(app, ["--project-dir", str(tmp_path / "p"), "mongo", "status"])
    assert result.exit_code == 3, result.output
    assert f"no local MongoDB server for {tmp_path / 'p'}" in result.output


def test_invalid_settings_exit_2_with_the_reason_and_no_secret(monkeypatch):
    monkeypatch.setenv("ATOMATE2_GMT_DEVICE", "gpu")
    monkeypatch.setenv("ATOMATE2_GMT_MONGO_URI", "mongodb://alice:hunter2secret@db.example/x")
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == context.SETTINGS_ERROR_EXIT
    assert "Error: invalid settings" in result.output
    assert "DEVICE must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got 'gpu'" in result.output
    assert "hunter2secret" not in result.output
    assert "Traceback" not in result.output
    # a command that needs no settings still runs
    assert runner.invoke(app, ["version"]).exit_code == 0


def test_a_command_mounted_on_another_app_builds_its_own_settings(tmp_path, monkeypatch):
    from atomate2_gmt.cli.query import query_command

    other = typer.Typer()
    other.command()(query_command)
    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(tmp_path / "env"))
    result = runner.invoke(other, ["-p", "piezo"])
    assert result.exit_code == 1
    assert f"no prediction store at {tmp_path / 'env'}" in result.output


def _environment_writes(tree: ast.AST) -> list[int]:
    """Lines that assign to, delete from or call a mutating method of ``os.environ``, or call
    ``os.putenv``/``os.unsetenv``."""

    def is_environ(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ"

    lines = []
    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
        if any(isinstance(t, ast.Subscript) and is_environ(t.value) for t in targets):
            lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            mutating = ("update", "setdefault", "pop", "popitem", "clear", "__setitem__")
            if (func.attr in mutating and is_environ(func.value)) or func.attr in (
                "putenv",
                "unsetenv",
            ):
                lines.append(node.lineno)
    return lines


def test_the_cli_never_writes_the_environment():
    assert _environment_writes(ast.parse("import os\nos.environ['A'] = '1'\n")) == [2]
    assert _environment_writes(ast.parse("import os\nos.environ.setdefault('A', '1')\n")) == [2]
    folder = Path(cli_package.__file__).parent
    found = {
        path.name: lines
        for path in sorted(folder.glob("*.py"))
        if (lines := _environment_writes(ast.parse(path.read_text())))
    }
    assert found == {}


def test_the_screen_passes_its_settings_as_maker_fields(tmp_path, monkeypatch):
    """The local screening maker is a plain GMTPredictMaker: the invocation's settings reach
    it as fields (models, device, batch size, symprec, project folder), so its jobs resolve the
    same settings where they run; no subclass carries them."""
    from atomate2_gmt.cli.screen import _predict_maker
    from atomate2_gmt.jobs.predict import GMTPredictMaker
    from atomate2_gmt.settings import resolve_settings

    monkeypatch.setenv("ATOMATE2_GMT_DEVICE", "cpu")
    settings = resolve_settings(tmp_path / "proj")
    maker = _predict_maker(settings, batch_size=7)
    assert type(maker) is GMTPredictMaker
    assert maker.project_dir == str(tmp_path / "proj")
    assert (maker.device, maker.batch_size, maker.symprec) == ("cpu", 7, settings.SYMPREC)
    assert maker.models == settings.MODELS
    assert tmp_path / "proj" == maker.settings().PROJECT_DIR  # what its jobs resolve
    assert maker.settings().DEVICE == "cpu"
    assert "project_dir" in maker.as_dict()  # a path in the job document, no credentials


def test_only_the_edges_build_settings():
    """The package reads its settings in one function; no module builds GMTSettings itself."""
    src = Path(cli_package.__file__).parents[1]
    offenders = []
    for path in sorted(src.rglob("*.py")):
        if path.name == "settings.py" and path.parent == src:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "GMTSettings"
            ):
                offenders.append(f"{path.relative_to(src)}:{node.lineno}")
    assert not offenders, offenders
