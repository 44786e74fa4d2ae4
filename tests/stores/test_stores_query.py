"""query_candidates on the embedded store and on maggma's MemoryStore (same answers).

The documents (tests/stores/conftest.py) have these predicted values:

| crystal | e_ij_max | ε∞ eig max | K_VRH | G_VRH | centro | system     | Born stable |
|---------|----------|------------|-------|-------|--------|------------|-------------|
| ZnO     | 1.0      | 4.0        | 140   | 45    | no     | hexagonal  | yes         |
| CdS     | 0.4      | 5.5        | 60    | 15    | no     | hexagonal  | yes         |
| GaAs    | 0.15     | 10.0       | 75    | 33    | no     | cubic      | yes         |
| NaCl    | 0        | 2.3        | 25    | 15    | yes    | cubic      | yes         |
| TiPbO3  | 3.5      | 8.0        | 100   | -5    | no     | tetragonal | no          |
| TiO2    | 0        | 8.5        | 210   | 110   | yes    | tetragonal | yes         |
"""

from __future__ import annotations

import numpy as np
import pytest
from gmt_store_docs import make_doc
from maggma.stores import MemoryStore

from atomate2_gmt.query import CandidateQuery, query_candidates
from atomate2_gmt.schemas.prediction import GMTPredictionDoc
from atomate2_gmt.stores import EmbeddedStore, upsert_predictions


@pytest.fixture(params=["embedded", "memory"])
def store(request, tmp_path, screening_docs):
    if request.param == "embedded":
        s = EmbeddedStore(str(tmp_path / "q.sqlite"), "preds", key="prediction_id")
    else:
        s = MemoryStore("preds", key="prediction_id")
    s.connect()
    assert upsert_predictions(s, screening_docs) == len(screening_docs)
    return s


def _formulas(rows):
    return [r["formula"] for r in rows]


def test_piezo_top_by_e_ij_max(store):
    rows = query_candidates(store, "piezo", sort="e_ij_max", top=3)
    assert _formulas(rows) == ["TiPbO3", "ZnO", "CdS"]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert rows[0]["e_ij_max"] == pytest.approx(3.5)
    assert rows[1]["space_group"] == "P6_3mc"
    assert rows[1]["crystal_system"] == "Hexagonal"
    assert rows[1]["point_group"] == "6mm"
    assert rows[1]["is_centrosymmetric"] is False
    assert rows[1]["source"] == "ZnO.cif"
    assert rows[1]["model_version"] == "v1"
    assert "voigt" not in rows[0]


def test_filters(store):
    no_pb_cd = query_candidates(store, "piezo", sort="e_ij_max", exclude_elements="Pb,Cd")
    assert _formulas(no_pb_cd)[:2] == ["ZnO", "GaAs"]
    assert {"TiPbO3", "CdS"}.isdisjoint(_formulas(no_pb_cd))
    assert len(no_pb_cd) == 4
    polar = query_candidates(store, "piezo", sort=None, non_centrosymmetric=True)
    assert _formulas(polar) == ["TiPbO3", "ZnO", "CdS", "GaAs"]
    centro = query_candidates(store, "piezo", sort=None, non_centrosymmetric=False)
    assert sorted(_formulas(centro)) == ["NaCl", "TiO2"]
    hexagonal = query_candidates(store, "dielectric", sort="eig_max", crystal_system="HEXAGONAL")
    assert _formulas(hexagonal) == ["CdS", "ZnO"]
    oxides = query_candidates(store, "elastic", sort="K_VRH", include_elements=["O"])
    assert _formulas(oxides) == ["TiO2", "ZnO", "TiPbO3"]


def test_elastic_stability_and_ascending(store):
    stable = query_candidates(store, "elastic", sort="K_VRH", stable_only=True)
    assert _formulas(stable) == ["TiO2", "ZnO", "GaAs", "CdS", "NaCl"]
    everything = query_candidates(store, "elastic", sort="K_VRH")
    assert _formulas(everything) == ["TiO2", "ZnO", "TiPbO3", "GaAs", "CdS", "NaCl"]
    soft = query_candidates(store, "elastic", sort="G_VRH", ascending=True, top=2)
    assert soft[0]["formula"] == "TiPbO3"
    assert soft[1]["formula"] in ("CdS", "NaCl")
    assert soft[0]["G_VRH"] == pytest.approx(-5.0)
    assert soft[0]["born_stable"] is False
    assert soft[1]["G_VRH"] == pytest.approx(15.0)
    diel = query_candidates(store, "dielectric", sort="eig_max", ascending=True)
    assert [round(r["dielectric_eig_max"], 6) for r in diel] == [2.3, 4.0, 5.5, 8.0, 8.5, 10.0]
    total = query_candidates(store, "dielectric_total", sort="mean", top=1)
    assert total[0]["formula"] == "GaAs"
    assert total[0]["dielectric_total_mean"] == pytest.approx(20)


