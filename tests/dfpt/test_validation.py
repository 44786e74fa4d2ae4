"""check_dfpt_result on real tensors (VASP reference runs, shipped MP data) and broken copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Structure
from tests.feedback_docs import VASP_SETTINGS

from atomate2_gmt.data.mp import load_mp
from atomate2_gmt.dfpt.validation import (
    SYMMETRY_TOLERANCE,
    check_dfpt_result,
    projector_residual,
)
from atomate2_gmt.dfpt.vasp import read_outcar_lepsilon
from atomate2_gmt.schemas.dfpt import DFPTResultDoc
from atomate2_gmt.tensors.conventions import full_to_voigt, rotate, voigt_to_full
from atomate2_gmt.tensors.symmetry import point_group_info

DATA = Path(__file__).parent / "data" / "vasp"


def _vasp_doc(case: str) -> DFPTResultDoc:
    folder = DATA / case / "inputs"
    poscar = folder / "POSCAR.gz" if (folder / "POSCAR.gz").exists() else folder / "POSCAR"
    structure = Structure.from_file(poscar)
    parsed = read_outcar_lepsilon(DATA / case / "outputs" / "OUTCAR.gz", nsites=len(structure))
    return DFPTResultDoc(
        structure=structure.as_dict(),
        code="vasp",
        settings=VASP_SETTINGS,
        tensors={k: v.tolist() for k, v in parsed["tensors"].items()},
    )


def _with(doc: DFPTResultDoc, **tensors: np.ndarray) -> DFPTResultDoc:
    new = dict(doc.tensors)
    new.update({k: np.asarray(v).tolist() for k, v in tensors.items()})
    return doc.model_copy(
        update={
            "tensors": DFPTResultDoc(
                structure={}, code="vasp", settings=VASP_SETTINGS, tensors=new
            ).tensors
        }
    )


def _mp_doc(task: str, part: str, crystal_system: str, min_abs: float) -> DFPTResultDoc:
    rec = next(
        r
        for r in load_mp(task).records
        if r.meta.get("crystal_system") == crystal_system and np.abs(r.tensor).max() > min_abs
    )
    return DFPTResultDoc(
        structure=rec.structure.as_dict(),
        code="vasp",
        settings=VASP_SETTINGS,
        tensors={part: rec.tensor.tolist()},
    )


@pytest.mark.parametrize(
    "case", ["Si_dielectric", "NaCl_phonons_dielectric", "Zn3P2S8_lepsilon_aiida-vasp"]
)
def test_real_vasp_results_are_accepted(case: str) -> None:
    doc = _vasp_doc(case)
    assert check_dfpt_result(doc) == []
    assert check_dfpt_result(doc.model_dump()) == []  # the dict form too


def test_real_mp_piezo_and_elastic_are_accepted() -> None:
    piezo = _mp_doc("piezo", "piezo_total", "hexagonal", 0.3)
    elastic = _mp_doc("elastic", "elastic_relaxed", "tetragonal", 50.0)
    assert check_dfpt_result(piezo) == []
    assert check_dfpt_result(elastic) == []


def test_unconverted_vasp_voigt_order_is_rejected() -> None:
    """Zn3P2S8 piezo read with VASP's columns taken as standard: forbidden components."""
    doc = _vasp_doc("Zn3P2S8_lepsilon_aiida-vasp")
    e = doc.tensor("piezo_electronic")
    assert e is not None
    std = full_to_voigt(e, "piezo")
    wrong = voigt_to_full(std[:, [0, 1, 2, 5, 3, 4]], "piezo")  # standard columns as VASP's
    reasons = check_dfpt_result(_with(doc, piezo_electronic=wrong))
    assert len(reasons) == 1
    assert reasons[0].startswith("piezo_electronic: breaks the -42m symmetry of its structure")


def test_tensor_in_the_wrong_frame_is_rejected_and_rotating_both_is_accepted() -> None:
    doc = _mp_doc("piezo", "piezo_total", "hexagonal", 0.3)
    structure = doc.get_structure()
    e = doc.tensor("piezo_total")
    assert e is not None
    r = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # 90° about x
    rotated_tensor_only = _with(doc, piezo_total=rotate(e, r))
    reasons = check_dfpt_result(rotated_tensor_only)
    assert len(reasons) == 1
    assert "piezo_total: breaks the" in reasons[0]
    moved = structure.copy()
    moved.lattice = type(structure.lattice)(structure.lattice.matrix @ r.T)
    both = DFPTResultDoc(
        structure=moved.as_dict(),
        code="vasp",
        settings=VASP_SETTINGS,
        tensors={"piezo_total": rotate(e, r).tolist()},
    )
    assert check_dfpt_result(both) == []


