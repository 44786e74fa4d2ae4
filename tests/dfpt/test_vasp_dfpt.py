"""VASP DFPT backend: atomate2 DielectricMaker under fake VASP on real reference calculations.

Reference runs (tests/dfpt/data/vasp, provenance in PROVENANCE.tsv there): Si (VASP 6.2.1,
IBRION=8), NaCl (VASP 6, IBRION=8), Zn3P2S8 (VASP 5.4.4, LEPSILON with IBRION=-1: electronic
parts only), SiC (OUTCAR only, parser tests).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jobflow import run_locally
from pymatgen.core import Structure
from pymatgen.io.vasp import Outcar

from atomate2_gmt.dfpt.vasp import VaspDFPTMaker, dfpt_doc_from_vasp, read_outcar_lepsilon
from atomate2_gmt.schemas.dfpt import DFPTResultDoc
from atomate2_gmt.tensors.conventions import full_to_voigt, rotate
from atomate2_gmt.tensors.symmetry import point_group_info, projector

pytest.importorskip("atomate2")

DATA = Path(__file__).parent / "data" / "vasp"


def _poscar(case: str) -> Structure:
    folder = DATA / case / "inputs"
    path = folder / "POSCAR.gz" if (folder / "POSCAR.gz").exists() else folder / "POSCAR"
    return Structure.from_file(path)


@pytest.fixture
def mock_vasp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[..., None]]:
    """atomate2's fake VASP (reference folder found by job name), run in ``tmp_path``."""
    from atomate2.utils.testing.vasp import monkeypatch_vasp

    monkeypatch.chdir(tmp_path)
    yield from monkeypatch_vasp(monkeypatch, DATA)


def _run(flow: Any) -> DFPTResultDoc:
    responses = run_locally(flow, create_folders=True, ensure_success=False)
    out = responses[flow.jobs[-1].uuid][1].output
    assert isinstance(out, DFPTResultDoc)
    return out


def _invariance_residual(tensor: np.ndarray, structure: Structure, kind: str) -> float:
    p = projector(kind, point_group_info(structure))
    flat = tensor.reshape(-1)
    return float(np.linalg.norm(flat - p @ flat) / max(np.linalg.norm(flat), 1e-30))


# atomate2 0.1.5's StaticSetGenerator defaults (GGA = PS, ALGO, SIGMA, LREAL, LELF) differ from
# those of the reference runs; the fake run checks the keys that define the DFPT calculation.
DFPT_KEYS = ["LEPSILON", "IBRION", "LPEAD", "NSW", "ENCUT", "EDIFF", "PREC", "ISMEAR", "ISPIN"]
CHECK = {"dielectric": {"incar_settings": DFPT_KEYS}}


def _si_maker() -> VaspDFPTMaker:
    maker = VaspDFPTMaker()
    maker.dielectric_maker.input_set_generator.user_incar_settings["KSPACING"] = 0.5
    return maker


def test_si_dielectric_flow(mock_vasp: Callable[..., None]) -> None:
    mock_vasp({"dielectric": "Si_dielectric"}, CHECK)
    si = _poscar("Si_dielectric")
    flow = _si_maker().make(si, candidate_id="sk1-si:v1")
    doc = _run(flow)
    assert doc.state == "successful", doc.error
    assert doc.code == "vasp"
    assert doc.code_version == "6.2.1"
    assert doc.candidate_id == "sk1-si:v1"
    assert doc.job_uuid == flow.jobs[0].uuid
    eps = doc.tensor("dielectric_electronic")
    np.testing.assert_allclose(eps, 11.4154 * np.eye(3), atol=1e-4)
    # covalent Si: no ionic dielectric part, no Born charge, centrosymmetric → e = 0
    np.testing.assert_allclose(doc.tensor("dielectric_ionic"), 0.0, atol=1e-6)
    np.testing.assert_allclose(doc.tensor("dielectric_total"), eps, atol=1e-6)
    np.testing.assert_allclose(doc.tensor("piezo_total"), 0.0, atol=1e-6)
    assert np.asarray(doc.born_charges).shape == (2, 3, 3)
    # provenance
    assert doc.pseudopotentials["Si"]["titel"] == "PAW_PBE Si 05Jan2001"
    assert doc.settings["KSPACING"] == 0.5
    assert doc.settings["IBRION"] == 8
    assert doc.settings["LEPSILON"] is True
    assert doc.functional == "GGA"
    assert doc.wall_time_s == pytest.approx(117.369)
    assert doc.dir_name is not None
    assert (Path(doc.dir_name) / "OUTCAR.gz").exists()
    # the document's structure is the computed one (the tensors' frame)
    assert doc.get_structure().lattice == si.lattice
    assert doc.structure_key is not None
    assert doc.structure_key.startswith("sk1")


