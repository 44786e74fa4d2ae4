"""The DFPT guard: physical bounds, consistency between parts, index symmetry, the structure key,
and no silent overwrite of a validated training record (real VASP runs and MP tensors)."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from atomate2_gmt.data.mp import load_mp
from atomate2_gmt.data.store_source import (
    ConflictingRecordError,
    record_from_training_dict,
    records_from_store,
)
from atomate2_gmt.dfpt.validation import (
    ASYMMETRY_TOLERANCE,
    PHYSICAL_BOUNDS,
    check_dfpt_result,
    index_asymmetry,
)
from atomate2_gmt.jobs.builders import DFPTFeedbackBuilder
from atomate2_gmt.jobs.feedback import (
    apply_feedback,
    conflict_record_id,
    resolve_training_conflict,
)
from atomate2_gmt.schemas.dfpt import DFPTResultDoc
from atomate2_gmt.tensors.conventions import full_to_voigt, voigt_to_full
from atomate2_gmt.tensors.symmetry.analysis import structure_key
from tests.feedback_docs import VASP_SETTINGS
from tests.jobs.conftest import candidate_doc, vasp_dfpt_doc


def _nacl(**tensors: np.ndarray) -> DFPTResultDoc:
    """The NaCl VASP run with only the given parts (full Cartesian tensors)."""
    return vasp_dfpt_doc(
        "NaCl_phonons_dielectric", tensors={k: np.asarray(v).tolist() for k, v in tensors.items()}
    )


def _mp_doc(task: str, part: str, crystal_system: str, min_abs: float) -> DFPTResultDoc:
    rec = next(
        r
        for r in load_mp(task).records
        if r.meta.get("crystal_system") == crystal_system and np.abs(r.tensor).max() > min_abs
    )
    s = rec.structure
    return DFPTResultDoc(
        structure=s.as_dict(),
        structure_key=structure_key(s),
        code="vasp",
        settings=VASP_SETTINGS,
        tensors={part: rec.tensor.tolist()},
    )


def _zns() -> Structure:
    """Zincblende ZnS, a = 5.41 Å."""
    return Structure.from_spacegroup(
        "F-43m", Lattice.cubic(5.41), ["Zn", "S"], [[0, 0, 0], [0.25, 0.25, 0.25]]
    )


# ---------------------------------------------------------------- physical bounds


def test_epsilon_total_below_epsilon_electronic_is_refused() -> None:
    """ε0 = 0.8 ε∞ (both ≥ 1, no ionic part given): a negative ionic part."""
    eps_inf = vasp_dfpt_doc("NaCl_phonons_dielectric").tensor("dielectric_electronic")
    assert eps_inf is not None
    doc = _nacl(dielectric_electronic=eps_inf, dielectric_total=0.8 * eps_inf)
    reasons = check_dfpt_result(doc)
    low = 0.8 * 2.524485 - 2.524485
    assert reasons == [
        f"dielectric_total − dielectric_electronic: smallest eigenvalue {low:.4g} < -0.1 "
        "(ε0 below ε∞: a negative ionic part)"
    ]
    # the real run (ε0 = 6.73 ≥ ε∞ = 2.52) passes
    assert check_dfpt_result(vasp_dfpt_doc("NaCl_phonons_dielectric")) == []


def test_absurd_dielectric_elastic_and_piezo_values_are_refused() -> None:
    eps = _nacl(dielectric_electronic=1e8 * np.eye(3))
    assert check_dfpt_result(eps) == [
        "dielectric_electronic: largest eigenvalue 1e+08 > 1000, beyond any known material"
    ]
    elastic = _mp_doc("elastic", "elastic_relaxed", "cubic", 50.0)
    c = elastic.tensor("elastic_relaxed")
    assert c is not None
    assert check_dfpt_result(elastic) == []
    huge = elastic.model_copy(
        update={"tensors": {"elastic_relaxed": (c * 1e9 / np.abs(c).max()).tolist()}}
    )
    assert check_dfpt_result(huge) == [
        "elastic_relaxed: a component of magnitude 1e+09 GPa > 2000 GPa, beyond any known material"
    ]
    zps = vasp_dfpt_doc("Zn3P2S8_lepsilon_aiida-vasp")
    e = zps.tensor("piezo_electronic")
    assert e is not None
    ev = full_to_voigt(e, "piezo")
    ev[0, 3] = ev[1, 4] = 1e6  # e14 = e25 (allowed by -42m) = 1e6 C/m²
    absurd = zps.model_copy(
        update={"tensors": {"piezo_electronic": voigt_to_full(ev, "piezo").tolist()}}
    )
    assert check_dfpt_result(absurd) == [
        "piezo_electronic: a component of magnitude 1e+06 C/m² > 100 C/m², beyond any known "
        "material"
    ]


@pytest.mark.parametrize("task", ["dielectric", "dielectric_total", "piezo", "elastic"])
def test_every_shipped_mp_tensor_is_within_the_bounds(task: str) -> None:
    """The bounds refuse nothing the shipped Materials Project data holds."""
    part = {
        "dielectric": "dielectric_electronic",
        "dielectric_total": "dielectric_total",
        "piezo": "piezo_total",
        "elastic": "elastic_relaxed",
    }[task]
    what, bound, _ = PHYSICAL_BOUNDS[part]
    tensors = np.array([r.tensor for r in load_mp(task, filter_residual=False).records])
    if what == "eigenvalue":
        biggest = max(float(np.linalg.eigvalsh(0.5 * (t + t.T))[-1]) for t in tensors)
    else:
        biggest = float(np.abs(tensors).max())
    assert 0.01 * bound < biggest < bound


def test_relaxed_stiffer_than_clamped_and_parts_that_do_not_sum_are_refused() -> None:
    elastic = _mp_doc("elastic", "elastic_relaxed", "cubic", 50.0)
    c = elastic.tensor("elastic_relaxed")
    assert c is not None
    ok = elastic.model_copy(
        update={"tensors": {"elastic_relaxed": c.tolist(), "elastic_clamped": (1.2 * c).tolist()}}
    )
    assert check_dfpt_result(ok) == []
    bad = elastic.model_copy(
        update={"tensors": {"elastic_relaxed": c.tolist(), "elastic_clamped": (0.8 * c).tolist()}}
    )
    (reason,) = check_dfpt_result(bad)
    assert reason.startswith("elastic_relaxed is stiffer than elastic_clamped")
    zps = vasp_dfpt_doc("Zn3P2S8_lepsilon_aiida-vasp")
    e = zps.tensor("piezo_electronic")
    assert e is not None
    parts = {"piezo_electronic": e, "piezo_ionic": 0.5 * e, "piezo_total": 1.5 * e}
    assert check_dfpt_result(zps.model_copy(update={"tensors": parts})) == []
    parts["piezo_total"] = 2.0 * e
    (reason,) = check_dfpt_result(zps.model_copy(update={"tensors": parts}))
    assert reason == (
        "piezo_total is not piezo_electronic + piezo_ionic (relative difference 0.25 > 0.01)"
    )


# ---------------------------------------------------------------- index symmetry


def test_small_asymmetry_is_stored_symmetrised_and_a_large_one_refused(stores) -> None:  # type: ignore[no-untyped-def]
    training, candidates = stores
    eps = vasp_dfpt_doc("NaCl_phonons_dielectric").tensor("dielectric_electronic")
    assert eps is not None
    skew = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    small = eps + 0.003 * skew
    assert 0 < index_asymmetry(small, "dielectric") < ASYMMETRY_TOLERANCE
    out = apply_feedback(_nacl(dielectric_electronic=small), training, candidates)
    assert out["state"] == "accepted"
    (stored,) = training.query()
    np.testing.assert_array_equal(stored["tensor"], np.asarray(stored["tensor"]).T)
    np.testing.assert_allclose(stored["tensor"], 0.5 * (small + small.T), atol=1e-15)
    np.testing.assert_allclose(stored["tensor"], eps, atol=1e-12)

    large = eps + 0.5 * skew
    reasons = check_dfpt_result(_nacl(dielectric_electronic=large))
    asym = index_asymmetry(large, "dielectric")
    assert reasons == [
        "dielectric_electronic: breaks the index symmetry of a dielectric tensor (relative "
        f"asymmetry {asym:.3g} > 0.01)"
    ]


def test_small_elastic_asymmetry_is_symmetrised_in_the_training_record(stores) -> None:  # type: ignore[no-untyped-def]
    training, candidates = stores
    elastic = _mp_doc("elastic", "elastic_relaxed", "cubic", 50.0)
    c = elastic.tensor("elastic_relaxed")
    assert c is not None
    noisy = c.copy()
    noisy[0, 0, 1, 1] += 0.5  # C_1122 ≠ C_2211 by 0.5 GPa
    out = apply_feedback(
        elastic.model_copy(update={"tensors": {"elastic_relaxed": noisy.tolist()}}),
        training,
        candidates,
    )
    assert out["state"] == "accepted"
    (stored,) = training.query()
    t = np.asarray(stored["tensor"])
    for perm in ((1, 0, 2, 3), (0, 1, 3, 2), (2, 3, 0, 1)):
        np.testing.assert_allclose(t, t.transpose(perm), atol=1e-12)
    # the orbit of 1122 under the index symmetry is {1122, 2211}: the excess is shared by two
    assert t[0, 0, 1, 1] == pytest.approx(c[0, 0, 1, 1] + 0.5 / 2, abs=1e-9)


# ---------------------------------------------------------------- the structure key


def test_a_structure_carrying_another_crystals_key_is_refused(stores) -> None:  # type: ignore[no-untyped-def]
    training, candidates = stores
    zns_key = structure_key(_zns())
    nacl = vasp_dfpt_doc("NaCl_phonons_dielectric")
    zns_candidate = {**candidate_doc(nacl), "structure_key": zns_key, "prediction_id": "zns:v1"}
    nacl_candidate = candidate_doc(nacl)
    candidates.update([zns_candidate, nacl_candidate])
    forged = nacl.model_copy(update={"structure_key": zns_key})
    out = apply_feedback(forged, training, candidates)
    assert out["state"] == "rejected"
    assert out["reasons"] == [
        f"structure_key {zns_key!r} is not the key of the result's structure "
        f"(NaCl: {nacl.structure_key!r})"
    ]
    assert training.count() == 0
    assert out["candidates_updated"] == [nacl_candidate["prediction_id"]]  # not ZnS's
    assert "dfpt" not in next(candidates.query({"prediction_id": "zns:v1"}))


def test_a_result_without_a_key_is_keyed_by_its_structure(stores) -> None:  # type: ignore[no-untyped-def]
    training, candidates = stores
    nacl = vasp_dfpt_doc("NaCl_phonons_dielectric")
    out = apply_feedback(nacl.model_copy(update={"structure_key": None}), training, candidates)
    assert out["state"] == "accepted"
    assert {d["structure_key"] for d in training.query()} == {nacl.structure_key}


# ---------------------------------------------------------------- no silent overwrite


def test_absurd_or_different_result_never_overwrites_a_validated_record(stores) -> None:  # type: ignore[no-untyped-def]
    training, candidates = stores
    valid = _nacl(dielectric_electronic=2.4 * np.eye(3))
    rid = f"{valid.structure_key}:dielectric:vasp:dielectric_electronic"
    assert apply_feedback(valid, training, candidates)["training_record_ids"] == [rid]
    created = next(training.query())["created_at"]

    absurd = apply_feedback(_nacl(dielectric_electronic=1e8 * np.eye(3)), training, candidates)
    assert absurd["state"] == "rejected"
    assert training.count() == 1
    np.testing.assert_array_equal(next(training.query())["tensor"], 2.4 * np.eye(3))

    # a plausible but different result (the VASP run's 2.5245) is kept beside it
    other = _nacl(dielectric_electronic=2.524485 * np.eye(3))
    out = apply_feedback(other, training, candidates)
    cid = conflict_record_id(rid, 2.524485 * np.eye(3))
    assert out["state"] == "accepted"
    assert out["training_record_ids"] == out["training_conflicts"] == [cid]
    docs = {d["record_id"]: d for d in training.query()}
    assert set(docs) == {rid, cid}
    np.testing.assert_array_equal(docs[rid]["tensor"], 2.4 * np.eye(3))
    assert docs[rid]["conflicts"] == [cid]
    assert docs[rid]["created_at"] == created
    assert docs[cid]["conflict_with"] == rid
    assert docs[cid]["use_for_training"] is False
    assert docs[cid]["job_uuid"] == "uuid-NaCl_phonons_dielectric"  # provenance kept

    # the first validated record is the one trained on
    records, stats = records_from_store(training, "dielectric")
    assert [r.id for r in records] == [rid]
    np.testing.assert_array_equal(records[0].tensor, 2.4 * np.eye(3))
    assert stats["n_total"] == 2
    assert stats["n_conflicting"] == 1
    with pytest.raises(ConflictingRecordError, match="conflicts with the validated record"):
        record_from_training_dict(docs[cid])

    # re-submitting either result is idempotent
    for doc in (valid, other, valid.model_copy(update={"job_uuid": "rerun"})):
        apply_feedback(doc, training, candidates)
    again = {d["record_id"]: d for d in training.query()}
    assert set(again) == {rid, cid}
    assert again[rid]["conflicts"] == [cid]
    assert again[rid]["created_at"] == created
    assert again[rid]["job_uuid"] == "rerun"
    np.testing.assert_array_equal(again[rid]["tensor"], 2.4 * np.eye(3))

    # a person may choose the other result: it moves to record_id, the first one is kept
    resolve_training_conflict(training, rid, use=cid)
    old = conflict_record_id(rid, 2.4 * np.eye(3))
    swapped = {d["record_id"]: d for d in training.query()}
    assert set(swapped) == {rid, old}
    np.testing.assert_allclose(swapped[rid]["tensor"], 2.524485 * np.eye(3))
    assert swapped[rid]["conflicts"] == [old]
    assert swapped[old]["use_for_training"] is False
    records, _ = records_from_store(training, "dielectric")
    np.testing.assert_allclose(records[0].tensor, 2.524485 * np.eye(3))
    with pytest.raises(ValueError, match="is not a record that conflicts with"):
        resolve_training_conflict(training, rid, use=rid)


def test_builder_keeps_both_conflicting_results(stores) -> None:  # type: ignore[no-untyped-def]
    from maggma.stores import MemoryStore

    training, _ = stores
    source = MemoryStore(key="job_uuid")
    source.connect()
    a = _nacl(dielectric_electronic=2.4 * np.eye(3)).model_copy(update={"job_uuid": "a"})
    b = _nacl(dielectric_electronic=2.6 * np.eye(3)).model_copy(update={"job_uuid": "b"})
    source.update([a.model_dump(), b.model_dump()])
    builder = DFPTFeedbackBuilder(source=source, target=training)
    builder.run()
    builder.run()  # idempotent
    training.connect()
    docs = list(training.query())
    assert len(docs) == 2
    kept = [d for d in docs if d.get("use_for_training", True)]
    assert len(kept) == 1
    assert kept[0]["conflicts"] == [d["record_id"] for d in docs if d is not kept[0]]
