"""GMTPredictionDoc: frames, derived physics, metadata, failures, round trip."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.core.tensors import Tensor
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from scipy.spatial.transform import Rotation
from tests.structures import NACL, ZNO

from atomate2_gmt.data.mp import load_mp
from atomate2_gmt.schemas.fields import (
    DERIVED_FIELDS,
    PREDICTION_INDEXES,
    PREDICTION_SCHEMA_VERSION,
    resolve_sort_field,
)
from atomate2_gmt.schemas.prediction import (
    GMTPredictionDoc,
    SourceProperties,
    compute_ieee_rotation,
    derive_model_version,
    key_and_ieee_rotation,
    migrate_prediction_dict,
)
from atomate2_gmt.tensors.conventions import crystal_system, full_to_voigt, rotate
from atomate2_gmt.tensors.properties import isotropic_elastic_tensor
from atomate2_gmt.tensors.symmetry import SymmetryAnalysis, symmetrize
from atomate2_gmt.tensors.symmetry.analysis import structure_key
from atomate2_gmt.tensors.symmetry.keys import spglib_cell, symmetry_dataset

KIND = {"dielectric": "dielectric", "dielectric_total": "dielectric", "piezo": "piezo",
        "elastic": "elastic"}  # fmt: skip


def _ok(tensor: np.ndarray, task: str) -> dict:
    return {
        "state": "successful",
        "error": None,
        "tensor": np.asarray(tensor).tolist(),
        "voigt": full_to_voigt(tensor, KIND[task]).tolist(),
    }


def _zno_tensors(structure: Structure = ZNO) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "dielectric": symmetrize(np.diag([3.7, 3.7, 4.6]), structure, "dielectric"),
        "dielectric_total": symmetrize(np.diag([7.8, 7.8, 8.9]), structure, "dielectric"),
        "piezo": symmetrize(rng.normal(size=(3, 3, 3)), structure, "piezo"),
        "elastic": isotropic_elastic_tensor(140.0, 45.0)
        + symmetrize(rng.normal(size=(3, 3, 3, 3)), structure, "elastic"),
    }


def _doc(structure=ZNO, tensors=None, **kwargs) -> GMTPredictionDoc:
    tensors = tensors if tensors is not None else _zno_tensors(structure)
    info = {
        t: {"name": f"gmtnet-{t}", "version": "v2", "checkpoint_sha256": "ab" * 32} for t in tensors
    }
    return GMTPredictionDoc.from_predictions(
        structure, {t: _ok(v, t) for t, v in tensors.items()}, info, source="ZnO.cif", **kwargs
    )


def test_metadata_symmetry_and_key():
    doc = _doc()
    assert doc.formula_pretty == "ZnO"
    assert doc.chemsys == "O-Zn"
    assert doc.nsites == 4
    assert doc.elements is not None
    assert [str(e) for e in doc.elements] == ["O", "Zn"]
    assert doc.density == pytest.approx(ZNO.density, rel=1e-6)
    assert doc.symmetry is not None
    assert doc.symmetry.crystal_system.value == "Hexagonal"
    assert (doc.symmetry.number, doc.symmetry.symbol, doc.symmetry.point_group) == (
        186,
        "P6_3mc",
        "6mm",
    )
    assert doc.symmetry.symprec == 0.01
    assert doc.is_centrosymmetric is False
    assert doc.structure_key == structure_key(ZNO)
    assert doc.prediction_id == f"{doc.structure_key}:v2"
    assert doc.model_version == "v2"
    assert Structure.from_dict(doc.structure) == ZNO
    assert doc.state == "successful"
    assert doc.error is None
    assert doc.tasks == ["dielectric", "dielectric_total", "piezo", "elastic"]
    assert doc.predictions["piezo"].model.checkpoint_hash == "ab" * 32
    nacl = _doc(NACL, {"dielectric": np.eye(3) * 2.3})
    assert nacl.is_centrosymmetric is True
    assert nacl.symmetry.point_group == "m-3m"


def test_tensors_are_kept_in_the_structure_frame_with_voigt_forms():
    tensors = _zno_tensors()
    doc = _doc(tensors=tensors)
    for task, tensor in tensors.items():
        pred = doc.predictions[task]
        assert np.allclose(pred.tensor, tensor)
        assert np.allclose(pred.voigt, full_to_voigt(tensor, KIND[task]))
    e = np.asarray(doc.predictions["piezo"].tensor)
    assert np.asarray(doc.predictions["piezo"].voigt)[2, 3] == pytest.approx(e[2, 1, 2])  # e_zyz
    assert doc.predictions["elastic"].units == "GPa"
    assert doc.predictions["piezo"].units == "C/m^2"


def test_ieee_form_is_independent_of_the_input_orientation():
    """Rotating structure and tensors together must not change the IEEE-frame Voigt."""
    tensors = _zno_tensors()
    ref = _doc(tensors=tensors)
    r = Rotation.from_euler("zyx", [31.0, -47.0, 12.0], degrees=True).as_matrix()
    rotated = Structure(ZNO.lattice.matrix @ r.T, ZNO.species, ZNO.frac_coords)
    moved = _doc(rotated, {t: rotate(v, r) for t, v in tensors.items()})
    for task in tensors:
        assert np.allclose(
            moved.predictions[task].voigt_ieee, ref.predictions[task].voigt_ieee, atol=1e-8
        )
        assert not np.allclose(
            moved.predictions[task].voigt, ref.predictions[task].voigt, atol=1e-3
        )
    expected = Tensor(tensors["piezo"]).convert_to_ieee(ZNO, initial_fit=False)
    assert np.allclose(
        ref.predictions["piezo"].voigt_ieee, full_to_voigt(np.asarray(expected), "piezo")
    )
    assert moved.structure_key == ref.structure_key


@pytest.mark.parametrize("improper", [False, True])
def test_every_derived_field_is_the_same_in_every_orientation(improper):
    """The same crystal in another orientation (and its mirror image) gets the same derived
    fields: what the store sorts and filters on depends on the crystal, not on the file."""
    gan = next(r for r in load_mp("piezo").records if r.id == "mp-804")
    tensors = _zno_tensors(gan.structure)
    tensors["piezo"] = gan.tensor
    ref = _doc(gan.structure, tensors)
    sign = -1.0 if improper else 1.0
    for seed in range(3):
        r = sign * Rotation.random(random_state=seed).as_matrix()
        moved_s = Structure(
            gan.structure.lattice.matrix @ r.T, gan.structure.species, gan.structure.frac_coords
        )
        moved = _doc(moved_s, {t: rotate(v, r) for t, v in tensors.items()})
        for task in tensors:
            for name in DERIVED_FIELDS[task]:
                a, b = getattr(ref, name), getattr(moved, name)
                assert a is not None, name
                assert b == pytest.approx(a, rel=1e-8, abs=1e-10), (name, seed)
    # the standard Voigt maximum of the structure frame is not such a field: it moves
    voigt_max = [
        np.abs(full_to_voigt(rotate(gan.tensor, Rotation.random(random_state=s).as_matrix()),
                             "piezo")).max()
        for s in range(3)
    ]  # fmt: skip
    assert max(voigt_max) - min(voigt_max) > 0.05 * max(voigt_max)


def test_derived_scalars_follow_the_physics():
    rot = Rotation.from_euler("xyz", [20, 35, -10], degrees=True).as_matrix()
    eps = rot @ np.diag([2.0, 3.0, 7.0]) @ rot.T  # triclinic cell: any ε is allowed
    triclinic = Structure(
        Lattice.from_parameters(4.1, 5.3, 6.2, 81, 95, 103),
        ["Li", "O"],
        [[0, 0, 0], [0.4, 0.3, 0.6]],
    )
    e = np.zeros((3, 3, 3))
    e[2, 0, 1] = e[2, 1, 0] = -0.8  # e_36 = -0.8, the largest |e_iJ|
    e[0, 0, 0] = 0.3
    stable = isotropic_elastic_tensor(120.0, 50.0)
    doc = _doc(triclinic, {"dielectric": eps, "piezo": e, "elastic": stable})
    assert doc.dielectric_mean == pytest.approx(4.0)
    assert doc.dielectric_eig_max == pytest.approx(7.0)
    assert doc.predictions["dielectric"].derived["eigenvalues"] == pytest.approx([2.0, 3.0, 7.0])
    # emmet's e_ij_max: the largest singular value of the IEEE-frame Voigt matrix
    ieee = np.asarray(Tensor(e).convert_to_ieee(triclinic, initial_fit=False))
    assert doc.e_ij_max == pytest.approx(np.linalg.svd(full_to_voigt(ieee, "piezo"))[1][0])
    assert doc.e_norm == pytest.approx(np.linalg.norm(e))
    # the longitudinal maximum: at least every sampled direction, attained at the stored one
    n = Rotation.random(20000, random_state=3).apply([0.0, 0.0, 1.0])
    sampled = np.einsum("ijk,ni,nj,nk->n", e, n, n, n).max()
    assert sampled <= doc.e_long_max <= sampled + 1e-3
    d = np.asarray(doc.predictions["piezo"].derived["e_long_direction"])
    assert np.einsum("ijk,i,j,k->", e, d, d, d) == pytest.approx(doc.e_long_max, rel=1e-12)
    assert (pytest.approx(120.0), pytest.approx(50.0)) == (doc.K_VRH, doc.G_VRH)
    assert pytest.approx(0.0, abs=1e-9) == doc.AU
    assert doc.born_stable is True
    assert doc.dielectric_total_mean is None  # not predicted
    unstable = _doc(triclinic, {"elastic": isotropic_elastic_tensor(120.0, -10.0)})
    assert unstable.born_stable is False


def test_a_failed_task_fails_the_document_but_keeps_the_rest():
    tensors = _zno_tensors()
    preds = {t: _ok(v, t) for t, v in tensors.items()}
    preds["elastic"] = {"state": "failed", "error": "out of memory", "tensor": None, "voigt": None}
    preds["piezo"]["tensor"] = [[1.0, 2.0, 3.0]]
    doc = GMTPredictionDoc.from_predictions(ZNO, preds, source="x.cif", model_version="m1")
    assert doc.state == "failed"
    assert "elastic: out of memory" in doc.error
    assert "piezo: tensor has shape (1, 3)" in doc.error
    assert doc.predictions["dielectric"].state == "successful"
    assert doc.dielectric_mean is not None
    assert doc.K_VRH is None
    assert doc.e_ij_max is None
    assert doc.structure_key is not None
    assert doc.prediction_id.endswith(":m1")


def test_failure_documents_always_have_the_source():
    unreadable = GMTPredictionDoc.from_failure(
        "bad.cif", "unreadable structure file", tasks=["piezo"]
    )
    assert unreadable.state == "failed"
    assert unreadable.source == "bad.cif"
    assert unreadable.structure_key is None
    assert unreadable.prediction_id.startswith("unkeyed-")
    assert unreadable.predictions["piezo"].error == "unreadable structure file"
    again = GMTPredictionDoc.from_failure("bad.cif", "other reason")
    assert again.prediction_id == unreadable.prediction_id  # same source, same key
    disordered = Structure(Lattice.cubic(4), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5] * 3])
    doc = GMTPredictionDoc.from_failure("dis.cif", "disordered", disordered, tasks=["dielectric"])
    assert doc.formula_pretty is not None
    assert doc.structure is not None
    readable = GMTPredictionDoc.from_failure("z.cif", "model missing", ZNO)
    assert readable.structure_key == structure_key(ZNO)


def test_store_dict_round_trip_is_json_safe():
    import json

    props = SourceProperties(energy_above_hull=0.012, band_gap=3.3)
    doc = _doc(device="cpu", timings={"piezo": 0.25}, provenance={"prototype": "mp-2133"},
               source_properties=props)  # fmt: skip
    d = doc.to_store_dict()
    json.dumps({k: v for k, v in d.items() if k != "last_updated"})
    assert d["last_updated"] == doc.last_updated
    again = GMTPredictionDoc.model_validate(d)
    assert again == doc
    for fields, _ in PREDICTION_INDEXES:
        for f in fields:
            assert f.split(".")[0] in d, f
    for task, fields in DERIVED_FIELDS.items():
        for f in fields:
            assert d[f] is not None, (task, f)
    assert d["timings"] == {"piezo": 0.25}
    assert d["predictions"]["piezo"]["time_s"] == 0.25


def test_dfpt_sub_documents_are_declared():
    """``dfpt_selected`` and ``dfpt`` are fields of the document: absent from the store until
    set (selection finds candidates by ``$exists``), validated and kept on a round trip."""
    from datetime import UTC, datetime

    from atomate2_gmt.schemas.prediction import DFPTFeedback, DFPTSelection

    doc = _doc()
    d = doc.to_store_dict()
    assert "dfpt" not in d
    assert "dfpt_selected" not in d
    mark = DFPTSelection(at=datetime.now(UTC).isoformat(), code="abinit", policy={"top_k": 1})
    result = DFPTFeedback(state="accepted", dfpt_state="successful", code="abinit",
                          tensors={"piezo": _zno_tensors()["piezo"].tolist()})  # fmt: skip
    stored = {**d, "dfpt_selected": mark.model_dump(exclude_none=True),
              "dfpt": result.to_store_dict()}  # fmt: skip
    again = GMTPredictionDoc.model_validate(stored)
    assert again.dfpt_selected == mark
    assert again.dfpt is not None
    assert again.dfpt.state == "accepted"
    assert again.to_store_dict()["dfpt"]["last_updated"] == result.last_updated  # a datetime
    with pytest.raises(ValueError, match="state"):
        GMTPredictionDoc.model_validate({**stored, "dfpt": {**stored["dfpt"], "state": "maybe"}})


def test_model_version_labels():
    same = {"piezo": {"version": "v3"}, "elastic": {"version": "v3"}}
    assert derive_model_version(same, ["piezo", "elastic"]) == "v3"
    mixed = {"piezo": {"version": "v3"}, "elastic": {"version": "v1"}}
    assert derive_model_version(mixed, ["piezo", "elastic"]) == "elastic=v1|piezo=v3"
    assert derive_model_version({}, ["piezo"]) == "unversioned"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"predictions": {}}, "non-empty dict"),
        ({"predictions": {"bandgap": {}}}, "unknown tasks"),
        ({"source": ""}, "source must be a non-empty string"),
        ({"symprec": 0}, "symprec must be positive"),
        ({"structure": "ZnO"}, "must be a pymatgen Structure"),
    ],
)
def test_builder_input_errors(kwargs, message):
    args = {"structure": ZNO, "predictions": {"dielectric": _ok(np.eye(3), "dielectric")},
            "source": "x"}  # fmt: skip
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        GMTPredictionDoc.from_predictions(**args)


def test_sort_field_resolution():
    assert resolve_sort_field("piezo", None) == "e_ij_max"
    assert resolve_sort_field("dielectric", "eig_max") == "dielectric_eig_max"
    assert resolve_sort_field("elastic", "G_VRH") == "G_VRH"
    with pytest.raises(ValueError, match="valid sort keys: AU, G_VRH, K_VRH"):
        resolve_sort_field("elastic", "e_ij_max")
    with pytest.raises(ValueError, match="unknown property 'bandgap'"):
        resolve_sort_field("bandgap", None)


# ----------------------------------------------------------------------------------------------
# key_and_ieee_rotation: one spglib search, the same results as the separate computations
# ----------------------------------------------------------------------------------------------


def _pymatgen_ieee(s: Structure) -> np.ndarray:
    return np.asarray(Tensor.get_ieee_rotation(s, refine_rotation=True), dtype=float)


@cache
def _sample(task: str, n: int = 150) -> tuple[Structure, ...]:
    records = load_mp(task).records
    picked = np.random.default_rng(5).choice(len(records), size=min(n, len(records)), replace=False)
    return tuple(records[i].structure for i in sorted(picked))


@pytest.mark.parametrize("task", ["dielectric", "dielectric_total", "piezo", "elastic"])
def test_key_and_ieee_rotation_equal_the_separate_computations(task):
    for s in _sample(task):
        key, ieee = key_and_ieee_rotation(s, 0.01)
        assert key == structure_key(s, 0.01)
        np.testing.assert_allclose(ieee, _pymatgen_ieee(s), atol=1e-8, rtol=0)


def _sheared_tetragonal() -> Structure:
    """Tetragonal within 5 degrees (pymatgen's angle tolerance), monoclinic at spglib's default."""
    s = Structure.from_spacegroup(
        "P4/mmm", Lattice.tetragonal(3.9, 5.1), ["Sr", "Ti"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    shear = np.eye(3)
    shear[0, 2] = np.tan(np.radians(1.5))
    return Structure(Lattice(s.lattice.matrix @ shear.T), s.species, s.frac_coords)


def test_ieee_rotation_asks_pymatgen_when_the_angle_tolerance_matters():
    s = _sheared_tetragonal()
    cell = spglib_cell(s, 0.01)
    ours = symmetry_dataset(cell, 0.01)
    assert crystal_system(ours.number) != SpacegroupAnalyzer(s).get_crystal_system()
    assert not SymmetryAnalysis(s, 0.01).shares_pymatgen_dataset()
    key, ieee = key_and_ieee_rotation(s, 0.01)
    assert key == structure_key(s)
    np.testing.assert_allclose(ieee, _pymatgen_ieee(s), atol=1e-8, rtol=0)


def _fallback_cases() -> dict[str, tuple[Structure, float]]:
    mixed = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(8.4), ["Fe", "Fe", "O"], [[0, 0, 0], [0.5, 0, 0], [0.25] * 3]
    )
    mixed.add_oxidation_state_by_site([2] * 4 + [3] * 4 + [-2] * 8)
    magnetic = NACL.copy()
    magnetic.add_site_property("magmom", [1.0, -1.0, 1.0, -1.0, 0, 0, 0, 0])
    return {"mixed-valence": (mixed, 0.01), "magmom": (magnetic, 0.01), "symprec": (ZNO, 0.1)}


@pytest.mark.parametrize("case", ["mixed-valence", "magmom", "symprec"])
def test_ieee_rotation_asks_pymatgen_when_its_search_differs(case):
    s, symprec = _fallback_cases()[case]
    assert not SymmetryAnalysis(s, symprec).shares_pymatgen_dataset()
    key, ieee = key_and_ieee_rotation(s, symprec)
    assert key == structure_key(s, symprec)
    np.testing.assert_allclose(ieee, _pymatgen_ieee(s), atol=1e-8, rtol=0)


def _assert_same_facts(got: tuple, expected: tuple) -> None:
    assert got[0] == expected[0]
    assert type(got[1]) is type(expected[1])
    if isinstance(expected[1], str):
        assert got[1] == expected[1]
    else:
        np.testing.assert_array_equal(got[1], expected[1])


def test_key_and_ieee_rotation_report_failures_as_the_separate_computations_do():
    # no key for a disordered structure; pymatgen's IEEE rotation all the same
    disordered = Structure(Lattice.cubic(4), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5] * 3])
    _assert_same_facts(key_and_ieee_rotation(disordered), (None, compute_ieee_rotation(disordered)))
    # orthorhombic with a = b exactly: pymatgen's IEEE rule fails (a tie in a sort), same reason
    tied = Structure(Lattice.tetragonal(4, 6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0, 0.3]])
    assert isinstance(compute_ieee_rotation(tied), str)
    _assert_same_facts(
        key_and_ieee_rotation(tied), (structure_key(tied), compute_ieee_rotation(tied))
    )
    # spglib finds no symmetry (two atoms closer than symprec): the input cell is keyed, and
    # pymatgen says why there is no IEEE frame
    close = Structure(
        Lattice.cubic(4), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5] * 3, [0.5, 0.5, 0.5005]]
    )
    assert isinstance(compute_ieee_rotation(close), str)
    _assert_same_facts(
        key_and_ieee_rotation(close), (structure_key(close), compute_ieee_rotation(close))
    )


def test_source_properties_are_carried_and_older_hull_field_migrates():
    doc = _doc(source_properties=SourceProperties(material_id="mp-2133", band_gap=3.3))
    assert doc.material_id == "mp-2133"
    assert doc.band_gap == 3.3
    assert doc.energy_above_hull is None  # never invented
    assert doc.is_metal is None
    with pytest.raises(ValueError, match="band_gap"):
        SourceProperties(band_gap=float("nan"))
    old = doc.to_store_dict()
    old.pop("energy_above_hull")
    old["e_above_hull"], old["schema_version"] = 0.02, 3
    migrated = migrate_prediction_dict(old)
    assert migrated["energy_above_hull"] == 0.02
    assert "e_above_hull" not in migrated
    assert migrated["schema_version"] == PREDICTION_SCHEMA_VERSION
