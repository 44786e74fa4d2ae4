"""The curation variant: which shipped piezo records it removes, and why."""

from __future__ import annotations

import numpy as np
import pytest

from atomate2_gmt.data.curation import CURATION_RULES, MAX_PIEZO_NORM, curate, curation_problem
from atomate2_gmt.data.mp import load_mp


@pytest.fixture(scope="module")
def piezo():
    return load_mp("piezo").records


def test_curation_removes_exactly_the_piezo_records_beyond_the_bound(piezo):
    kept, removed = curate(piezo)
    norms = {r.id: float(np.linalg.norm(r.tensor)) for r in piezo}
    assert set(removed) == {i for i, n in norms.items() if n > MAX_PIEZO_NORM}
    # the two hypothetical P1 cells of the shipped set (documented in data.curation)
    assert set(removed) == {"mp-33319", "mp-557873"}
    assert removed["mp-33319"] == "|e|_F = 87.6 C/m² > 30 C/m²"
    assert len(kept) + len(removed) == len(piezo)
    assert all(curation_problem(r) is None for r in kept)
    # textbook piezoelectrics stay
    assert {"mp-2133", "mp-804", "mp-3666"} <= {r.id for r in kept}


def test_curation_leaves_other_tasks_alone():
    records = load_mp("dielectric").records[:50]
    kept, removed = curate(records)
    assert removed == {}
    assert len(kept) == 50
    assert set(CURATION_RULES) == {"piezo"}
