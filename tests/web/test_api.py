"""The REST API over real stores (shipped-model predictions, a real VASP DFPT result fed back, the
seeded registry): every endpoint, its filters, and the answers to bad input."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from atomate2_gmt.report import dfpt_comparison
from atomate2_gmt.stores import candidate_store, training_store


def _docs(web_project: dict[str, Any]) -> list[dict[str, Any]]:
    return web_project["docs"]


METAL_EXCLUDED_FIELDS = {"dielectric_mean", "dielectric_eig_max", "e_ij_max", "e_long_max",
                         "e_norm"}  # fmt: skip


def _expected(
    docs: list[dict[str, Any]],
    field: str,
    ascending: bool = False,
    metals: bool | None = None,
    **eq: Any,
) -> list[str]:
    """prediction_ids ranked as the store should rank them (ties broken on prediction_id);
    likely metals left out of the dielectric and piezo rankings unless ``metals``."""
    if metals is None:
        metals = field not in METAL_EXCLUDED_FIELDS
    hits = [
        d
        for d in docs
        if d.get(field) is not None
        and all(_get(d, k) == v for k, v in eq.items())
        and (metals or d.get("likely_metal") is not True)
    ]
    hits.sort(key=lambda d: (d[field], d["prediction_id"]), reverse=not ascending)
    return [d["prediction_id"] for d in hits]


def _get(doc: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        doc = (doc or {}).get(part)
    return doc


def test_candidates_ranked_and_paged(client, web_project):
    docs = _docs(web_project)
    r = client.get("/candidates/")
    assert r.status_code == 200, r.text
    body = r.json()
    expected = _expected(docs, "dielectric_eig_max")
    metals = [d for d in docs if d.get("likely_metal")]
    assert metals  # the MP set has elemental metals and intermetallics
    assert body["meta"]["total_doc"] == len(expected) == len(docs) - len(metals)
    assert [row["prediction_id"] for row in body["data"]] == expected[:20]
    assert not any(row["likely_metal"] for row in body["data"])
    r = client.get("/candidates/", params={"include_metals": "true"})
    assert r.json()["meta"]["total_doc"] == len(docs)
    assert [row["prediction_id"] for row in r.json()["data"]] == _expected(
        docs, "dielectric_eig_max", metals=True
    )
    first = body["data"][0]
    assert first["rank"] == 1
    assert {"formula", "space_group", "point_group", "crystal_system", "dielectric_mean"} <= set(
        first
    )
    assert first["dfpt_state"] in (None, "accepted")

    r = client.get(
        "/candidates/",
        params={"property": "piezo", "sort": "e_long_max", "ascending": "true",
                "_page": 2, "_per_page": 4},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    rows = r.json()["data"]
    assert [row["prediction_id"] for row in rows] == _expected(docs, "e_long_max", True)[4:8]
    assert [row["rank"] for row in rows] == [5, 6, 7, 8]

    r = client.get("/candidates/", params={"property": "piezo", "sort": "e_long_max", "top": 3})
    assert [row["prediction_id"] for row in r.json()["data"]] == _expected(docs, "e_long_max")[:3]
    assert all(set(("e_ij_max", "e_long_max", "e_norm")) <= set(row) for row in rows)


def test_candidate_filters(client, web_project):
    docs = _docs(web_project)

    def ids(**params: Any) -> list[str]:
        r = client.get("/candidates/", params={"_limit": 100, **params})
        assert r.status_code == 200, r.text
        return [row["prediction_id"] for row in r.json()["data"]]

    cubic = ids(crystal_system="cubic")
    assert cubic == _expected(docs, "dielectric_eig_max", **{"symmetry.crystal_system": "Cubic"})
    assert len(cubic) >= 3
    with_o = ids(include_elements="O")
    assert with_o
    assert with_o == [
        d for d in _expected(docs, "dielectric_eig_max") if "O" in _doc(docs, d)["elements"]
    ]
    without_o = ids(exclude_elements="O,Na")
    assert not set(without_o) & set(with_o)
    assert all("Na" not in _doc(docs, d)["elements"] for d in without_o)
    polar = ids(property="piezo", non_centrosymmetric="true")
    assert polar == _expected(docs, "e_ij_max", is_centrosymmetric=False)
    stable = ids(property="elastic", born_stable="true")
    assert stable == _expected(docs, "K_VRH", born_stable=True)
    assert ids(dfpt="accepted") == [web_project["nacl_id"]]
    assert ids(dfpt="none") == [
        d for d in _expected(docs, "dielectric_eig_max") if d != web_project["nacl_id"]
    ]
    version = docs[0]["model_version"]
    assert len(ids(model_version=version, include_metals="true")) == len(docs)
    assert ids(property="elastic") == _expected(docs, "K_VRH")  # metals kept for elastic
    assert len(ids(property="elastic")) == len(docs)
    assert ids(property="elastic", include_metals="false") == _expected(docs, "K_VRH", metals=False)
    near = ids(max_domain_distance=1.0)
    assert near == [
        d
        for d in _expected(docs, "dielectric_eig_max")
        if _doc(docs, d)["domain_distance"]["dielectric"] <= 1.0
    ]
    assert ids(model_version="no-such-version") == []
    assert ids(state="failed") == []


def _doc(docs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return next(d for d in docs if d["prediction_id"] == key)


@pytest.mark.parametrize(
    ("params", "status", "fragment"),
    [
        ({"property": "bandgap"}, 422, "dielectric"),
        ({"property": "piezo", "sort": "K_VRH"}, 422, "cannot sort property 'piezo' on 'K_VRH'"),
        ({"sort": "$where"}, 422, "valid sort keys"),
        ({"crystal_system": "$ne"}, 422, "cubic"),
        ({"include_elements": "Xx"}, 422, "unknown element symbol 'Xx'"),
        ({"include_elements": '{"$ne": 1}'}, 422, "unknown element symbol"),
        ({"include_elements": "O", "exclude_elements": "O"}, 422, "both included and excluded"),
        ({"non_centrosymmetric": "maybe"}, 422, "non_centrosymmetric"),
        ({"max_e_above_hull": -1}, 422, "greater than or equal to 0"),
        ({"state": "$exists"}, 422, "successful"),
        ({"dfpt": "pending"}, 422, "accepted"),
        ({"include_metals": "sometimes"}, 422, "include_metals"),
        ({"max_domain_distance": 0}, 422, "greater than 0"),
        ({"criteria": '{"e_ij_max": {"$gt": 0}}'}, 400, "unknown query parameter(s) criteria"),
        ({"e_ij_max[$gt]": "0"}, 400, "unknown query parameter"),
        ({"_per_page": 100000, "_page": 1}, 400, "max limit is 500"),
        ({"_limit": 0}, 400, "positive"),
        ({"_page": -1}, 400, "negative"),
        ({"top": 0}, 422, "greater than or equal to 1"),
        ({"top": 5, "_page": 2}, 400, "top cannot be combined with _page"),
    ],
)
def test_candidates_bad_input(client, params, status, fragment):
    r = client.get("/candidates/", params=params)
    assert r.status_code == status, r.text
    assert fragment in str(r.json()["detail"])


def test_one_document_by_any_key(client, web_project):
    doc = _docs(web_project)[3]
    for key in (doc["prediction_id"], doc["structure_key"], doc["source"]):
        r = client.get(f"/candidates/{key}/")
        assert r.status_code == 200, r.text
        got = r.json()["data"][0]
        assert got["prediction_id"] == doc["prediction_id"]
        np.testing.assert_allclose(
            got["predictions"]["piezo"]["voigt"], doc["predictions"]["piezo"]["voigt"]
        )
    r = client.get("/candidates/nothing-here/")
    assert r.status_code == 404
    assert "no prediction document" in r.json()["detail"]
    assert "nothing-here" in r.json()["detail"]


def test_structure_json_and_cif(client, web_project):
    from pymatgen.core import Structure

    doc = _docs(web_project)[5]
    structure = Structure.from_dict(doc["structure"])
    r = client.get(f"/candidates/{doc['prediction_id']}/structure")
    assert r.status_code == 200, r.text
    view = r.json()["data"][0]
    assert view["nsites"] == len(structure)
    np.testing.assert_allclose(view["lattice"], structure.lattice.matrix, atol=1e-5)
    own = [s for s in view["sites"] if not s["image"]]
    assert len(own) == len(structure)
    assert sorted(s["species"] for s in own) == sorted(s.specie.symbol for s in structure)
    # every image is a lattice translation of a site of the cell
    inv = np.linalg.inv(structure.lattice.matrix)
    base = np.mod(structure.frac_coords, 1.0)
    for s in view["sites"]:
        frac = np.asarray(s["xyz"]) @ inv
        d = frac[None, :] - base
        assert np.min(np.abs(d - np.round(d)).max(axis=1)) < 1e-4

    r = client.get(f"/candidates/{doc['prediction_id']}/structure", params={"format": "cif"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("chemical/x-cif")
    parsed = Structure.from_str(r.text, fmt="cif")
    assert parsed.composition.reduced_formula == structure.composition.reduced_formula
    assert len(parsed) == len(structure)

    r = client.get(f"/candidates/{doc['prediction_id']}/structure", params={"format": "xyz"})
    assert r.status_code == 422
    assert client.get("/candidates/none-such/structure").status_code == 404


def test_tensor_pictures(client, web_project):
    import matplotlib.image as mpimg

    key = _docs(web_project)[0]["prediction_id"]
    for task in ("dielectric", "piezo", None):
        params = {"task": task} if task else {}
        r = client.get(f"/candidates/{key}/picture.png", params=params)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        img = mpimg.imread(io.BytesIO(r.content), format="png")
        assert img.shape[0] > 100
        assert img.shape[1] > 100
        assert float(np.std(img[..., :3])) > 0.01  # a picture, not a blank canvas
    r = client.get(f"/candidates/{key}/picture.png", params={"task": "dielectric_total"})
    assert r.status_code == 404
    assert "no successful dielectric_total prediction" in r.json()["detail"]
    r = client.get(f"/candidates/{key}/picture.png", params={"task": "bandgap"})
    assert r.status_code == 422
    assert client.get("/candidates/none-such/picture.png").status_code == 404


def test_dfpt_comparison(client, web_project):
    nacl = web_project["nacl_id"]
    store = candidate_store(web_project["settings"])
    expected = dfpt_comparison(store)
    store.close()
    r = client.get("/dfpt/")
    assert r.status_code == 200, r.text
    rows = r.json()["data"]
    assert {(x["prediction_id"], x["task"]) for x in rows} == {
        (x["prediction_id"], x["task"]) for x in expected
    }
    assert {x["task"] for x in rows} == {"dielectric", "piezo"}
    for row in rows:
        ref = next(x for x in expected if x["task"] == row["task"])
        assert row["fnorm"] == pytest.approx(ref["fnorm"])
        assert row["prediction_id"] == nacl
    piezo = next(x for x in rows if x["task"] == "piezo")
    assert piezo["fnorm"] < 1e-6  # NaCl is centrosymmetric: both zero

    r = client.get("/dfpt/", params={"task": "dielectric"})
    assert [x["task"] for x in r.json()["data"]] == ["dielectric"]
    assert client.get("/dfpt/", params={"task": "optics"}).status_code == 422
    r = client.get("/dfpt/", params={"state": "accepted"})
    assert r.status_code == 400
    assert "unknown query parameter(s) state" in r.json()["detail"]

    r = client.get(f"/dfpt/{nacl}/")
    assert r.status_code == 200, r.text
    one = r.json()["data"][0]
    assert one["dfpt"]["state"] == "accepted"
    assert one["dfpt"]["code"] == "vasp"
    assert len(one["comparison"]) == 2
    assert [m["task"] for m in one["not_compared"]] == ["dielectric_total"]
    other = _docs(web_project)[0]["prediction_id"]
    r = client.get(f"/dfpt/{other}/")
    assert r.status_code == 404
    assert "has no DFPT result" in r.json()["detail"]


def test_training_documents(client, web_project):
    store = training_store(web_project["settings"])
    store.connect()
    n = store.count()
    ids = sorted(d["record_id"] for d in store.query(properties=["record_id"]))
    store.close()
    assert n >= 2
    r = client.get("/training/")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["meta"]["total_doc"] == n
    assert sorted(d["record_id"] for d in body["data"]) == ids
    assert all("structure" not in d for d in body["data"])
    assert all(len(d["voigt"]) == 3 for d in body["data"])

    r = client.get("/training/", params={"task": "dielectric"})
    assert {d["task"] for d in r.json()["data"]} == {"dielectric"}
    r = client.get("/training/", params={"code": "vasp", "_limit": 1})
    assert r.json()["meta"]["total_doc"] == n
    assert len(r.json()["data"]) == 1
    for params, fragment in (
        ({"part": "dielectric_magic"}, "unknown part 'dielectric_magic'"),
        ({"code": "$ne"}, "unknown code '$ne'"),
        ({"task": "bandgap"}, "dielectric"),
    ):
        r = client.get("/training/", params=params)
        assert r.status_code == 422, r.text
        assert fragment in str(r.json()["detail"])
    assert client.get("/training/", params={"record_id": "x"}).status_code == 400

    r = client.get(f"/training/{ids[0]}/")
    assert r.status_code == 200
    assert r.json()["data"][0]["structure"]["@class"] == "Structure"
    r = client.get("/training/none-such/")
    assert r.status_code == 404
    assert "no training document with record_id 'none-such'" in r.json()["detail"]


def test_model_registry(client):
    r = client.get("/models/")
    assert r.status_code == 200, r.text
    rows = r.json()["data"]
    assert sorted(m["task"] for m in rows) == ["dielectric", "elastic", "piezo"]
    assert all(m["promoted"] and m["version"].endswith("-v1") for m in rows)
    assert all("config" not in m for m in rows)
    assert [m["task"] for m in client.get("/models/", params={"task": "piezo"}).json()["data"]] == [
        "piezo"
    ]
    assert client.get("/models/", params={"promoted": "false"}).json()["data"] == []
    assert client.get("/models/", params={"task": "bandgap"}).status_code == 422
    for key in ("piezo-v1", rows[1]["model_id"]):
        r = client.get(f"/models/{key}/")
        assert r.status_code == 200
        assert r.json()["data"][0]["metrics"]
    r = client.get("/models/piezo-v9/")
    assert r.status_code == 404
    assert "no model 'piezo-v9'" in r.json()["detail"]


def _routes(router: Any, prefix: str = "") -> list[tuple[str, set[str]]]:
    out = []
    for route in router.routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            out += _routes(inner, prefix + (getattr(route, "prefix", "") or ""))
        elif getattr(route, "methods", None):
            out.append((prefix + route.path, set(route.methods)))
    return out


def test_read_only_and_docs(client, web_app):
    routes = _routes(web_app.router)
    assert len(routes) >= 15
    for path, methods in routes:
        assert methods <= {"GET", "HEAD"}, (path, methods)
    for method in ("post", "put", "delete", "patch"):
        r = getattr(client, method)("/candidates/")
        assert r.status_code == 405, (method, r.status_code)
    r = client.get("/docs")
    assert r.status_code == 200
    assert "cdn" not in r.text
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in r.text
    assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
    assert client.get("/redoc").status_code == 404  # would load from a CDN
    spec = client.get("/openapi.json").json()
    for path in ("/candidates/", "/candidates/{key}/", "/candidates/{key}/picture.png",
                 "/candidates/{key}/structure", "/dfpt/", "/dfpt/{key}/", "/training/",
                 "/training/{record_id}/", "/models/", "/models/{key}/"):  # fmt: skip
        assert set(spec["paths"][path]) == {"get"}, path
    hb = client.get("/heartbeat").json()
    assert hb["status"] == "OK"
    assert hb["read_only"] is True
    assert hb["stores"]["candidates"].startswith("sqlite://")


def test_credentials_never_shown(web_project, tmp_path):
    """A MongoDB URI with a password: the heartbeat, the pages and the 503 of an unreachable
    server name the host and user, never the password."""
    from fastapi.testclient import TestClient

    from atomate2_gmt.settings import GMTSettings
    from atomate2_gmt.web.app import create_app

    settings = GMTSettings(
        PROJECT_DIR=tmp_path,
        MONGO_URI="mongodb://alice:s3cr3t-pw@127.0.0.1:9/?authSource=admin",
        STORE_TIMEOUT_S=0.3,
    )
    with TestClient(create_app(settings)) as c:
        texts = []
        r = c.get("/heartbeat")
        assert r.status_code == 200
        assert "alice:***@127.0.0.1:9" in r.text
        texts.append(r.text)
        for url in ("/candidates/", "/models/", "/training/", "/dfpt/"):
            r = c.get(url)
            assert r.status_code == 503, (url, r.text)
            assert "the store cannot be read" in r.json()["detail"]
            texts.append(r.text)
        r = c.get("/", headers={"accept": "text/html"})
        assert r.status_code == 503
        texts.append(r.text)
        assert all("s3cr3t-pw" not in t for t in texts)


def test_counts_follow_writes_from_other_processes(web_project, tmp_path):
    """The app keeps match counts of an unchanged embedded store; a write by another
    connection (a screening job) shows at once."""
    from fastapi.testclient import TestClient

    from atomate2_gmt.settings import GMTSettings
    from atomate2_gmt.stores import upsert_predictions
    from atomate2_gmt.web.app import create_app

    settings = GMTSettings(PROJECT_DIR=tmp_path)
    elastic = list(web_project["docs"])
    writer = candidate_store(settings)
    upsert_predictions(writer, elastic[:2])
    with TestClient(create_app(settings)) as c:
        params = {"property": "elastic", "_limit": 1}  # a page smaller than the matches
        assert c.get("/candidates/", params=params).json()["meta"]["total_doc"] == 2
        assert c.get("/candidates/", params=params).json()["meta"]["total_doc"] == 2
        upsert_predictions(writer, elastic[2:5])
        body = c.get("/candidates/", params=params).json()
        assert body["meta"]["total_doc"] == 5
        assert len(body["data"]) == 1
        writer.remove_docs({"prediction_id": elastic[0]["prediction_id"]})
        assert c.get("/candidates/", params=params).json()["meta"]["total_doc"] == 4
    writer.close()


def test_ensemble_spread_shown_where_present(web_project, tmp_path):
    """A document predicted by an ensemble carries ``uncertainty`` (field → standard deviation):
    the table rows and the page show it next to the value, for the property's fields only."""
    from fastapi.testclient import TestClient

    from atomate2_gmt.settings import GMTSettings
    from atomate2_gmt.stores import upsert_predictions
    from atomate2_gmt.web.app import create_app

    settings = GMTSettings(PROJECT_DIR=tmp_path)
    single, ensemble = (dict(d) for d in web_project["docs"][-2:])  # NaCl and an insulator
    ensemble["uncertainty"] = {"K_VRH": 3.25, "G_VRH": 1.5, "e_ij_max": 0.0125}
    writer = candidate_store(settings)
    upsert_predictions(writer, [single, ensemble])
    writer.close()
    with TestClient(create_app(settings)) as c:
        rows = c.get("/candidates/", params={"property": "elastic"}).json()["data"]
        spread = {r["prediction_id"]: r["uncertainty"] for r in rows}
        assert spread[ensemble["prediction_id"]] == {"K_VRH": 3.25, "G_VRH": 1.5}
        assert spread[single["prediction_id"]] == {}
        html = c.get("/", params={"property": "elastic"}).text
        assert '<span class="unc">± 3.2</span>' in html  # 2 significant digits
        assert html.count('class="unc"') == 2
        page = c.get(f"/candidate/{ensemble['prediction_id']}").text
        assert "± 1.5" in page