def test_tensors_on_request(store):
    row = query_candidates(store, "piezo", sort="e_ij_max", top=1, include_tensors=True)[0]
    assert row["units"] == "C/m^2"
    assert len(row["voigt"]) == 3
    assert len(row["voigt"][0]) == 6
    assert len(row["voigt_ieee"]) == 3
    # e_ij_max is the largest singular value of the IEEE-frame Voigt matrix
    assert np.linalg.svd(np.asarray(row["voigt_ieee"]))[1][0] == pytest.approx(3.5)


def test_failed_predictions_and_energy_above_hull(store):
    failed = GMTPredictionDoc.from_failure(
        "broken.cif", "unreadable structure file", tasks=["piezo"]
    )
    cds_hull = make_doc("CdS", e_max=0.4, energy_above_hull=0.05, version="v1")
    gaas_hull = make_doc("GaAs", e_max=0.15, energy_above_hull=0.0, version="v1")
    upsert_predictions(store, [failed, cds_hull, gaas_hull])
    rows = query_candidates(store, "piezo", state="failed")
    assert [(r["source"], r["error"]) for r in rows] == [
        ("broken.cif", "unreadable structure file")
    ]
    assert len(query_candidates(store, "piezo")) == 6  # the failure is not a candidate
    near_hull = query_candidates(store, "piezo", max_e_above_hull=0.01)
    assert _formulas(near_hull) == ["GaAs"]
    assert near_hull[0]["energy_above_hull"] == 0.0


def test_latest_model_version_wins(store):
    import time

    time.sleep(0.01)
    newer = make_doc("ZnO", version="v2", e_max=0.2, eps=(3.0, 3.0, 4.0), K=140.0, G=45.0)
    upsert_predictions(store, [newer])
    rows = query_candidates(store, "piezo", sort="e_ij_max")
    assert _formulas(rows)[:4] == ["TiPbO3", "CdS", "ZnO", "GaAs"]  # then NaCl, TiO2: e = 0
    assert len(rows) == 6
    assert rows[2]["model_version"] == "v2"
    assert rows[2]["e_ij_max"] == pytest.approx(0.2)
    both = query_candidates(store, "piezo", sort="e_ij_max", latest_only=False)
    assert _formulas(both).count("ZnO") == 2
    v1 = query_candidates(store, "piezo", sort="e_ij_max", model_version="v1")
    assert _formulas(v1)[:2] == ["TiPbO3", "ZnO"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prop": "bandgap"}, "unknown property 'bandgap'"),
        ({"prop": "piezo", "sort": "K_VRH"}, "valid sort keys: abs_max, e_ij_abs_max, e_ij_max"),
        ({"prop": "piezo", "exclude_elements": "Pb,Xx"}, "unknown element symbol 'Xx'"),
        ({"prop": "piezo", "crystal_system": "cubicc"}, "unknown crystal system 'cubicc'"),
        ({"prop": "piezo", "top": 0}, "top must be an integer from 1 to"),
        ({"prop": "piezo", "state": "done"}, "unknown state 'done'; valid: successful, failed"),
        ({"preset": "mp-piezzo"}, "unknown preset 'mp-piezzo'; valid: mp-piezo"),
        ({"preset": "mp-piezo", "prop": "elastic"}, "preset 'mp-piezo' sets prop='piezo'"),
        ({"prop": "piezo", "min_band_gap": -1}, "min_band_gap must be >= 0 eV"),
        ({"prop": "piezo", "model_version": {"$ne": None}}, "never query operators"),
        ({"prop": "piezo", "include_elements": "O", "exclude_elements": "O"}, "both included"),
        ({"prop": "piezo", "max_e_above_hull": -0.1}, "max_e_above_hull must be >= 0"),
    ],
)
def test_bad_queries_raise_value_errors(tmp_path, kwargs, message):
    store = EmbeddedStore(str(tmp_path / "empty.sqlite"), "preds", key="prediction_id")
    with pytest.raises(ValueError, match=message):
        query_candidates(store, CandidateQuery.build(**kwargs))


def test_documents_of_an_older_schema_are_never_mixed_in(store):
    """A version-1 document (e_ij_max defined in the file's frame) stays out of the ranking."""
    old = make_doc("ZnO", version="v0", source="old-ZnO.cif", e_max=9.0).to_store_dict()
    old.pop("schema_version")  # documents written before the field existed
    old["e_ij_max"] = 9.0
    store.update([old], key="prediction_id")
    rows = query_candidates(store, "piezo", top=10)
    assert "old-ZnO.cif" not in [r["source"] for r in rows]
    assert rows[0]["formula"] == "TiPbO3"
