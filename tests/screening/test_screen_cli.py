"""``atomate2-gmt screen`` / ``show`` on real files, with small models put in by settings."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from atomate2_gmt.cli.app import app
from atomate2_gmt.model.checkpoint import save_checkpoint
from tests.screening.conftest import small_model

runner = CliRunner()


@pytest.fixture
def cif_folder(tmp_path, good_structures):
    folder = tmp_path / "candidates"
    folder.mkdir()
    for i, s in enumerate(good_structures[:5]):
        s.to(filename=str(folder / f"c{i}_{s.composition.reduced_formula}.cif"))
    (folder / "broken.cif").write_text("not a cif")
    return folder


@pytest.fixture
def small_models(tmp_path, monkeypatch):
    paths = {}
    for task in ("dielectric", "piezo"):
        paths[task] = tmp_path / f"{task}.pt"
        save_checkpoint(paths[task], small_model(task), metadata={"version": "cli-1"})
    models = {task: str(path) for task, path in paths.items()}
    monkeypatch.setenv("ATOMATE2_GMT_MODELS", json.dumps(models))
    return paths


def test_screen_then_query_then_show(cif_folder, small_models, project):
    result = runner.invoke(app, ["screen", str(cif_folder), "--tasks", "dielectric,piezo"])
    assert result.exit_code == 0, result.output
    assert "screened 6 candidates: 5 predicted, 1 failed" in result.output
    assert "failed: broken.cif: unreadable structure file" in result.output
    # Na, Li and TiIr are likely metals: left out of the piezo ranking, and said so
    assert "top 2 candidates: piezo" in result.output
    assert "3 likely metals (docs/screening.md) are left out of the dielectric, piezo" in (
        result.output
    )

    result = runner.invoke(app, ["query", "--property", "piezo", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert sorted(r["formula"] for r in json.loads(result.output)) == ["BAs", "SiOs"]
    result = runner.invoke(
        app, ["query", "--property", "piezo", "--format", "json", "--include-metals"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 5
    assert sum(r["likely_metal"] for r in rows) == 3
    assert rows[0]["model_version"] == "cli-1"

    source = rows[0]["source"]
    picture = project / "pic.png"
    result = runner.invoke(app, ["show", source, "--picture", str(picture)])
    assert result.exit_code == 0, result.output
    assert "piezo (C/m^2), Voigt xx,yy,zz,yz,xz,xy" in result.output
    assert "e_ij_max (C/m²) = " in result.output  # units, and the missing σ is said
    assert "σ n/a (single model)" in result.output
    assert "source values: band_gap not given, energy_above_hull not given" in result.output
    assert picture.read_bytes()[:4] == b"\x89PNG"


def test_show_unknown_key_and_screen_missing_folder(small_models, project, tmp_path):
    result = runner.invoke(app, ["screen", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "neither a folder nor a file" in result.output
    result = runner.invoke(app, ["show", "no-such-key"])
    assert result.exit_code == 2
    assert "no prediction document" in result.output


def test_show_a_file_predicts_on_demand_or_finds_its_crystal(
    cif_folder, small_models, project, tmp_path
):
    cif = sorted(cif_folder.glob("c0_*.cif"))[0]
    result = runner.invoke(app, ["show", str(cif), "--picture", str(tmp_path / "a.png")])
    assert result.exit_code == 0, result.output
    assert f"{cif.name} is not in the store: predicted on demand, not stored" in result.output
    assert "dielectric (dimensionless), Voigt" in result.output
    # nothing was stored by show
    assert runner.invoke(app, ["show", cif.name]).exit_code == 2
    result = runner.invoke(app, ["screen", str(cif_folder), "--tasks", "dielectric,piezo", "-q"])
    assert result.exit_code == 0, result.output
    copy = tmp_path / "renamed.cif"
    copy.write_text(cif.read_text())
    result = runner.invoke(app, ["show", str(copy), "--picture", str(tmp_path / "b.png")])
    assert result.exit_code == 0, result.output
    assert f"renamed.cif: the same crystal as the stored {cif.name}" in result.output
    assert "not of renamed.cif" in " ".join(result.output.split())
    result = runner.invoke(app, ["show", str(cif_folder / "broken.cif")])
    assert result.exit_code == 1
    assert "cannot read" in result.output
