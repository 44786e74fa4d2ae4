"""TensorRecord validation and serialisation, the seeded split and the content hash."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest
from pymatgen.core import Structure

from atomate2_gmt.data.records import (
    TASK_UNITS,
    TASKS,
    TensorRecord,
    record_hash,
    records_hash,
    split_records,
)


def _dielectric_record(structure: Structure, idx: int = 0, scale: float = 1.0) -> TensorRecord:
    eps = np.diag([3.44, 3.44, 3.44]) * scale
    return TensorRecord(
        structure=structure,
        tensor=eps,
        task="dielectric",
        units="dimensionless",
        source="test",
        id=f"rec-{idx}",
        provenance={"note": "unit test"},
        meta={"formula": structure.composition.reduced_formula},
    )


def _records(structure: Structure, n: int) -> list[TensorRecord]:
    return [_dielectric_record(structure, i, 1.0 + 0.01 * i) for i in range(n)]


def test_tasks_and_units() -> None:
    assert TASKS == ("dielectric", "dielectric_total", "piezo", "elastic")
    assert TASK_UNITS["piezo"] == "C/m^2"
    assert TASK_UNITS["elastic"] == "GPa"
    assert TASK_UNITS["dielectric"] == TASK_UNITS["dielectric_total"] == "dimensionless"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "bandgap"}, "unknown task 'bandgap'"),
        ({"units": "kbar", "task": "elastic", "tensor": np.zeros((3, 3, 3, 3))}, "in 'GPa'"),
        ({"tensor": np.zeros((3, 6))}, r"shape \(3, 3\), got shape \(3, 6\)"),
        ({"tensor": np.full((3, 3), np.nan)}, "non-finite"),
        ({"id": ""}, "non-empty string"),
        ({"meta": {"x": object()}}, "not JSON-safe"),
        ({"provenance": {"x": float("inf")}}, "non-finite number"),
    ],
)
def test_bad_record_is_refused(rb2te: Structure, kwargs: dict, message: str) -> None:
    base: dict[str, Any] = {
        "structure": rb2te,
        "tensor": np.eye(3),
        "task": "dielectric",
        "units": "dimensionless",
        "source": "test",
        "id": "x",
    }
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        TensorRecord(**base)


def test_structure_must_be_a_structure() -> None:
    with pytest.raises(ValueError, match="must be a pymatgen Structure"):
        TensorRecord(
            structure={"lattice": 1},  # type: ignore[arg-type]
            tensor=np.eye(3),
            task="dielectric",
            units="dimensionless",
            source="t",
            id="x",
        )


def test_voigt_of_real_piezo_record_matches_the_shipped_voigt(raw_record) -> None:
    raw = raw_record("piezo", "mp-804")  # GaN, 6mm
    rec = TensorRecord(
        structure=Structure.from_dict(raw["structure"]),
        tensor=np.array(raw["piezo_cartesian_C_m2"]),
        task="piezo",
        units="C/m^2",
        source="test",
        id="mp-804",
    )
    assert rec.kind == "piezo"
    assert rec.voigt.shape == (3, 6)
    np.testing.assert_allclose(rec.voigt, raw["piezo_voigt_C_m2"], atol=1e-12)
    # e_33 (z, zz) of wurtzite GaN is its largest coefficient and is along the polar axis
    assert np.argmax(np.abs(rec.voigt)) == np.ravel_multi_index((2, 2), (3, 6))


def test_as_dict_round_trip_is_json_safe(rb2te: Structure) -> None:
    rec = _dielectric_record(rb2te)
    rec.meta["space_group"] = np.int64(225)  # numpy scalars become plain ints
    rec = TensorRecord(**{**rec.__dict__})
    text = json.dumps(rec.as_dict())
    back = TensorRecord.from_dict(json.loads(text))
    np.testing.assert_array_equal(back.tensor, rec.tensor)
    assert back.structure == rec.structure
    assert back.meta["space_group"] == 225
    assert isinstance(back.meta["space_group"], int)
    assert (back.id, back.task, back.units, back.source) == (
        rec.id,
        rec.task,
        rec.units,
        rec.source,
    )
    assert record_hash(back) == record_hash(rec)


def test_from_dict_refuses_other_documents(rb2te: Structure) -> None:
    d = _dielectric_record(rb2te).as_dict()
    with pytest.raises(ValueError, match="not a TensorRecord dict"):
        TensorRecord.from_dict({**d, "@format": "something.else"})
    with pytest.raises(ValueError, match="unsupported TensorRecord version 99"):
        TensorRecord.from_dict({**d, "version": 99})
    del d["tensor"]
    with pytest.raises(ValueError, match=r"lacks the keys \['tensor'\]"):
        TensorRecord.from_dict(d)


# ------------------------------------------------------------------------------ split


def test_split_sizes_80_10_10_for_the_paper_dataset_sizes(rb2te: Structure) -> None:
    recs = _records(rb2te, 4713)
    train, val, test = split_records(recs, (0.8, 0.1, 0.1), seed=32)
    assert (len(val), len(test)) == (471, 471)
    assert len(train) == 4713 - 942
    ids = [r.id for r in (*train, *val, *test)]
    assert sorted(ids) == sorted(r.id for r in recs)  # a partition: disjoint, complete


def test_split_equals_global_random_seed_32_shuffle(rb2te: Structure) -> None:
    recs = _records(rb2te, 50)
    state = random.getstate()
    try:
        expected = list(range(50))
        random.seed(32)
        random.shuffle(expected)
    finally:
        random.setstate(state)
    before = random.getstate()
    train, val, test = split_records(recs, seed=32)
    assert random.getstate() == before  # the global random state is not touched
    assert [r.id for r in (*train, *val, *test)] == [f"rec-{i}" for i in expected]
    assert (len(train), len(val), len(test)) == (40, 5, 5)


def test_split_is_reproducible_and_seed_dependent(rb2te: Structure) -> None:
    recs = _records(rb2te, 100)
    a = split_records(recs, seed=7)
    b = split_records(recs, seed=7)
    c = split_records(recs, seed=8)
    assert [[r.id for r in part] for part in a] == [[r.id for r in part] for part in b]
    assert [r.id for r in a[2]] != [r.id for r in c[2]]


def test_split_pinned_permutation(rb2te: Structure) -> None:
    # Regression pin: the permutation CPython's MT19937 + shuffle gives for seed 32 and ten
    # items (platform independent). If a Python release or a change here alters it, every
    # stored split and benchmark comparison changes too, so this must fail loudly.
    recs = _records(rb2te, 10)
    order = [4, 6, 0, 8, 9, 5, 7, 2, 3, 1]
    train, val, test = split_records(recs, seed=32)
    assert [r.id for r in train] == [f"rec-{i}" for i in order[:8]]
    assert [r.id for r in val] == [f"rec-{order[8]}"]
    assert [r.id for r in test] == [f"rec-{order[9]}"]


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ((0.8, 0.1), "fractions must be"),
        ((0.8, 0.3, 0.1), "must sum to 1"),
        ((1.1, -0.1, 0.0), "non-negative"),
    ],
)
def test_split_rejects_bad_fractions(rb2te: Structure, fractions: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_records(_records(rb2te, 3), fractions, seed=1)  # type: ignore[arg-type]


def test_split_rejects_non_integer_seed(rb2te: Structure) -> None:
    with pytest.raises(ValueError, match="seed must be an integer"):
        split_records(_records(rb2te, 3), seed=1.5)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ hash


def test_records_hash_is_order_independent_and_content_sensitive(rb2te: Structure) -> None:
    recs = _records(rb2te, 6)
    h = records_hash(recs)
    assert len(h) == 64
    assert records_hash(list(reversed(recs))) == h
    assert records_hash(recs[:-1]) != h
    assert records_hash([*recs, recs[0]]) != h  # duplicates count

    changed = _records(rb2te, 6)
    changed[2].tensor[0, 0] += 1e-6
    assert records_hash(changed) != h

    moved = _records(rb2te, 6)
    moved[3].structure.translate_sites([0], [0.01, 0.0, 0.0])
    assert records_hash(moved) != h


def test_records_hash_ignores_negative_zero_and_rounding_noise(rb2te: Structure) -> None:
    a = _dielectric_record(rb2te)
    b = _dielectric_record(rb2te)
    b.tensor[0, 1] = -0.0
    b.tensor[1, 1] *= 1 + 1e-15
    assert record_hash(a) == record_hash(b)
    c = _dielectric_record(rb2te)
    c.provenance["note"] = "different provenance"
    assert record_hash(a) == record_hash(c)
