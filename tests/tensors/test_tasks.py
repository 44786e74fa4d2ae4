"""The task registry is the one source of every per-task table in the package."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import atomate2_gmt
from atomate2_gmt.tensors.tasks import (
    DFPT_PART_KIND,
    KIND_RANK,
    KIND_SPECS,
    KINDS,
    TASK_SPECS,
    TASKS,
    check_task,
    task_spec,
)

SRC = Path(atomate2_gmt.__file__).parent

# Per-task tables outside the registry that are not derived from it, and why. Everything else
# that lists every task is a value computed from TASK_SPECS.
_ALLOWED_TASK_LITERALS = {
    # what each Materials Project file / field holds: a property of that data source
    "data/mp.py",
    # ABINIT perturbations differ per property: its own table of what it can compute
    "dfpt/abinit/settings.py",
    # a typing.Literal must be written out; the module asserts it equals TASKS at import
    "web/api.py",
    # the directional quantity each surface plot shows (a plotting choice)
    "plotting.py",
}


def test_physics_of_the_registry() -> None:
    """Units and ranks are the project's conventions (docs/conventions.md)."""
    assert TASKS == ("dielectric", "dielectric_total", "piezo", "elastic")
    assert {t: s.units for t, s in TASK_SPECS.items()} == {
        "dielectric": "dimensionless",
        "dielectric_total": "dimensionless",
        "piezo": "C/m^2",
        "elastic": "GPa",
    }
    assert {t: s.shape for t, s in TASK_SPECS.items()} == {
        "dielectric": (3, 3),
        "dielectric_total": (3, 3),
        "piezo": (3, 3, 3),
        "elastic": (3, 3, 3, 3),
    }
    # the training target: ε∞ clamped-ion, ε0 total, relaxed-ion e and C (what MP reports)
    assert {t: s.dfpt_part for t, s in TASK_SPECS.items()} == {
        "dielectric": "dielectric_electronic",
        "dielectric_total": "dielectric_total",
        "piezo": "piezo_total",
        "elastic": "elastic_relaxed",
    }
    assert task_spec("piezo").unit_suffix == " (C/m²)"
    assert task_spec("dielectric").unit_suffix == ""
    # every task is trained on a DFPT part of its own kind, and no two tasks share a part
    parts = [s.dfpt_part for s in TASK_SPECS.values()]
    assert len(set(parts)) == len(parts)
    assert all(DFPT_PART_KIND[s.dfpt_part] == s.kind for s in TASK_SPECS.values())
    # derived fields are top-level document fields: no two tasks may write the same one
    fields = [f for s in TASK_SPECS.values() for f in s.derived_fields]
    assert len(set(fields)) == len(fields)


