"""``--project-dir`` (on the app or on the command) reaches every store a screening uses: the
candidate store and the model registry, without touching the environment."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from atomate2_gmt.cli.app import app
from atomate2_gmt.model.checkpoint import save_checkpoint
from atomate2_gmt.settings import GMTSettings
from atomate2_gmt.stores import candidate_store
from tests.screening.conftest import small_model

runner = CliRunner()


@pytest.fixture
def cif_folder(tmp_path, good_structures):
    folder = tmp_path / "candidates"
    folder.mkdir()
    for i, s in enumerate(good_structures[:3]):
        s.to(filename=str(folder / f"c{i}_{s.composition.reduced_formula}.cif"))
    return folder


@pytest.mark.parametrize("where", ["app", "command"])
def test_project_dir_reaches_registry_and_store(where, cif_folder, project, tmp_path, monkeypatch):
    chosen = tmp_path / "chosen"
    checkpoint = tmp_path / "piezo.pt"
    save_checkpoint(checkpoint, small_model("piezo"), metadata={"version": "small-1"})
    monkeypatch.setenv("ATOMATE2_GMT_MODELS", json.dumps({"piezo": "registry"}))

    def invoke(*args: str) -> str:
        option = ["--project-dir", str(chosen)]
        full = [*option, *args] if where == "app" else [*args, *option]
        result = runner.invoke(app, full)
        assert result.exit_code == 0, result.output
        return result.output

    # `models` takes the app's --project-dir (it has no option of its own)
    for args in (["register", str(checkpoint), "--task", "piezo"], ["promote", "piezo-v1"]):
        extra = ["--reason", "test"] if args[0] == "promote" else []
        out = runner.invoke(app, ["--project-dir", str(chosen), "models", *args, *extra])
        assert out.exit_code == 0, out.output

    output = invoke("screen", str(cif_folder), "--tasks", "piezo")
    assert "screened 3 candidates: 3 predicted, 0 failed" in output

    rows = json.loads(
        invoke("query", "--property", "piezo", "--format", "json", "--include-metals")
    )
    assert len(rows) == 3
    assert {r["model_version"] for r in rows} == {"piezo-v1"}  # the registry of `chosen`
    store = candidate_store(GMTSettings(PROJECT_DIR=chosen))
    assert Path(store.path).is_file()
    store.connect()
    try:
        assert store.count() == 3
    finally:
        store.close()
    assert not project.exists()  # the settings' own PROJECT_DIR was never used
    assert os.environ["ATOMATE2_GMT_PROJECT_DIR"] == str(project)


def test_command_project_dir_overrides_app_project_dir(cif_folder, small_models, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    result = runner.invoke(
        app,
        ["--project-dir", str(first), "screen", str(cif_folder), "--tasks", "dielectric",
         "--project-dir", str(second)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert Path(candidate_store(GMTSettings(PROJECT_DIR=second)).path).is_file()
    assert not first.exists()
    empty = runner.invoke(app, ["--project-dir", str(first), "query", "-p", "dielectric"])
    assert empty.exit_code == 1
    assert f"no prediction store at {first}" in empty.output


@pytest.fixture
def small_models(tmp_path, monkeypatch, project):
    path = tmp_path / "dielectric.pt"
    save_checkpoint(path, small_model("dielectric"), metadata={"version": "cli-1"})
    monkeypatch.setenv("ATOMATE2_GMT_MODELS", json.dumps({"dielectric": str(path)}))
    return path
