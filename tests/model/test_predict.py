"""The prediction API: output contract, frames, and per-structure failures in a batch."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Molecule, Structure
from typer.testing import CliRunner

import atomate2_gmt
from atomate2_gmt.cli.app import app
from atomate2_gmt.model.checkpoint import save_checkpoint
from atomate2_gmt.tensors.conventions import voigt_to_full
from tests.model.conftest import calibrated_model, mp_by_system, prototypes


def _bad_inputs():
    return {
        "molecule": Molecule(["H", "H"], [[0, 0, 0], [0, 0, 0.74]]),
        "disordered": Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]]),
        "nan": Structure(Lattice.cubic(3), ["Fe"], [[np.nan, 0, 0]]),
        "isolated": Structure(Lattice.cubic(80.0), ["Fe"], [[0, 0, 0]]),
        "unknown": Structure(Lattice.cubic(5), ["Og"], [[0, 0, 0]]),
    }


def test_bad_structures_fail_alone_and_the_rest_is_predicted():
    model = calibrated_model("elastic", "float32")
    good = [prototypes()["rocksalt_NaCl"], mp_by_system(2)["triclinic"][0]]
    bad = _bad_inputs()
    structures = [good[0], *bad.values(), good[1]]
    out = atomate2_gmt.predict(structures, "elastic", model=model, batch_size=2)
    assert [r["state"] for r in out] == ["successful"] + ["failed"] * len(bad) + ["successful"]
    reasons = {name: r["error"] for name, r in zip(bad, out[1:-1], strict=True)}
    assert "molecule" in reasons["molecule"]
    assert "disordered" in reasons["disordered"]
    assert "NaN" in reasons["nan"]
    assert "neighbours" in reasons["isolated"]
    assert "unknown element" in reasons["unknown"]
    for r in (out[0], out[-1]):
        assert r["error"] is None
        T = np.array(r["tensor"])
        assert T.shape == (3, 3, 3, 3)
        assert np.allclose(voigt_to_full(np.array(r["voigt"]), "elastic"), T)


def test_large_cell_is_predicted():
    model = calibrated_model("dielectric", "float32")
    big = prototypes()["rocksalt_NaCl"].to_conventional() * (5, 5, 5)  # 500 atoms
    small = prototypes()["rocksalt_NaCl"]
    out = atomate2_gmt.predict([big, small], "dielectric", model=model)
    assert [r["state"] for r in out] == ["successful", "successful"]
    assert np.allclose(out[0]["tensor"], out[1]["tensor"], rtol=1e-4)


def test_cli_predict_reads_files_and_writes_json(tmp_path):
    model = calibrated_model("piezo", "float32")
    ckpt = save_checkpoint(tmp_path / "piezo.pt", model)
    zno = prototypes()["wurtzite_ZnO"]
    zno.to(filename=str(tmp_path / "ZnO.cif"))
    (tmp_path / "broken.cif").write_text("this is not a CIF")
    out = tmp_path / "out.json"
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(tmp_path / "ZnO.cif"),
            str(tmp_path / "broken.cif"),
            "--task",
            "piezo",
            "--model",
            str(ckpt),
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["state"] for r in rows] == ["successful", "failed"]
    assert rows[0]["file"].endswith("ZnO.cif")
    assert rows[1]["file"].endswith("broken.cif")
    e = np.array(rows[0]["voigt"])
    assert e.shape == (3, 6)
    assert np.abs(e[2, 2]) > 0
    assert "ZnO" in result.output


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown task 'magnetic'"):
        atomate2_gmt.predict([prototypes()["bcc_Fe"]], "magnetic")