def test_nacl_ionic_part(mock_vasp: Callable[..., None]) -> None:
    mock_vasp(
        {"dielectric": "NaCl_phonons_dielectric"},
        {"dielectric": {"incar_settings": [*DFPT_KEYS, "GGA"]}},
    )
    nacl = _poscar("NaCl_phonons_dielectric")
    doc = _run(VaspDFPTMaker().make(nacl))
    assert doc.state == "successful", doc.error
    np.testing.assert_allclose(doc.tensor("dielectric_electronic"), 2.524485 * np.eye(3), atol=1e-6)
    np.testing.assert_allclose(doc.tensor("dielectric_ionic"), 4.206895 * np.eye(3), atol=1e-6)
    np.testing.assert_allclose(doc.tensor("dielectric_total"), 6.73138 * np.eye(3), atol=1e-5)
    born = np.asarray(doc.born_charges)
    assert born.shape == (8, 3, 3)
    # Na (sites 0-3) +1.10 e, Cl (4-7) -1.10 e, isotropic; acoustic sum rule Σ Z* = 0
    np.testing.assert_allclose(born[:4], 1.1033 * np.broadcast_to(np.eye(3), (4, 3, 3)), atol=1e-3)
    np.testing.assert_allclose(born.sum(axis=0), 0.0, atol=2e-3)
    assert doc.functional == "PBEsol"


def test_zn3p2s8_piezo_pattern(mock_vasp: Callable[..., None]) -> None:
    """P-4n2 (class -42m, -4m2 setting, 2-fold axes along x±y): e15 = -e24, e31 = -e32.

    The OUTCAR (VASP order xx,yy,zz,xy,yz,zx) has e[0][5] = 0.42154 (x, zx), e[1][4] = -0.42154
    (y, yz), e[2][0] = -e[2][1] = 0.57059.
    """
    mock_vasp(
        {"dielectric": "Zn3P2S8_lepsilon_aiida-vasp"},
        {"dielectric": {"check_inputs": ["poscar", "potcar"], "incar_settings": ["LEPSILON"]}},
    )
    zps = _poscar("Zn3P2S8_lepsilon_aiida-vasp")
    doc = _run(VaspDFPTMaker().make(zps))
    assert doc.state == "successful", doc.error
    # IBRION = -1: no ionic parts, so neither totals nor the training targets piezo / ε0
    assert set(doc.tensors) == {"dielectric_electronic", "piezo_electronic"}
    e = doc.tensor("piezo_electronic")
    assert e is not None
    ev = full_to_voigt(e, "piezo")
    expected = np.zeros((3, 6))
    expected[0, 4], expected[1, 3] = 0.42154, -0.42154  # e15 = -e24  (xz, yz)
    expected[2, 0], expected[2, 1] = 0.57059, -0.57059  # e31 = -e32
    np.testing.assert_allclose(ev, expected, atol=1e-5)
    np.testing.assert_allclose(
        np.diag(doc.tensor("dielectric_electronic")), [5.894056, 5.894056, 6.171821], atol=1e-6
    )
    info = point_group_info(zps)
    assert info.point_group == "-42m"  # spglib names the class; P-4n2 is its -4m2 setting
    assert _invariance_residual(e, zps, "piezo") < 1e-4
    # the same numbers read in the wrong (un-permuted) Voigt order break the crystal's symmetry
    from atomate2_gmt.tensors.conventions import voigt_to_full

    raw = np.zeros((3, 6))
    raw[0, 5], raw[1, 4], raw[2, 0], raw[2, 1] = 0.42154, -0.42154, 0.57059, -0.57059
    assert _invariance_residual(voigt_to_full(raw, "piezo"), zps, "piezo") > 0.3
    # 26 Born charges
    assert np.asarray(doc.born_charges).shape == (26, 3, 3)


