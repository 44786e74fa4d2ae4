"""Phase lines of a real ABINIT run (Si ε∞, smoke preset): each dataset and perturbation is
reported while ABINIT runs, to the installed reporter or, without one, to the runner's log."""

from __future__ import annotations

import io
import logging

import pytest

from atomate2_gmt import progress

pytestmark = pytest.mark.slow


def test_si_dielectric_run_reports_its_phases(require_abinit, si_structure, tmp_path, caplog):
    from atomate2_gmt.dfpt.abinit import run_abinit_dfpt, smoke_settings

    stream = io.StringIO()
    with progress.reporting(mode="lines", stream=stream):
        doc = run_abinit_dfpt(si_structure, ["dielectric"], smoke_settings(), tmp_path / "a")
    assert doc.state == "successful", doc.error
    lines = stream.getvalue().splitlines()
    assert lines[0] == f"ABINIT DFPT of Si (dielectric) in {tmp_path / 'a'}: 3 datasets"
    assert "ABINIT dataset 1/3: ground state" in lines
    assert "ABINIT dataset 2/3: DDK" in lines
    ddk = [x for x in lines if x.startswith("ABINIT dataset 2/3 (DDK): perturbation")]
    assert ddk  # d/dk along the irreducible directions (one for cubic Si)
    assert ddk[0].endswith("d/dk along direction 1")
    assert "ABINIT dataset 3/3 (response): perturbation 1/1, electric field along direction 1" in (
        lines
    )
    assert "ABINIT calculation completed" in lines
    assert lines[-1].startswith("ABINIT DFPT of Si (dielectric) done in ")
    # the order of the phases is the order of the run
    order = [
        lines.index(x) for x in ("ABINIT dataset 1/3: ground state", "ABINIT dataset 2/3: DDK")
    ]
    assert order == sorted(order)

    # no reporter: the same lines go to the runner's logger (a jobflow-remote worker's log)
    with caplog.at_level(logging.INFO, logger="atomate2_gmt.dfpt.abinit.runner"):
        run_abinit_dfpt(si_structure, ["dielectric"], smoke_settings(), tmp_path / "b")
    assert "ABINIT dataset 1/3: ground state" in caplog.text
    assert "ABINIT calculation completed" in caplog.text
