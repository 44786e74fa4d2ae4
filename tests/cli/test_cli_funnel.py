"""``atomate2-gmt screen --relax-top``: the relaxation funnel from the command line, with the
shipped models and real CHGNet relaxations of two stretched crystals."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from atomate2_gmt.cli.app import app
from tests.structures import NACL, ZNO


@pytest.mark.slow
def test_screen_relax_top_ranks_relaxed_documents(tmp_path, monkeypatch):
    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(tmp_path / "project"))
    monkeypatch.setenv("HOME", str(tmp_path))
    paths = []
    for name, structure in (("NaCl", NACL), ("ZnO", ZNO)):
        stretched = structure.copy()
        stretched.scale_lattice(structure.volume * 1.2)
        paths.append(tmp_path / f"{name}.cif")
        stretched.to(filename=str(paths[-1]))
    folder = tmp_path / "in"
    folder.mkdir()
    for p in paths:
        p.rename(folder / p.name)
    result = CliRunner().invoke(
        app, ["screen", str(folder), "--tasks", "elastic", "--relax-top", "2", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "relaxation funnel (CHGNet 0.3.0 through atomate2's ForceFieldRelaxMaker): 2 " in (
        result.stdout.replace("\n", " ")
    )
    assert "will run on" not in result.stdout  # CHGNet's own prints stay out
    assert "initialized with" not in result.stdout
    rows = json.loads(
        CliRunner().invoke(app, ["query", "--property", "elastic", "--format", "json"]).stdout
    )
    assert len(rows) == 2  # one row per crystal: the relaxed documents
    for row in rows:
        assert row["relaxed"] == "CHGNet 0.3.0"
        assert row["energy_above_hull"] is None  # files give no source hull energy
        assert row["hypothetical"] is None
        # the MLIP estimate against the shipped Na-Cl / Zn-O phases, labelled as such
        assert row["stability_source"].startswith("MLIP estimate: CHGNet 0.3.0 vs ")
        assert abs(row["mlip_energy_above_hull"]) < 0.1  # the ground states, near the hull
