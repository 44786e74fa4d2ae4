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
    assert "vacuum gap" in reasons["isolated"]
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
    # the good file is predicted and written; one unreadable input makes the exit status 1
    assert result.exit_code == 1, result.output
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


def test_out_of_memory_halves_the_batch_and_loses_nothing(monkeypatch, caplog):
    """An allocation failure on a batch: the batch size halves until it fits (the failing batch
    is retried at the smaller size, later batches keep it); the results are unchanged."""
    import torch

    from atomate2_gmt.model import predict as predict_module

    model = calibrated_model("dielectric", "float32")
    structures = [s for group in mp_by_system(3).values() for s in group]
    expected = atomate2_gmt.predict(structures, "dielectric", model=model, batch_size=16)
    original = predict_module._forward
    sizes: list[int] = []

    def small_device(net, crystals, device):
        sizes.append(len(crystals))
        if len(crystals) > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(net, crystals, device)

    monkeypatch.setattr(predict_module, "_forward", small_device)
    out = atomate2_gmt.predict(structures, "dielectric", model=model, batch_size=16)
    assert [r["state"] for r in out] == ["successful"] * len(structures)
    for a, b in zip(out, expected, strict=True):
        np.testing.assert_allclose(a["tensor"], b["tensor"], rtol=1e-5, atol=1e-6)
    assert sizes[:3] == [16, 8, 4]  # two failures, then every batch at 4
    assert max(sizes[2:]) == 4
    assert sum(sizes[2:]) == len(structures)
    assert "batch size now 4" in caplog.text


def test_a_crystal_too_large_for_memory_fails_alone(monkeypatch):

    from atomate2_gmt.model import predict as predict_module

    model = calibrated_model("dielectric", "float32")
    structures = [s for group in mp_by_system(1).values() for s in group]
    big = max(range(len(structures)), key=lambda i: len(structures[i]))
    original = predict_module._forward

    def no_room_for_the_big_one(net, crystals, device):
        if any(c.graph.n_atoms == len(structures[big]) for c in crystals):
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")
        return original(net, crystals, device)

    monkeypatch.setattr(predict_module, "_forward", no_room_for_the_big_one)
    out = atomate2_gmt.predict(structures, "dielectric", model=model, batch_size=4)
    n_big = sum(len(s) == len(structures[big]) for s in structures)
    assert sum(r["state"] == "failed" for r in out) == n_big
    assert "can't allocate memory" in out[big]["error"]
