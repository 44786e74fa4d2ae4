"""custodian handlers on real ABINIT output, and a live recovery of an unconverged SCF."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from atomate2_gmt.dfpt.abinit.custodian import (
    AbinitJob,
    AbinitKpointSymmetryHandler,
    AbinitScfHandler,
)
from atomate2_gmt.dfpt.abinit.inputs import get_variable

DATA = Path(__file__).parent / "data" / "abinit"


def _copy(case: str, dest: Path) -> Path:
    for path in (DATA / case).iterdir():
        shutil.copy(path, dest / path.name)
    return dest


def test_scf_handler_check_and_correct(tmp_path):
    d = _copy("scf_not_converged", tmp_path)
    handler = AbinitScfHandler(max_nstep=12)
    assert handler.check(str(d))
    assert not AbinitKpointSymmetryHandler().check(str(d))
    result = handler.correct(str(d))
    assert result["actions"][0]["action"] == {"_set": {"nstep": 6}}
    assert get_variable((d / "run.abi").read_text(), "nstep") == "6"
    assert not (d / "run.abo").exists()
    assert (d / "run.abo.err1").exists()
    assert not handler.check(str(d))  # old output moved aside
    # at max_nstep: switch the mixing, then give up
    shutil.copy(DATA / "scf_not_converged" / "run.abo", d / "run.abo")
    handler.correct(str(d))  # 12
    shutil.copy(DATA / "scf_not_converged" / "run.abo", d / "run.abo")
    result = handler.correct(str(d))
    text = (d / "run.abi").read_text()
    assert get_variable(text, "iscf") == "17"
    assert float(get_variable(text, "diemac")) == 48.0
    shutil.copy(DATA / "scf_not_converged" / "run.abo", d / "run.abo")
    assert handler.correct(str(d))["actions"] is None


def test_kgrid_handler_check_and_correct(tmp_path):
    d = _copy("kgrid_not_symmetric", tmp_path)
    handler = AbinitKpointSymmetryHandler()
    assert handler.check(str(d))
    assert not AbinitScfHandler().check(str(d))
    handler.correct(str(d))
    text = (d / "run.abi").read_text()
    assert get_variable(text, "shiftk") == "0 0 0"
    assert get_variable(text, "nshiftk") == "1"


@pytest.mark.slow
def test_custodian_recovers_unconverged_scf(tmp_path, require_abinit):
    """Real ABINIT with nstep 3: the handler doubles nstep until every cycle converges."""
    from custodian import Custodian

    from atomate2_gmt.dfpt.abinit.parse import parse_abinit_output

    shutil.copy(DATA / "scf_not_converged" / "run.abi", tmp_path / "run.abi")
    c = Custodian(
        [AbinitScfHandler(max_nstep=48)],
        [AbinitJob()],
        max_errors=5,
        directory=str(tmp_path),
        gzipped_output=False,
        checkpoint=False,
    )
    corrections = c.run()
    summary = parse_abinit_output(tmp_path / "run.abo", tmp_path / "log")
    assert summary.completed
    assert not summary.unconverged
    assert corrections
    assert int(get_variable((tmp_path / "run.abi").read_text(), "nstep")) > 3
