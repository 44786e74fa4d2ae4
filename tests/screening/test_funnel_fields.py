"""The funnel's document fields without a potential: what a document says it is (hypothetical,
where its stability comes from), and how queries treat unrelaxed generated crystals and the
documents a relaxation superseded (embedded SQLite store)."""

from __future__ import annotations

import numpy as np
import pytest

from atomate2_gmt.query import query_candidates, relaxation_label, stability_label
from atomate2_gmt.schemas.prediction import GMTPredictionDoc, SourceProperties
from atomate2_gmt.stores import EmbeddedStore, upsert_predictions
from tests.structures import NACL, ZNO


def _isotropic_elastic(lam: float, mu: float) -> list:
    d = np.eye(3)
    c = lam * np.einsum("ij,kl->ijkl", d, d) + mu * (
        np.einsum("ik,jl->ijkl", d, d) + np.einsum("il,jk->ijkl", d, d)
    )
    return c.tolist()


def _doc(structure, source, k_scale, **kwargs):
    pred = {"elastic": {"state": "successful", "tensor": _isotropic_elastic(50 * k_scale, 30)}}
    return GMTPredictionDoc.from_predictions(
        structure,
        pred,
        {"elastic": {"version": "t1"}},
        source=source,
        domain_distance={"elastic": 0.5},
        **kwargs,
    )


def test_origin_fields():
    generated = _doc(ZNO, "gen", 1.0, provenance={"generator": "substitution"})
    assert generated.hypothetical is True
    assert generated.stability_source is None
    assert generated.energy_above_hull is None
    mp = _doc(
        NACL,
        "mp-22862",
        1.0,
        source_properties=SourceProperties(material_id="mp-22862", energy_above_hull=0.0),
    )
    assert mp.hypothetical is False
    assert mp.stability_source == "source: Materials Project"
    alex = _doc(
        NACL,
        "x",
        1.0,
        source_properties=SourceProperties(material_id="agm002153", energy_above_hull=0.01),
    )
    assert alex.stability_source == "source: Alexandria"
    assert _doc(NACL, "file.cif", 1.0).hypothetical is None
    failed = GMTPredictionDoc.from_failure("gen2", "bad", provenance={"generator": "substitution"})
    assert failed.hypothetical is True


def test_labels():
    assert relaxation_label(None) is None
    assert (
        relaxation_label({"potential": "CHGNet", "potential_version": "0.3.0", "converged": True})
        == "CHGNet 0.3.0"
    )
    assert relaxation_label({"potential": "CHGNet", "converged": False}) == "CHGNet, not converged"
    row = {
        "mlip_energy_above_hull": 0.0834,
        "stability_source": "MLIP estimate: CHGNet 0.3.0 vs 4 known phases",
    }
    assert stability_label(row) == "0.083 eV/atom (MLIP estimate: CHGNet 0.3.0 vs 4 known phases)"
    row = {"energy_above_hull": 0.0, "stability_source": "source: Materials Project"}
    assert stability_label(row) == "0.000 eV/atom (source: Materials Project)"
    assert stability_label({"hypothetical": True}) == "unknown, hypothetical, unrelaxed"
    assert (
        stability_label({"hypothetical": True, "relaxed": "CHGNet 0.3.0"})
        == "unknown, hypothetical"
    )
    assert stability_label({}) == "unknown"


def test_queries_leave_out_unrelaxed_generated_and_superseded_documents(tmp_path):
    store = EmbeddedStore(str(tmp_path / "s.sqlite"), "docs", key="prediction_id")
    unrelaxed = _doc(ZNO, "gen:ZnO", 3.0, provenance={"generator": "substitution"})
    relaxed_structure = ZNO.copy()
    relaxed_structure.scale_lattice(ZNO.volume * 1.05)
    relaxed = _doc(relaxed_structure, "gen:ZnO", 2.0, provenance={"generator": "substitution"})
    relaxed_dict = relaxed.to_store_dict()
    relaxed_dict.update(
        relaxation={"potential": "CHGNet", "potential_version": "0.3.0", "converged": True},
        mlip_energy_above_hull=0.02,
        stability_source="MLIP estimate: CHGNet 0.3.0 vs 3 known phases",
    )
    relaxed_doc = GMTPredictionDoc.model_validate(relaxed_dict)
    other = _doc(
        ZNO.copy().replace_species({"Zn": "Cd"}), "gen:CdO", 5.0, provenance={"generator": "x"}
    )
    known = _doc(NACL, "nacl.cif", 1.0)
    upsert_predictions(store, [unrelaxed, relaxed_doc, other, known])

    # by default: everything, the unrelaxed CdO first (highest K), flagged
    rows = query_candidates(store, "elastic", top=10)
    assert [r["source"] for r in rows] == ["gen:CdO", "gen:ZnO", "gen:ZnO", "nacl.cif"]
    # the funnel's ranking: generated crystals only once relaxed
    rows = query_candidates(store, "elastic", top=10, include_unrelaxed_hypothetical=False)
    assert [(r["source"], r["relaxed"]) for r in rows] == [
        ("gen:ZnO", "CHGNet 0.3.0"),
        ("nacl.cif", None),
    ]
    assert rows[0]["mlip_energy_above_hull"] == pytest.approx(0.02)
    assert rows[0]["stability_source"].startswith("MLIP estimate")
    assert rows[0]["hypothetical"] is True
    # once the input document points to its relaxed one, queries show the relaxed one only
    stored = next(store.query({"prediction_id": unrelaxed.prediction_id}))
    stored.pop("_id", None)
    stored["relaxed_prediction_id"] = relaxed_doc.prediction_id
    upsert_predictions(store, [stored])
    rows = query_candidates(store, "elastic", top=10)
    assert [r["prediction_id"] for r in rows if r["source"] == "gen:ZnO"] == [
        relaxed_doc.prediction_id
    ]
    assert len(query_candidates(store, "elastic", top=10, include_superseded=True)) == 4
    # the funnel's shortlist: the first screening's predictions, superseded ones included
    rows = query_candidates(store, "elastic", top=10, include_superseded=True, relaxed=False)
    assert [r["prediction_id"] for r in rows] == [
        other.prediction_id,
        unrelaxed.prediction_id,
        known.prediction_id,
    ]
    rows = query_candidates(store, "elastic", top=10, relaxed=True)
    assert [r["prediction_id"] for r in rows] == [relaxed_doc.prediction_id]
