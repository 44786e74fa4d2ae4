"""Selection policy: thresholds, top-k, filters, diversity, never twice, clear errors."""

from __future__ import annotations

import pytest

from atomate2_gmt.jobs.select import SelectionPolicy, _mark_selected, select_candidates
from atomate2_gmt.query import CandidateQuery
from atomate2_gmt.schemas.prediction import DFPTSelection
from atomate2_gmt.stores import EmbeddedStore, upsert_predictions
from tests.stores.gmt_store_docs import STRUCTURES, make_doc


def _expanded(name):
    s = STRUCTURES[name].copy()
    s.scale_lattice(s.volume * 1.1)
    return s


@pytest.fixture
def store(tmp_path):
    docs = [
        make_doc("ZnO", e_max=1.0, eps=(3.0, 3.0, 4.0), K=140.0, G=45.0),
        make_doc("CdS", e_max=0.4, eps=(5.0, 5.0, 5.5), K=60.0, G=15.0),
        make_doc("GaAs", e_max=0.15, eps=(10.0, 10.0, 10.0), K=75.0, G=33.0),
        make_doc("NaCl", e_max=0.0, eps=(2.3, 2.3, 2.3), K=25.0, G=15.0),
        make_doc("PbTiO3", e_max=3.5, eps=(8.0, 8.0, 6.0), K=100.0, G=-5.0),
        make_doc("TiO2", e_max=0.0, eps=(7.0, 7.0, 8.5), K=210.0, G=110.0),
        # another Zn-O crystal (same chemical system, smaller response), and the same ZnO
        # structure predicted by a second model version (never picked twice)
        make_doc("ZnO", source="ZnO-b.cif", structure=_expanded("ZnO"), e_max=0.9),
        make_doc("ZnO", version="v2", e_max=0.95),
    ]
    s = EmbeddedStore(path=str(tmp_path / "s.sqlite"), collection_name="p", key="prediction_id")
    upsert_predictions(s, docs)
    return s


def _formulas(docs):
    return [d["formula_pretty"] for d in docs]


def test_top_k_by_value_with_diversity(store):
    picks = select_candidates(store, SelectionPolicy(query="piezo", top_k=3))
    assert _formulas(picks) == ["TiPbO3", "ZnO", "CdS"]  # one ZnO only (max_per_chemsys=1)
    two = select_candidates(store, SelectionPolicy(query="piezo", top_k=3, max_per_chemsys=2))
    # the ZnO structure counts once, with its latest model version's prediction (v2: 0.95)
    assert [d["e_ij_max"] for d in two][:3] == pytest.approx([3.5, 0.95, 0.9])


def test_thresholds_and_filters(store):
    policy = SelectionPolicy(
        query=CandidateQuery(prop="piezo", min_value=0.3, exclude_elements=["Pb", "Cd"]), top_k=5
    )
    assert _formulas(select_candidates(store, policy)) == ["ZnO"]
    stable = SelectionPolicy(query=CandidateQuery(prop="elastic", born_stable=True), top_k=5)
    assert "TiPbO3" not in _formulas(select_candidates(store, stable))  # G < 0: not Born-stable
    assert _formulas(select_candidates(store, SelectionPolicy(query="dielectric", top_k=1))) == [
        "GaAs"
    ]


def test_never_picked_twice(store):
    first = select_candidates(store, SelectionPolicy(query="piezo", top_k=2))
    _mark_selected(store, first, DFPTSelection(at="now", code="abinit"))
    second = select_candidates(store, SelectionPolicy(query="piezo", top_k=2))
    assert not {d["prediction_id"] for d in first} & {d["prediction_id"] for d in second}
    assert store.count({"dfpt_selected.code": "abinit"}) == 2
    assert store.count() == 8  # marking kept every document whole


def test_bad_policies_are_clear_errors(store):
    with pytest.raises(ValueError, match="unknown property 'bandgap'"):
        SelectionPolicy(query="bandgap")
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        SelectionPolicy(top_k=0)
    with pytest.raises(ValueError, match="cannot sort property 'piezo' on 'K_VRH'"):
        SelectionPolicy(query={"prop": "piezo", "sort": "K_VRH"})
    with pytest.raises(ValueError, match=r"needs the ensemble spread uncertainty.e_ij_max"):
        select_candidates(store, SelectionPolicy(query="piezo", strategy="ucb"))
