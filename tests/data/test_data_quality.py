"""Production quality of DFPT accuracy settings: what may become training data."""

from __future__ import annotations

from dataclasses import replace

from atomate2_gmt.data.quality import production_problems
from atomate2_gmt.dfpt.abinit.settings import AbinitDFPTSettings, smoke_settings


def test_default_abinit_settings_are_production_quality():
    assert production_problems(AbinitDFPTSettings().to_dict(), "abinit") == []
    assert production_problems({}, "vasp") == []  # VASP INCAR keys carry no preset


def test_the_smoke_preset_is_not_and_says_why():
    problems = production_problems(smoke_settings(functional="LDA").to_dict(), "abinit")
    assert problems[0] == "computed with the 'smoke' preset, not production quality"
    assert any("ecut 20 Ha is below the production floor 30" in p for p in problems)
    assert any("tolvrs_rf 1e-07" in p for p in problems)


def test_loose_settings_without_a_preset_name_are_caught_too():
    loose = replace(AbinitDFPTSettings(), kpt_spacing=0.55)
    assert production_problems(loose.to_dict(), "abinit") == [
        "k-point spacing 0.55 1/Å is above the production 0.3"
    ]


def test_a_vasp_result_whose_kpoint_spacing_cannot_be_read_is_not_production():
    """An explicit (non-automatic) or empty k-point record gives no spacing: refused, as are
    non-numeric ENCUT/EDIFF; a Monkhorst-Pack mesh on the result's lattice is measured."""
    from tests.structures import NACL

    base = {"ENCUT": 680, "EDIFF": 1e-5}
    unreadable = production_problems({**base, "kpoints": {}}, "vasp", NACL)
    assert any("k-point spacing cannot be determined" in p for p in unreadable)
    explicit = {"generation_style": "Reciprocal", "kpoints": [[0.0, 0.0, 0.0]]}
    assert any(
        "cannot be determined" in p
        for p in production_problems({**base, "kpoints": explicit}, "vasp", NACL)
    )
    assert production_problems({**base, "ENCUT": "high", "KSPACING": 0.2}, "vasp", NACL) == [
        "ENCUT 'high' is not a number"
    ]
    dense = {"generation_style": "Monkhorst", "kpoints": [[8, 8, 8]]}
    assert production_problems({**base, "kpoints": dense}, "vasp", NACL) == []