def test_every_table_agrees_with_the_registry() -> None:
    from atomate2_gmt.data import records
    from atomate2_gmt.jobs.predict import DEFAULT_TASKS
    from atomate2_gmt.model import config
    from atomate2_gmt.query import FIELD_UNITS, METAL_EXCLUDED
    from atomate2_gmt.schemas import dfpt, fields
    from atomate2_gmt.tensors import bounds, conventions
    from atomate2_gmt.web.common import DFPT_PARTS as WEB_DFPT_PARTS
    from atomate2_gmt.web.common import UNITS as TASK_UNITS_SHOWN

    assert records.TASKS == TASKS
    assert {t: s.units for t, s in TASK_SPECS.items()} == records.TASK_UNITS
    assert {t: s.rank for t, s in TASK_SPECS.items()} == records.TASK_RANK
    assert {t: s.kind for t, s in TASK_SPECS.items()} == config.TASK_KIND
    assert config.TASK_UNITS == records.TASK_UNITS
    assert dict(KIND_RANK) == conventions.TENSOR_ORDER
    assert conventions.KINDS == KINDS == tuple(KIND_SPECS)
    assert all(conventions.kind_of(t) == s.kind for t, s in TASK_SPECS.items())
    assert all(conventions.kind_of(p) == k for p, k in DFPT_PART_KIND.items())
    assert {s.dfpt_part: t for t, s in TASK_SPECS.items()} == dfpt.PART_TASK
    assert {t: s.dfpt_part for t, s in TASK_SPECS.items()} == dfpt.TASK_PART
    assert {p: (k, KIND_SPECS[k].units) for p, k in DFPT_PART_KIND.items()} == dfpt.DFPT_PARTS
    assert bounds.TASK_BOUNDS == dfpt.TASK_PART
    assert fields.TASKS == TASKS
    assert {t: s.derived_fields for t, s in TASK_SPECS.items()} == fields.DERIVED_FIELDS
    assert {t: s.default_sort for t, s in TASK_SPECS.items()} == fields.DEFAULT_SORT
    assert "born_stable" in fields.DERIVED_FIELDS["elastic"]
    assert "born_stable" not in fields.SORT_FIELDS["elastic"]  # a boolean is a filter
    assert METAL_EXCLUDED == ("dielectric", "dielectric_total", "piezo")
    assert DEFAULT_TASKS == ("dielectric", "piezo", "elastic")  # screening without a task list
    assert TASK_UNITS_SHOWN == {"dielectric": "dimensionless", "dielectric_total": "dimensionless",
                                "piezo": "C/m²", "elastic": "GPa"}  # fmt: skip
    derived_units = {  # the derived fields' units (FIELD_UNITS also holds the source's fields)
        "dielectric_mean": "",
        "dielectric_eig_max": "",
        "dielectric_total_mean": "",
        "dielectric_total_eig_max": "",
        "e_ij_max": "C/m²",
        "e_long_max": "C/m²",
        "e_norm": "C/m²",
        "K_VRH": "GPa",
        "G_VRH": "GPa",
        "AU": "",
        "born_stable": "",
    }
    assert {name: FIELD_UNITS[name] for name in derived_units} == derived_units
    assert tuple(DFPT_PART_KIND) == WEB_DFPT_PARTS
    for task, spec in TASK_SPECS.items():
        for alias, field in spec.sort_aliases.items():
            assert fields.resolve_sort_field(task, alias) == field
        assert fields.resolve_sort_field(task, None) == spec.default_sort


@pytest.mark.parametrize("bad", ["bandgap", "", "Piezo", None, 3])
def test_unknown_task_names_the_valid_ones(bad: object) -> None:
    from atomate2_gmt.data.records import validate_task
    from atomate2_gmt.model.config import check_task as config_check_task

    expected = f"unknown task {bad!r}; valid tasks: dielectric, dielectric_total, piezo, elastic"
    for check in (task_spec, check_task, validate_task, config_check_task):
        with pytest.raises(ValueError) as err:
            check(bad)  # type: ignore[arg-type]
        assert str(err.value) == expected
    assert check_task("dielectric_total") == "dielectric_total"


def test_inconsistent_specs_are_refused() -> None:
    piezo = task_spec("piezo")
    with pytest.raises(ValueError, match="unknown tensor kind 'magnetic'"):
        replace(piezo, kind="magnetic")
    with pytest.raises(ValueError, match="DFPT part 'elastic_relaxed' is not a piezo part"):
        replace(piezo, dfpt_part="elastic_relaxed")
    with pytest.raises(ValueError, match="default sort 'born_stable' is not a sort field"):
        replace(task_spec("elastic"), default_sort="born_stable")
    with pytest.raises(AttributeError):
        piezo.units = "GPa"  # type: ignore[misc]


