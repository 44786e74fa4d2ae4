"""``atomate2-gmt predict`` with a bad --model, --device, --batch-size or --task: one ``Error:``
line and exit code 2, never a traceback."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from atomate2_gmt.cli.app import app


@pytest.fixture
def poscar(tmp_path: Path) -> Path:
    """Rock-salt NaCl, a = 5.64 Å."""
    s = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    path = tmp_path / "POSCAR"
    s.to(filename=str(path), fmt="poscar")
    return path


class _System:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.sentinel}",))


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["predict", *args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def test_bad_models_are_an_error_line(poscar: Path, tmp_path: Path) -> None:
    code, out = _run(str(poscar), "--task", "dielectric", "--model", str(tmp_path / "none.pt"))
    assert code == 2
    assert f"Error: checkpoint not found: {tmp_path / 'none.pt'}" in out

    junk = tmp_path / "junk.pt"
    junk.write_bytes(random.Random(0).randbytes(2048))
    code, out = _run(str(poscar), "--task", "dielectric", "--model", str(junk))
    assert code == 2
    assert f"Error: {junk}: corrupt or truncated checkpoint, or not a checkpoint at all" in out

    sentinel = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "atomate2-gmt-checkpoint", "x": _System(sentinel)}, evil)
    code, out = _run(str(poscar), "--task", "dielectric", "--model", str(evil))
    assert code == 2
    assert f"Error: {evil}: refused: the checkpoint asks for objects that are not plain" in out
    assert "weights_only" not in out
    assert not sentinel.exists()


def test_a_model_for_another_task_is_an_error_line(poscar: Path) -> None:
    from atomate2_gmt.pretrained import pretrained_path

    piezo = pretrained_path("piezo")
    code, out = _run(str(poscar), "--task", "dielectric", "--model", str(piezo))
    assert code == 2
    assert "checkpoint is for task 'piezo', not 'dielectric'" in out


def test_bad_devices_batch_sizes_and_tasks_are_an_error_line(poscar: Path) -> None:
    code, out = _run(str(poscar), "--task", "dielectric", "--device", "bogus")
    assert code == 2
    assert "Error: unknown device 'bogus'; use auto, cpu, cuda, cuda:N or mps" in out

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    code, out = _run(str(poscar), "--task", "dielectric", "--device", f"cuda:{n}")
    assert code == 2
    if n == 0:
        assert f"Error: device 'cuda:{n}': no CUDA device is available here" in out
    else:
        assert f"this machine has {n} CUDA device(s)" in out

    code, out = _run(str(poscar), "--task", "dielectric", "--device", "meta")
    assert code == 2
    assert "Error: device 'meta' is not supported" in out

    for bad in ("0", "-3", "many"):
        code, out = _run(str(poscar), "--task", "dielectric", "--batch-size", bad)
        assert code == 2
        assert "Invalid value for '--batch-size'" in out

    code, out = _run(str(poscar), "--task", "bandgap")
    assert code == 2
    assert "Error: unknown task 'bandgap'; valid tasks: dielectric" in out


def test_good_options_still_predict(poscar: Path) -> None:
    code, out = _run(str(poscar), "--task", "dielectric", "--device", "cpu", "-q")
    assert code == 0
    assert "successful" in out


def test_unreadable_inputs_are_listed_and_exit_1(poscar: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.cif"
    broken.write_text("data_x\n_cell_length_a 3\n")
    code, out = _run(str(poscar), str(broken), "--task", "dielectric", "--device", "cpu", "-q")
    assert code == 1
    assert "1 of 2 inputs could not be predicted:" in out
    assert f"{broken}: cannot read broken.cif: unreadable structure file" in out
    assert "successful" in out  # the readable one is still predicted and shown


def test_a_summary_collection_is_predicted_record_by_record(tmp_path: Path) -> None:
    import gzip
    import json

    from tests.structures import NACL, ZNO

    path = tmp_path / "summary.json.gz"
    docs = [
        {"material_id": "mp-2133", "structure": ZNO.as_dict(), "band_gap": 0.73},
        {"material_id": "bad-1", "structure": {"lattice": 1}},
        {"material_id": "mp-22862", "structure": NACL.as_dict()},
    ]
    with gzip.open(path, "wt") as fh:
        json.dump(docs, fh)
    out_json = tmp_path / "out.json"
    code, out = _run(
        str(path), "--task", "dielectric", "--device", "cpu", "-q", "--json", str(out_json)
    )
    assert code == 1
    assert "1 of 3 inputs could not be predicted:" in out
    assert "bad-1: cannot read bad-1: record 1 of summary.json.gz" in out
    rows = json.loads(out_json.read_text())
    assert [(r["file"], r["state"]) for r in rows] == [
        ("mp-2133", "successful"),
        ("bad-1", "failed"),
        ("mp-22862", "successful"),
    ]
    assert rows[0]["formula"] == "ZnO"