def test_presets_and_source_values_in_the_api_and_the_table(web_project, tmp_path):
    """The source's band gap filters (``min_band_gap``) and is shown with its unit; what a
    query leaves out for a missing value is said (API ``meta.left_out``, the page's notice);
    a single model's numbers say that σ is missing; presets travel in the links."""
    from fastapi.testclient import TestClient

    from atomate2_gmt.settings import GMTSettings
    from atomate2_gmt.stores import upsert_predictions
    from atomate2_gmt.web.app import create_app

    settings = GMTSettings(PROJECT_DIR=tmp_path)
    gapped, plain = (dict(d) for d in web_project["docs"][-2:])
    gapped["band_gap"] = 2.5
    gapped["material_id"] = "mp-1"
    gapped["energy_above_hull"] = 0.02
    gapped["stability_source"] = "source: Materials Project"
    writer = candidate_store(settings)
    upsert_predictions(writer, [gapped, plain])
    writer.close()
    with TestClient(create_app(settings)) as c:
        answer = c.get("/candidates/", params={"property": "elastic", "min_band_gap": 1}).json()
        assert [r["prediction_id"] for r in answer["data"]] == [gapped["prediction_id"]]
        row = answer["data"][0]
        assert row["band_gap"] == 2.5
        assert row["material_id"] == "mp-1"
        assert row["energy_above_hull"] == 0.02
        assert row["stability"] == "0.020 eV/atom (source: Materials Project)"
        assert row["relaxed"] is None
        assert row["uncertainty_note"] == "σ n/a (single model)"
        assert answer["meta"]["left_out"] == {"the source's band gap": 1}
        html = c.get("/", params={"property": "elastic", "min_band_gap": "1"}).text
        assert "band gap (eV, source)" in html
        assert "0.020 eV/atom (source: Materials Project)" in html
        assert "1 without the source&#39;s band gap" in html
        assert "σ n/a (single model)" in html
        assert 'value="1.0"' in html  # the form keeps the filter
        preset = c.get("/", params={"preset": "mp-piezo"})
        assert preset.status_code == 200
        assert "preset mp-piezo" in preset.text
        assert "de Jong et al." in preset.text
        assert "preset=mp-piezo" in preset.text  # the links carry the preset
        bad = c.get("/candidates/", params={"preset": "mp-piezo", "property": "elastic"})
        assert bad.status_code == 422
        assert "preset 'mp-piezo' sets prop='piezo'" in bad.json()["detail"]
