"""The server-rendered pages (FastAPI TestClient) and the ``serve`` command's checks."""

from __future__ import annotations

import re
from html import unescape

from typer.testing import CliRunner

from atomate2_gmt.cli.app import app


def _keys(html: str) -> list[str]:
    return [unescape(k) for k in re.findall(r'<tr data-key="([^"]+)"', html)]


def test_table_page_sorts_filters_and_pages(client, web_project):
    docs = web_project["docs"]
    r = client.get("/")
    assert r.status_code == 200
    insulators = [d for d in docs if not d.get("likely_metal")]
    ranked = sorted(
        insulators, key=lambda d: (d["dielectric_eig_max"], d["prediction_id"]), reverse=True
    )
    assert _keys(r.text) == [d["prediction_id"] for d in ranked]
    assert f"{len(ranked)} candidates · sorted on dielectric_eig_max descending" in r.text
    r = client.get("/", params={"include_metals": "true"})
    assert sorted(_keys(r.text)) == sorted(d["prediction_id"] for d in docs)
    assert r.text.count('class="metal"') == len(docs) - len(insulators)
    assert 'id="sort-dielectric_mean"' in r.text

    r = client.get("/", params={"property": "elastic", "sort": "G_VRH", "ascending": "true"})
    ranked = sorted(docs, key=lambda d: (d["G_VRH"], d["prediction_id"]))
    assert _keys(r.text) == [d["prediction_id"] for d in ranked]
    assert "G_VRH (GPa) ▲" in r.text

    params = {"property": "elastic", "crystal_system": "hexagonal", "exclude_elements": "Xe"}
    r = client.get("/", params=params)
    hexagonal = [d["prediction_id"] for d in docs if d["symmetry"]["crystal_system"] == "Hexagonal"]
    assert hexagonal
    assert sorted(_keys(r.text)) == sorted(hexagonal)
    # the form keeps the filters
    assert '<option value="hexagonal" selected>' in r.text
    assert 'value="Xe"' in r.text

    r = client.get("/", params={"dfpt": "accepted"})
    assert _keys(r.text) == [web_project["nacl_id"]]
    assert 'class="dfpt accepted"' in r.text

    r = client.get("/", params={"page": 2})
    assert _keys(r.text) == []  # 15 documents fit on page 1
    assert "page 2 of 1" in r.text


def test_table_page_bad_input(client):
    for params, fragment in (
        ({"property": "bandgap"}, "unknown property &#39;bandgap&#39;"),
        ({"sort": "$gt"}, "valid sort keys"),
        ({"include_elements": "Qq"}, "unknown element symbol &#39;Qq&#39;"),
        ({"non_centrosymmetric": "perhaps"}, "non_centrosymmetric must be true, false or empty"),
        ({"crystal_system": "<script>"}, "unknown crystal system &#39;&lt;script&gt;&#39;"),
        ({"preset": "mp-piezo", "property": "elastic"}, "sets prop=&#39;piezo&#39;"),
        ({"min_band_gap": "-1"}, "min_band_gap must be &gt;= 0 eV"),
        ({"limit": "5"}, "unknown parameter(s) limit"),
    ):
        r = client.get("/", params=params)
        assert r.status_code == 422, (params, r.status_code)
        assert fragment in r.text, r.text
        assert "<script>" not in r.text.split("<main>")[1]


def test_candidate_page(client, web_project):
    nacl = web_project["nacl_id"]
    r = client.get(f"/candidate/{nacl}")
    assert r.status_code == 200
    html = r.text
    assert '<script src="/static/vendor/3Dmol-min.js">' in html
    assert "http://" not in html.split("</head>")[0]
    assert "https://" not in html
    for fragment in (
        'id="viewer"',
        'id="voigt-dielectric"',
        'id="voigt-ieee-piezo"',
        'id="picture-elastic"',
        "Fm-3m (225)",
        "point group m-3m",
        'id="dfpt-state">accepted<',
        'id="comparison"',
        "(C/m²)",
        "(GPa)",
        "dielectric=",  # the model version
        "dielectric_total: not predicted: the screening predicted dielectric, elastic, piezo",
    ):
        assert fragment in html, fragment
    # the structure-frame Voigt matrix on the page is the stored one
    doc = next(d for d in web_project["docs"] if d["prediction_id"] == nacl)
    eps = doc["predictions"]["dielectric"]["voigt"]
    assert f"<td>{eps[0][0]:.4g}</td>" in html

    r = client.get("/candidate/none-such")
    assert r.status_code == 404
    assert "no prediction document" in r.text


def test_parity_and_registry_pages(client, web_project):
    r = client.get("/parity")
    assert r.status_code == 200
    assert 'id="parity-dielectric"' in r.text
    assert 'id="parity-piezo"' in r.text
    # one point per standard Voigt component: 3x3 dielectric + 3x6 piezo
    assert r.text.count('class="pt"') == 9 + 18
    r = client.get("/registry")
    assert r.status_code == 200
    assert r.text.count("-v1</a>") == 3


def test_static_assets_are_served(client):
    js = client.get("/static/vendor/3Dmol-min.js")
    assert js.status_code == 200
    assert len(js.content) > 100_000
    assert client.get("/static/vendor/3Dmol-LICENSE.txt").status_code == 200
    assert client.get("/static/viewer.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/favicon.ico").status_code == 200


def test_serve_refuses_a_missing_store(tmp_path, monkeypatch):
    monkeypatch.delenv("ATOMATE2_GMT_MONGO_URI", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["serve", "--project-dir", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "no prediction store" in result.output
    assert not (tmp_path / "empty").exists()  # nothing created
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "127.0.0.1" in result.output
    result = CliRunner().invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 2


def test_nothing_else_imports_the_web_layer():
    """The web app sits at the edge: only ``cli/serve.py`` (inside its command) imports it."""
    from pathlib import Path

    import atomate2_gmt

    src = Path(atomate2_gmt.__file__).parent
    importers = sorted(
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if "atomate2_gmt.web" in p.read_text() and p.parent.name != "web"
    )
    assert importers == ["cli/serve.py"]


def test_serve_knows_loopback_addresses():
    from atomate2_gmt.cli.serve import _is_loopback

    assert _is_loopback("127.0.0.1")
    assert _is_loopback("::1")
    assert _is_loopback("localhost")
    assert not _is_loopback("0.0.0.0")
    assert not _is_loopback("login1.cluster.example.org")