def test_tensors_invariant_under_point_group(mock_vasp: Callable[..., None]) -> None:
    """Si: computed in a frame not aligned with the cubic axes; ε∞ and ε0 stay G-invariant."""
    mock_vasp({"dielectric": "Si_dielectric"}, CHECK)
    si = _poscar("Si_dielectric")
    doc = _run(_si_maker().make(si))
    s = doc.get_structure()
    assert point_group_info(s).point_group == "m-3m"
    for part in ("dielectric_electronic", "dielectric_total"):
        t = doc.tensor(part)
        assert t is not None
        assert _invariance_residual(t, s, "dielectric") < 1e-6


def test_failed_vasp_job_gives_failed_doc(mock_vasp: Callable[..., None]) -> None:
    """A VASP job that fails (here: fake VASP rejects the inputs) → a failed DFPTResultDoc."""
    mock_vasp({"dielectric": "Si_dielectric"})  # all INCAR keys checked: SIGMA etc. differ
    si = _poscar("Si_dielectric")
    doc = _run(VaspDFPTMaker().make(si, candidate_id="c1"))
    assert doc.state == "failed"
    assert doc.error is not None
    assert "no task document" in doc.error
    assert doc.tensors == {}
    assert doc.candidate_id == "c1"
    assert Structure.from_dict(doc.structure) == si


# --------------------------------------------------------------------------------------------
# parser and converter without jobflow
# --------------------------------------------------------------------------------------------


def test_parser_matches_pymatgen_on_vasp5(tmp_path: Path) -> None:
    """SiC (VASP 5.3.5): same numbers as pymatgen's readers, after the Voigt reorder."""
    from atomate2_gmt.tensors.conventions import vasp_voigt_to_standard, voigt_to_full

    path = DATA / "SiC_lepsilon_pymatgen" / "outputs" / "OUTCAR.gz"
    ours = read_outcar_lepsilon(path, nsites=2)
    out = Outcar(str(path))
    out.read_lepsilon()
    out.read_lepsilon_ionic()
    t = ours["tensors"]
    np.testing.assert_allclose(t["dielectric_electronic"], out.dielectric_tensor, atol=1e-9)
    np.testing.assert_allclose(t["dielectric_ionic"], out.dielectric_ionic_tensor, atol=1e-9)
    for part, theirs in (
        ("piezo_electronic", out.piezo_tensor),
        ("piezo_ionic", out.piezo_ionic_tensor),
    ):
        want = voigt_to_full(vasp_voigt_to_standard(np.asarray(theirs), "piezo"), "piezo")
        np.testing.assert_allclose(t[part], want, atol=1e-9)
    np.testing.assert_allclose(t["piezo_total"], t["piezo_electronic"] + t["piezo_ionic"])
    np.testing.assert_allclose(ours["born_charges"], out.born, atol=1e-9)
    # R3m about [111]: the electronic ε∞ is invariant under the 3-fold axis x→y→z
    c3 = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(
        rotate(t["dielectric_electronic"], c3), t["dielectric_electronic"], atol=1e-9
    )
    np.testing.assert_allclose(rotate(t["piezo_electronic"], c3), t["piezo_electronic"], atol=1e-4)