def test_symmetry_tolerance_is_the_documented_one() -> None:
    """Zn3P2S8 ε∞ with y and z swapped: projector residual 1.9 %, under the 5 % limit."""
    doc = _vasp_doc("Zn3P2S8_lepsilon_aiida-vasp")
    eps = doc.tensor("dielectric_electronic")
    assert eps is not None
    swapped = eps[[0, 2, 1]][:, [0, 2, 1]]
    info = point_group_info(doc.get_structure())
    residual = projector_residual(swapped, "dielectric", info)
    assert 0.01 < residual < SYMMETRY_TOLERANCE["dielectric"]
    broken = _with(doc, dielectric_electronic=swapped)
    assert check_dfpt_result(broken) == []
    reasons = check_dfpt_result(broken, tolerance={"dielectric": 0.01})
    assert reasons == [
        f"dielectric_electronic: breaks the -42m symmetry of its structure (relative projector "
        f"residual {residual:.3g} >= 0.01; symprec 0.01 Å)"
    ]


def test_permittivity_below_one_is_rejected() -> None:
    doc = _vasp_doc("NaCl_phonons_dielectric")
    eps = doc.tensor("dielectric_electronic")
    assert eps is not None
    reasons = check_dfpt_result(_with(doc, dielectric_electronic=0.3 * eps))
    assert reasons == [
        "dielectric_electronic: smallest eigenvalue 0.7573 < 1 (a permittivity is at least 1)",
        # ε0 was left as computed: it no longer is ε∞ + ionic
        "dielectric_total is not dielectric_electronic + dielectric_ionic (relative difference "
        "0.263 > 0.01)",
    ]


def test_negative_ionic_part_is_rejected() -> None:
    doc = _vasp_doc("NaCl_phonons_dielectric")
    ionic = doc.tensor("dielectric_ionic")
    assert ionic is not None
    reasons = check_dfpt_result(_with(doc, dielectric_ionic=-ionic))
    assert len(reasons) == 2
    assert reasons[0].startswith("dielectric_ionic: smallest eigenvalue -4.207 < -0.1")
    assert reasons[1].startswith("dielectric_total is not dielectric_electronic + dielectric_ionic")


def test_elastic_not_positive_definite_is_rejected() -> None:
    doc = _mp_doc("elastic", "elastic_relaxed", "tetragonal", 50.0)
    c = doc.tensor("elastic_relaxed")
    assert c is not None
    cv = full_to_voigt(c, "elastic")
    cv[3, 3] = cv[4, 4] = -10.0  # C44 = C55 < 0: symmetric, but shear-unstable
    reasons = check_dfpt_result(_with(doc, elastic_relaxed=voigt_to_full(cv, "elastic")))
    assert len(reasons) == 1
    assert reasons[0].startswith("elastic_relaxed: not positive definite")
    assert "Born-unstable" in reasons[0]


def test_failed_empty_nonfinite_and_invalid() -> None:
    ok = _vasp_doc("Si_dielectric")
    failed = ok.model_copy(update={"state": "failed", "error": "VASP did not converge"})
    assert check_dfpt_result(failed) == ["state is 'failed': VASP did not converge"]
    assert check_dfpt_result(ok.model_copy(update={"tensors": {}})) == ["no tensors in the result"]
    nan = ok.model_copy(update={"tensors": {**ok.tensors, "piezo_ionic": [[[np.nan] * 3] * 3] * 3}})
    assert "piezo_ionic: non-finite components" in check_dfpt_result(nan)
    bad = ok.model_dump()
    bad["tensors"] = {"dielectric_static": np.eye(3).tolist()}
    (reason,) = check_dfpt_result(bad)
    assert reason.startswith("not a valid DFPTResultDoc: ")
    assert "unknown DFPT part 'dielectric_static'" in reason


def test_a_smoke_preset_result_is_rejected_as_training_data():
    doc = _vasp_doc("Si_dielectric")
    assert check_dfpt_result(doc) == []
    smoke = doc.model_copy(update={"settings": {"preset": "smoke"}})
    assert check_dfpt_result(smoke) == ["computed with the 'smoke' preset, not production quality"]