def test_registry_is_the_only_table_of_tasks() -> None:
    """No module but the registry writes out a dict or tuple of every task name."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "tensors/tasks.py" or rel in _ALLOWED_TASK_LITERALS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                names = node.keys
            elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                names = node.elts  # type: ignore[assignment]
            else:
                continue
            strings = {n.value for n in names if isinstance(n, ast.Constant)}
            if set(TASKS) <= strings:
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, f"task tables outside tensors/tasks.py: {offenders}"


def test_registry_imports_without_torch() -> None:
    code = (
        "import sys; import atomate2_gmt.tensors.tasks, atomate2_gmt.schemas.fields; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tensor_kinds_own_their_tolerances_floors_and_bounds() -> None:
    """Every threshold a label or a DFPT result is checked against is read from its kind."""
    from atomate2_gmt.data import mp
    from atomate2_gmt.dfpt import validation
    from atomate2_gmt.tensors import bounds

    assert {k: s.residual_tolerance for k, s in KIND_SPECS.items()} == {
        "dielectric": 0.05, "piezo": 0.01, "elastic": 0.05,
    }  # fmt: skip
    assert {k: s.residual_tolerance for k, s in KIND_SPECS.items()} == validation.SYMMETRY_TOLERANCE
    assert {k: s.residual_floor for k, s in KIND_SPECS.items()} == validation.RESIDUAL_FLOOR
    # the MP label filter and the DFPT check apply one tolerance per kind
    assert dict(mp.RESIDUAL_THRESHOLDS) == {
        t: validation.SYMMETRY_TOLERANCE[s.kind] for t, s in TASK_SPECS.items()
    }
    assert set(bounds.PHYSICAL_BOUNDS) == set(DFPT_PART_KIND)
    for part, (what, bound, unit) in bounds.PHYSICAL_BOUNDS.items():
        kind = KIND_SPECS[DFPT_PART_KIND[part]]
        assert (what, bound, unit) == (kind.bounded, kind.part_bounds[part], kind.unit_suffix)
    assert {t: s.bound for t, s in TASK_SPECS.items()} == {
        "dielectric": 1e3, "dielectric_total": 1e4, "piezo": 100.0, "elastic": 2000.0,
    }  # fmt: skip
    # a tensor one step beyond its task's bound is refused, one within it is not
    import numpy as np

    for task, spec in TASK_SPECS.items():
        tensor = np.zeros(spec.shape)
        tensor[(0,) * spec.rank] = 0.99 * spec.bound
        assert bounds.physical_bound_problem(task, tensor) is None
        tensor[(0,) * spec.rank] = 1.01 * spec.bound
        assert "beyond any known material" in str(bounds.physical_bound_problem(task, tensor))


def test_one_data_source_table_per_task() -> None:
    from atomate2_gmt.data.mp import MP_SOURCES, load_mp

    assert set(MP_SOURCES) == set(TASKS)
    dataset = load_mp("dielectric_total")
    prov = dataset.records[0].provenance
    source = MP_SOURCES["dielectric_total"]
    assert (prov["dataset"], prov["field"], prov["citation"]) == (
        source.file, source.field, source.citation,
    )  # fmt: skip
    assert dataset.residual_field == "eps_total"
    assert load_mp("dielectric").residual_field == "eps_electronic"  # computed at load


def test_derived_fields_come_from_the_task_spec() -> None:
    """Each task's document fields are its spec's, computed by its kind's quantities, and
    declared on the prediction document (no field is added to it by hand)."""
    import numpy as np

    from atomate2_gmt.schemas.derived import KIND_QUANTITIES, derived_quantities
    from atomate2_gmt.schemas.prediction import GMTPredictionDoc

    assert set(KIND_QUANTITIES) == set(KINDS)
    declared = GMTPredictionDoc.model_fields
    for task, spec in TASK_SPECS.items():
        tensor = np.zeros(spec.shape)
        if spec.kind == "dielectric":
            tensor = np.diag([2.0, 3.0, 4.0])
        out = derived_quantities(task, tensor, np.eye(3))
        assert set(spec.derived_fields) <= set(out)
        for name in spec.derived_fields:
            assert name in declared, f"{name} is not a declared field of GMTPredictionDoc"
    out = derived_quantities("dielectric_total", np.diag([2.0, 3.0, 4.0]))
    assert (out["dielectric_total_mean"], out["dielectric_total_eig_max"]) == (3.0, 4.0)
    assert "dielectric_mean" not in out
    source = (SRC / "schemas" / "derived.py").read_text()
    assert "task ==" not in source
    assert "task in (" not in source
