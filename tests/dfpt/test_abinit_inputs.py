"""ABINIT backend: settings, perturbation choice, input text, pseudopotentials (no ABINIT run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from atomate2_gmt.dfpt.abinit import (
    AbinitDFPTSettings,
    MissingPseudopotentialError,
    find_pseudos,
    perturbations_for,
    run_abinit_dfpt,
    smoke_settings,
)
from atomate2_gmt.dfpt.abinit.anaddb import anaddb_input
from atomate2_gmt.dfpt.abinit.inputs import (
    BOHR_TO_ANG,
    FCC_SHIFTS,
    get_variable,
    k_shifts,
    make_dfpt_input,
    set_variable,
)

PSP = Path("/usr/share/abinit/psp")
needs_psp = pytest.mark.skipif(not PSP.is_dir(), reason="abinit-data not installed")


def test_dielectric_only_does_not_pay_for_strain_or_phonons():
    p = perturbations_for(["dielectric"])
    assert (p.ddk, p.efield, p.phonon, p.strain) == (True, True, False, False)
    p = perturbations_for(["dielectric_total"])
    assert (p.efield, p.phonon, p.strain) == (True, True, False)
    p = perturbations_for(["elastic"])
    assert (p.ddk, p.efield, p.phonon, p.strain) == (False, False, True, True)
    p = perturbations_for(["piezo"])
    assert (p.ddk, p.efield, p.phonon, p.strain) == (True, True, True, True)
    with pytest.raises(ValueError, match="valid"):
        perturbations_for(["magnetic"])


def test_anaddb_flags_follow_perturbations():
    assert "dieflag 2" in anaddb_input(perturbations_for(["dielectric"]))
    assert "elaflag" not in anaddb_input(perturbations_for(["dielectric_total"]))
    text = anaddb_input(perturbations_for(["piezo"]))
    assert all(f in text for f in ("dieflag 1", "elaflag 3", "piezoflag 3", "instrflag 1"))
    assert "piezoflag" not in anaddb_input(perturbations_for(["elastic"]))


def test_settings_grid_and_validation():
    s = AbinitDFPTSettings(kpt_spacing=0.5)
    assert s.ngkpt((2.0, 1.0, 0.2)) == (4, 2, 1)
    assert smoke_settings().preset == "smoke"
    assert smoke_settings(ecut=25).ecut == 25
    with pytest.raises(ValueError, match="functional"):
        AbinitDFPTSettings(functional="HSE")


def test_kgrid_shifts_fcc_any_orientation(si_structure, rotation_matrix):
    assert k_shifts(si_structure) == FCC_SHIFTS
    rotated = Structure(
        Lattice(si_structure.lattice.matrix @ rotation_matrix([1, 2, 3], 37).T),
        si_structure.species,
        si_structure.frac_coords,
    )
    assert k_shifts(rotated) == FCC_SHIFTS
    hexagonal = Structure(
        Lattice.hexagonal(3.1, 5.0), ["Al", "N"], [[0, 0, 0], [1 / 3, 2 / 3, 0.5]]
    )
    assert k_shifts(hexagonal) == ("0 0 0",)


@needs_psp
def test_input_keeps_the_frame_and_selects_datasets(si_structure):
    pseudos = find_pseudos(["Si"])
    text = make_dfpt_input(
        si_structure, pseudos, perturbations_for(["dielectric"]), smoke_settings()
    ).text
    assert "rfstrs" not in text
    assert "rfphon" not in text
    assert "rfelfd3 3" in text
    assert "rfelfd2 2" in text
    assert "ndtset 3" in text
    lines = text.splitlines()
    i = lines.index("rprim")
    rprim = np.array([[float(x) for x in lines[i + k].split()] for k in (1, 2, 3)])
    np.testing.assert_allclose(rprim * BOHR_TO_ANG, si_structure.lattice.matrix, atol=1e-12)
    elastic = make_dfpt_input(
        si_structure, pseudos, perturbations_for(["elastic"]), smoke_settings()
    ).text
    assert "rfstrs2 3" in elastic
    assert "rfphon2 1" in elastic
    assert "rfelfd" not in elastic


def test_set_and_get_variable():
    text = "nstep 30\ndiemac 12\nnstep2 5\n"
    text = set_variable(text, "nstep", 60)
    assert get_variable(text, "nstep") == "60"
    assert "nstep2 5" in text
    assert get_variable(set_variable(text, "iscf", 17), "iscf") == "17"


@needs_psp
def test_pseudopotentials_have_checksums_and_valence():
    pseudos = find_pseudos(["Al", "P"], functional="LDA")
    assert pseudos["Al"].z_valence == 3.0
    assert pseudos["P"].z_valence == 5.0
    info = pseudos["Al"].as_dict()
    assert info["file"] == "Al.psp8"
    assert len(str(info["sha256"])) == 64
    assert "pw_standard" in str(info["table"])


@needs_psp
def test_missing_pseudopotential_fails_early_naming_the_element(tmp_path, monkeypatch):
    cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(MissingPseudopotentialError, match="Cs, Cl"):
        find_pseudos(["Cs", "Cl"])

    def no_process(*args, **kwargs):
        raise AssertionError("ABINIT must not be started")

    monkeypatch.setattr("subprocess.Popen", no_process)
    doc = run_abinit_dfpt(cscl, ["dielectric"], smoke_settings(), tmp_path)
    assert doc.state == "failed"
    assert "Cs" in doc.error
    assert "Cl" in doc.error
    assert doc.tensors == {}
    assert not (tmp_path / "run.abi").exists()
