"""What keeps queries fast at any store size, as behaviour: the presets filter and rank on
stored figures (equal to the rule computed from the stored tensors), every ranked query walks
the index of its sort field (SQLite's query plan), counts past their time budget are estimated
and say so, a cursor gives the same page as skipping, and older documents are migrated."""

from __future__ import annotations

import numpy as np
import pytest
from gmt_store_docs import STRUCTURES, make_doc
from pymatgen.core import Structure

from atomate2_gmt.query import CandidateQuery, query_candidates, ranked_documents
from atomate2_gmt.schemas.fields import PREDICTION_SCHEMA_VERSION
from atomate2_gmt.schemas.prediction import (
    content_hash,
    identity_problem,
    migrate_prediction_dict,
)
from atomate2_gmt.schemas.stored import expand_prediction_dict
from atomate2_gmt.stores import EmbeddedStore, MatchCount, count_matches, upsert_predictions

NAMES = ("ZnO", "CdS", "GaAs", "NaCl", "PbTiO3", "TiO2")


def _varied_docs(n: int) -> list:
    """``n`` documents of the six structures, scaled cells (distinct crystals), with spread-out
    tensors, band gaps, hull energies and ensemble spreads (some missing)."""
    rng = np.random.default_rng(7)
    docs = []
    for i in range(n):
        name = NAMES[i % len(NAMES)]
        s = STRUCTURES[name].copy()
        s.scale_lattice(s.volume * (1.0 + 0.01 * (i // len(NAMES) + 1)))
        eps = tuple(float(x) for x in rng.uniform(5, 70, 3))
        docs.append(
            make_doc(
                name,
                structure=s,
                source=f"{name}-{i}.cif",
                e_max=float(rng.uniform(0.05, 2.0)),
                eps=eps,
                band_gap=None if i % 5 == 0 else float(rng.uniform(0.0, 6.0)),
                energy_above_hull=None if i % 7 == 0 else float(rng.uniform(0, 0.3)),
                uncertainty=(
                    {"dielectric_total_mean": float(rng.uniform(0, 20))} if i % 2 else None
                ),
                seed=i,
            )
        )
    return docs


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    store = EmbeddedStore(str(tmp_path_factory.mktemp("s") / "s.sqlite"), "p", key="prediction_id")
    store.connect()
    docs = _varied_docs(36)
    assert upsert_predictions(store, docs) == len(docs)
    return store


def _all(store) -> list[dict]:
    """Every document in its read form (tensor forms computed from the stored Voigt form)."""
    return [expand_prediction_dict(d) for d in store.query({})]


def _not_metal(doc: dict) -> bool:
    """The queries' metal rule for ε and e: the source's band gap, else is_metal, else the
    likely-metal flag."""
    if doc.get("band_gap") is not None:
        return doc["band_gap"] > 0
    if doc.get("is_metal") is not None:
        return not doc["is_metal"]
    return doc.get("likely_metal") is not True


# --------------------------------------------------------------------------------------------
# stored figures = the rule computed from the stored tensors
# --------------------------------------------------------------------------------------------


def test_jarvis_piezo_selects_what_the_stored_tensors_say(varied):
    expected = {}
    for doc in _all(varied):
        voigt = np.asarray(doc["predictions"]["piezo"]["voigt_ieee"])  # IEEE-frame e_iJ
        value = float(np.abs(voigt).max())
        assert doc["e_ij_abs_max"] == pytest.approx(value, rel=1e-12)
        if value >= 0.5 and _not_metal(doc):
            expected[doc["prediction_id"]] = value
    rows = query_candidates(varied, CandidateQuery(preset="jarvis-piezo", top=100))
    got = {r["prediction_id"]: r["e_ij_abs_max"] for r in rows}
    assert got == pytest.approx(expected)
    assert 0 < len(got) < 36
    assert [r["e_ij_abs_max"] for r in rows] == sorted(got.values(), reverse=True)


def test_riebesell_selects_and_ranks_what_the_stored_tensors_say(varied):
    expected = {}
    for doc in _all(varied):
        gap = doc.get("band_gap")
        eps_total = np.asarray(doc["predictions"]["dielectric_total"]["tensor"])
        eps_inf = np.asarray(doc["predictions"]["dielectric"]["tensor"])
        if gap is None:
            assert doc["phi"] is None
            assert doc["phi_minus_sigma"] is None
            continue
        phi = gap * float(np.linalg.eigvalsh(eps_total).mean())
        sigma = gap * (doc.get("uncertainty") or {}).get("dielectric_total_mean", 0.0)
        assert doc["phi"] == pytest.approx(phi, rel=1e-12)
        assert doc["phi_minus_sigma"] == pytest.approx(phi - sigma, rel=1e-12)
        hull = doc.get("energy_above_hull")
        if (
            phi > 240
            and gap > 0
            and hull is not None
            and hull < 0.1
            and np.linalg.eigvalsh(eps_inf).mean() <= 100
        ):
            expected[doc["prediction_id"]] = phi - sigma
    rows = query_candidates(varied, CandidateQuery(preset="riebesell-dielectric", top=100))
    assert [r["prediction_id"] for r in rows] == sorted(expected, key=lambda k: -expected[k])
    assert rows  # the rule selects something here


# --------------------------------------------------------------------------------------------
# index use (SQLite's own query plan)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "index_of"),
    [
        ({"prop": "piezo", "sort": "e_ij_max", "exclude_elements": "Pb,Cd"}, "e_ij_max"),
        ({"preset": "mp-piezo"}, "e_ij_max"),
        ({"preset": "jarvis-piezo"}, "e_ij_abs_max"),
        ({"preset": "jarvis-dielectric"}, "dielectric_total_mean"),
    ],
)
def test_ranked_queries_walk_the_index_of_their_sort_field(varied, options, index_of):
    query = CandidateQuery.build(top=20, **options)
    assert query.store_hint() is None
    plan = varied.query_plan(query.criteria(), query.store_sort(), limit=20)
    assert any(f"ix_p_{index_of}_prediction_id" in line for line in plan), plan
    assert not any("TEMP B-TREE" in line for line in plan), plan  # no sort of every match
    assert not any(line.startswith("SCAN p") and "INDEX" not in line for line in plan), plan


def test_the_phi_preset_finds_its_hits_on_the_phi_index(varied):
    query = CandidateQuery.build(preset="riebesell-dielectric", top=20)
    plan = varied.query_plan(query.criteria(), query.store_sort(), 20, query.store_hint())
    assert plan[0].startswith("SEARCH p USING INDEX ix_p_phi_prediction_id"), plan
    assert "(<expr>>?)" in plan[0]  # the range Φ > 240 on the index, not a scan


def test_a_cursor_page_walks_the_index_from_the_cursor(varied):
    query = CandidateQuery.build(prop="piezo", sort="e_ij_max")
    first, _ = ranked_documents(varied, query, 0, 5)
    last = first[-1]
    second, _ = ranked_documents(
        varied, query, 5, 5, after=(last["e_ij_max"], last["prediction_id"])
    )
    by_skip, _ = ranked_documents(varied, query, 5, 5)
    assert [d["prediction_id"] for d in second] == [d["prediction_id"] for d in by_skip]
    asc = CandidateQuery.build(prop="piezo", sort="e_ij_max", ascending=True)
    first, _ = ranked_documents(varied, asc, 0, 7)
    cursor = (first[-1]["e_ij_max"], first[-1]["prediction_id"])
    assert [d["prediction_id"] for d in ranked_documents(varied, asc, 7, 4, after=cursor)[0]] == [
        d["prediction_id"] for d in ranked_documents(varied, asc, 7, 4)[0]
    ]


def test_cursor_ties_on_the_sort_value_are_broken_by_the_key(tmp_path):
    store = EmbeddedStore(str(tmp_path / "t.sqlite"), "p", key="prediction_id")
    store.connect()
    base = make_doc("ZnO", e_max=1.0).to_store_dict()
    docs = []
    for i in range(9):  # three groups of three equal e_ij_max
        d = dict(base)
        d["structure_key"] = f"sk-{i}"
        d["prediction_id"] = f"sk-{i}:v1"
        d["e_ij_max"] = float(i // 3)
        docs.append(d)
    store.update(docs, key="prediction_id")
    query = CandidateQuery.build(prop="piezo", sort="e_ij_max")
    everything = [d["prediction_id"] for d in ranked_documents(store, query, 0, 9)[0]]
    for k in range(1, 9):
        prev = ranked_documents(store, query, k - 1, 1)[0][0]
        page = ranked_documents(store, query, k, 9, after=(prev["e_ij_max"], prev["prediction_id"]))
        assert [d["prediction_id"] for d in page[0]] == everything[k:]


# --------------------------------------------------------------------------------------------
# counts: exact within the budget, else estimated and marked
# --------------------------------------------------------------------------------------------


def test_counts_are_exact_within_the_budget_and_estimated_past_it(varied):
    criteria = CandidateQuery.build(prop="piezo", exclude_elements="Pb").criteria()
    exact = varied.count(criteria)
    assert count_matches(varied, criteria, budget_s=10.0) == MatchCount(exact)
    assert MatchCount(exact).label() == str(exact)
    estimate = count_matches(varied, criteria, budget_s=0.0, sample=36)
    assert estimate.estimated
    assert estimate.sampled == 36
    assert estimate.n == exact  # a sample of every row: the exact number, still marked
    assert estimate.label() == f"about {exact}"
    small = count_matches(varied, criteria, budget_s=0.0, sample=12)
    assert small.estimated
    assert small.sampled == 12
    assert abs(small.n - exact) <= 12  # 12 of 36 rows: a sampling error, not a scan
    assert varied.count_within(criteria, 0.0) is None  # the budget really stops SQLite


def test_several_counts_share_one_budget_and_one_sample(varied):
    """A query's left-out counts: exact where the one budget allows, else estimated together
    from one draw of rows (read once), each as its own count would be; a filter SQL cannot
    express (``$regex``) is estimated from the documents of the same draw."""
    from atomate2_gmt.stores.counting import count_matches_each

    criteria = [
        CandidateQuery.build(prop="piezo", exclude_elements="Pb").criteria(),
        CandidateQuery.build(prop="elastic").criteria(),
        {"source": {"$regex": "^Zn"}},
    ]
    exact = [varied.count(c) for c in criteria]
    assert 0 < exact[2] < 36
    in_time = count_matches_each(varied, criteria, budget_s=10.0)
    assert in_time[:2] == [MatchCount(n) for n in exact[:2]]
    assert in_time[2].estimated  # SQL cannot count it: estimated, as count_matches does
    statements: list[str] = []
    varied._collection.set_trace_callback(statements.append)  # every SQL statement it runs
    try:
        shared = count_matches_each(varied, criteria, budget_s=0.0, sample=36)
    finally:
        varied._collection.set_trace_callback(None)
    assert all(n.estimated and n.sampled == 36 for n in shared)
    assert [n.n for n in shared] == exact  # a sample of every row: the exact numbers, marked
    assert [n.n for n in shared] == [
        count_matches(varied, c, budget_s=0.0, sample=36).n for c in criteria
    ]
    # for all three counts: one read of the drawn rows for the translated filters (and the
    # number of documents), one of their documents for the untranslatable one
    assert len([sql for sql in statements if "WHERE id IN" in sql]) == 2


def test_estimate_labels():
    assert MatchCount(1_020_000, estimated=True, sampled=400, hits=201).label() == "about 1.0e6"
    assert MatchCount(480, estimated=True, sampled=400, hits=3).label() == "about 480"
    no_hit = MatchCount(2500, estimated=True, sampled=400, hits=0)
    assert no_hit.label() == "fewer than about 2.5e3"
    assert no_hit.as_dict() == {"n": 2500, "estimated": True, "label": "fewer than about 2.5e3"}


def test_web_counts_say_when_they_are_estimated(varied, monkeypatch):
    from atomate2_gmt.stores import counting
    from atomate2_gmt.web.service import MatchCounts, candidate_page

    query = CandidateQuery.build(prop="piezo")
    rows, total = candidate_page(varied, query, 0, 5, MatchCounts())
    assert total == MatchCount(varied.count(query.criteria()))
    assert [r["sort_value"] for r in rows] == [r["e_ij_max"] for r in rows]
    monkeypatch.setattr(counting, "COUNT_BUDGET_S", 0.0)
    rows, total = candidate_page(varied, query, 0, 5, MatchCounts())
    assert total.estimated
    assert total.label().startswith("about ")


# --------------------------------------------------------------------------------------------
# migration
# --------------------------------------------------------------------------------------------


def test_a_schema_5_document_gains_the_stored_figures(tmp_path):
    current = make_doc(
        "ZnO", e_max=1.0, band_gap=3.0, uncertainty={"dielectric_total_mean": 2.0}
    ).to_store_dict()
    old = {k: v for k, v in current.items() if k not in ("e_ij_abs_max", "phi", "phi_minus_sigma")}
    old["schema_version"] = 5
    old.pop("content_hash")
    migrated = migrate_prediction_dict(old)
    assert migrated["schema_version"] == PREDICTION_SCHEMA_VERSION
    for field in ("e_ij_abs_max", "phi", "phi_minus_sigma"):
        assert migrated[field] == pytest.approx(current[field], rel=1e-12)
    assert migrated["phi"] - migrated["phi_minus_sigma"] == pytest.approx(3.0 * 2.0)
    store = EmbeddedStore(str(tmp_path / "m.sqlite"), "p", key="prediction_id")
    store.connect()
    store.update([old], key="prediction_id")
    assert query_candidates(store, CandidateQuery(preset="jarvis-piezo")) == []  # never mixed
    store.update([migrated], key="prediction_id")
    assert len(query_candidates(store, CandidateQuery(preset="jarvis-piezo"))) == 1


# --------------------------------------------------------------------------------------------
# the compact stored form
# --------------------------------------------------------------------------------------------


def test_documents_are_stored_compact_and_read_in_full(tmp_path):
    from atomate2_gmt.query import find_document
    from atomate2_gmt.stores.embedded import _dumps

    doc = make_doc("PbTiO3", e_max=1.0, band_gap=3.0)
    full = doc.to_store_dict()
    store = EmbeddedStore(str(tmp_path / "c.sqlite"), "p", key="prediction_id")
    store.connect()
    upsert_predictions(store, [doc])
    (text,) = store._collection.execute("SELECT doc FROM p").fetchone()
    assert len(text.encode()) < 0.65 * len(_dumps(full).encode())
    stored = next(store.query({}))
    for pred in stored["predictions"].values():
        assert set(pred) & {"tensor", "voigt_ieee", "derived", "time_s"} == set()
    assert "xyz" not in stored["structure"]["sites"][0]
    read = find_document(store, full["prediction_id"])
    for task, pred in full["predictions"].items():
        for form in ("tensor", "voigt", "voigt_ieee"):
            assert np.allclose(read["predictions"][task][form], pred[form], rtol=1e-12, atol=1e-12)
        assert read["predictions"][task]["derived"].keys() == pred["derived"].keys()
        assert read["predictions"][task]["time_s"] == pred["time_s"]
    assert Structure.from_dict(read["structure"]) == Structure.from_dict(full["structure"])
    assert identity_problem(stored, full["model_version"]) is None  # its hash holds stored


def test_a_schema_6_document_keeps_its_hash_and_migrates_to_the_compact_form():
    full = make_doc("ZnO", e_max=1.0, band_gap=3.0).to_store_dict()
    v6 = {k: v for k, v in full.items() if k != "ieee_rotation"}
    v6["schema_version"] = 6
    v6["content_hash"] = content_hash(v6)  # as schema 6 wrote it (full form)
    assert identity_problem(v6, full["model_version"]) is None
    migrated = migrate_prediction_dict(v6)
    assert migrated["schema_version"] == PREDICTION_SCHEMA_VERSION
    assert "tensor" not in migrated["predictions"]["piezo"]
    assert np.allclose(migrated["ieee_rotation"], full["ieee_rotation"])
    assert identity_problem(migrated, full["model_version"]) is None
    assert migrated["content_hash"] == full["content_hash"]  # the same content, either form