def test_parser_reads_vasp6_piezo_header_and_rejects_incomplete(tmp_path: Path) -> None:
    """VASP 6 prints 'PIEZOELECTRIC TENSOR (including local field effects)'; an OUTCAR cut
    before the LEPSILON results is refused with the file's name."""
    import gzip

    nacl = DATA / "NaCl_phonons_dielectric" / "outputs" / "OUTCAR.gz"
    with gzip.open(nacl, "rt") as fh:
        text = fh.read()
    assert "PIEZOELECTRIC TENSOR (including local field effects)  for field" in text
    assert "PIEZOELECTRIC TENSOR  for field" not in text  # the header pymatgen looks for
    assert "piezo_electronic" in read_outcar_lepsilon(nacl)["tensors"]
    cut = tmp_path / "OUTCAR"
    cut.write_text(text[: text.index(" PIEZOELECTRIC TENSOR (including local field effects)")])
    with pytest.raises(ValueError, match=r"OUTCAR: no 'PIEZOELECTRIC TENSOR.*not a finished"):
        read_outcar_lepsilon(cut)
    (tmp_path / "empty").write_text("nothing\n")
    with pytest.raises(ValueError, match="MACROSCOPIC STATIC DIELECTRIC"):
        read_outcar_lepsilon(tmp_path / "empty")


def test_parser_reads_vasp6_piezo_where_pymatgen_leaves_zeros(tmp_path: Path) -> None:
    """Zn3P2S8 (VASP 5.4.4, non-zero e) with its piezo header written as VASP 6 writes it: the
    same tensor as from the original; pymatgen's ``Outcar.read_lepsilon`` finds no section
    there and, like ``read_lepsilon_ionic`` on a run without ionic sections, reports zeros (the
    reason read_outcar_lepsilon is not pymatgen's reader)."""
    import gzip

    original = DATA / "Zn3P2S8_lepsilon_aiida-vasp" / "outputs" / "OUTCAR.gz"
    with gzip.open(original, "rt") as fh:
        text = fh.read()
    vasp6 = tmp_path / "OUTCAR"
    vasp6.write_text(
        text.replace(
            "PIEZOELECTRIC TENSOR  for field",
            "PIEZOELECTRIC TENSOR (including local field effects)  for field",
        )
    )
    want = read_outcar_lepsilon(original)["tensors"]
    got = read_outcar_lepsilon(vasp6)["tensors"]
    assert np.abs(want["piezo_electronic"]).max() > 0.5  # C/m²
    np.testing.assert_array_equal(got["piezo_electronic"], want["piezo_electronic"])
    assert "piezo_ionic" not in got  # no ionic sections: absent, not zero
    out = Outcar(str(vasp6))
    out.read_lepsilon()
    out.read_lepsilon_ionic()
    # if these fail, pymatgen reads VASP 6 LEPSILON runs: read_outcar_lepsilon may use it
    assert not np.any(out.piezo_tensor)
    assert not np.any(out.piezo_ionic_tensor)


def test_converter_on_failed_task_doc_keeps_structure() -> None:
    si = _poscar("Si_dielectric")
    doc = dfpt_doc_from_vasp(None, structure=si, candidate_id="x")
    assert doc.state == "failed"
    assert "no task document" in (doc.error or "")
    assert doc.get_structure() == si


def test_converter_from_task_document_dict(tmp_path: Path) -> None:
    """The converter also takes atomate2's TaskDoc as a dict (as read back from a store)."""
    from emmet.core.tasks import TaskDoc

    run = tmp_path / "run"
    shutil.copytree(DATA / "NaCl_phonons_dielectric" / "outputs", run)
    task = TaskDoc.from_directory(run)
    as_dict = task.model_dump()
    doc = dfpt_doc_from_vasp(as_dict)
    assert doc.state == "successful", doc.error
    # vasprun's ε∞ (more digits) agrees with the OUTCAR's
    np.testing.assert_allclose(
        doc.tensor("dielectric_electronic"), task.calcs_reversed[0].output.epsilon_static, atol=1e-5
    )
    np.testing.assert_allclose(
        doc.tensor("dielectric_ionic"), task.calcs_reversed[0].output.epsilon_ionic, atol=1e-5
    )
    # a rigid rotation of the computed frame rotates the tensors' home structure, not the numbers
    assert doc.get_structure().lattice == task.calcs_reversed[0].input.structure.lattice
