"""``atomate2-gmt query``: table, CSV and JSON output from the settings' store."""

from __future__ import annotations

import csv
import io
import json

import pytest
import typer
from typer.testing import CliRunner

from atomate2_gmt.cli.query import register
from atomate2_gmt.settings import GMTSettings
from atomate2_gmt.stores import candidate_store, upsert_predictions


@pytest.fixture
def app() -> typer.Typer:
    application = typer.Typer()
    register(application)

    @application.command()
    def other() -> None:  # a second command, so that "query" is a sub-command as in the real app
        """Placeholder."""

    return application


@pytest.fixture
def project(tmp_path, monkeypatch, screening_docs):
    """A project folder whose embedded store holds the screening documents."""
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    for name in ("ATOMATE2_GMT_MONGO_URI", "ATOMATE2_GMT_CANDIDATE_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ATOMATE2_GMT_CONFIG_FILE", str(config))
    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(tmp_path / "proj"))
    store = candidate_store(GMTSettings())
    upsert_predictions(store, screening_docs)
    store.close()
    return tmp_path / "proj"


def test_json_output(app, project):
    result = CliRunner().invoke(
        app,
        ["query", "--property", "piezo", "--sort", "e_ij_max", "--top", "2", "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["formula"] for r in rows] == ["TiPbO3", "ZnO"]
    assert rows[0]["e_ij_max"] == pytest.approx(3.5)


def test_csv_output_with_filters(app, project):
    args = ["query", "-p", "piezo", "--exclude-elements", "Pb,Cd", "--non-centrosymmetric"]
    result = CliRunner().invoke(app, [*args, "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["formula"] for r in rows] == ["ZnO", "GaAs"]
    assert float(rows[0]["e_ij_max"]) == pytest.approx(1.0)


def test_table_output(app, project):
    result = CliRunner().invoke(
        app, ["query", "-p", "elastic", "--sort", "K_VRH", "--stable-only", "--top", "3"]
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "│" in line or "┃" in line]
    body = "\n".join(lines)
    assert body.index("TiO2") < body.index("ZnO") < body.index("GaAs")
    assert "TiPbO3" not in body  # not Born stable
    assert "K_VRH" in body
    assert "born_stable" in body


def test_explicit_project_dir(app, project, monkeypatch, tmp_path):
    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(tmp_path / "elsewhere"))
    result = CliRunner().invoke(
        app, ["query", "-p", "dielectric", "--project-dir", str(project), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["formula"] == "GaAs"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["-p", "bandgap"], 2, "unknown property 'bandgap'"),
        (["-p", "piezo", "--sort", "K_VRH"], 2, "valid sort keys: abs_max, e_ij_abs_max, e_ij_max"),
        (["-p", "piezo", "--crystal-system", "cubik"], 2, "unknown crystal system"),
        (["-p", "piezo", "--format", "xml"], 2, "unknown format 'xml'"),
    ],
)
def test_bad_arguments(app, project, args, code, message):
    result = CliRunner().invoke(app, ["query", *args])
    assert result.exit_code == code
    assert message in result.output


def test_missing_store_is_explained(app, tmp_path, monkeypatch):
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    monkeypatch.delenv("ATOMATE2_GMT_MONGO_URI", raising=False)
    monkeypatch.setenv("ATOMATE2_GMT_CONFIG_FILE", str(config))
    result = CliRunner().invoke(app, ["query", "-p", "piezo", "--project-dir", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "no prediction store" in result.output


def test_no_matches(app, project):
    result = CliRunner().invoke(app, ["query", "-p", "piezo", "--include-elements", "Au"])
    assert result.exit_code == 0
    assert "no successful piezo predictions match" in result.output


@pytest.mark.parametrize("top", ["99999999999999999999999", "1000000001"])
def test_a_huge_top_is_a_clear_error_not_an_overflow(app, project, top):
    from atomate2_gmt.query import MAX_TOP

    result = CliRunner().invoke(app, ["query", "-p", "piezo", "--top", top])
    assert result.exit_code == 2
    assert f"Error: top must be an integer from 1 to {MAX_TOP}, got {top}" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "OverflowError" not in result.output
    ok = CliRunner().invoke(app, ["query", "-p", "piezo", "--top", str(MAX_TOP)])
    assert ok.exit_code == 0, ok.output


def test_a_query_process_loads_no_model_or_structure_stack(project):
    """``atomate2-gmt query`` on the embedded store, as a fresh process, answers without loading
    torch, jobflow, pymatgen's structures or ``maggma.stores`` (its S3/SSH modules): the
    imports are most of the command's time (docs/benchmarks.md, Command-line start-up)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from atomate2_gmt.cli.app import main\n"
        "sys.argv = ['atomate2-gmt', 'query', '-p', 'piezo', '--top', '2', '-f', 'json']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = ('torch', 'e3nn', 'jobflow', 'pymatgen.core', 'maggma.stores', 'boto3')\n"
        "print('loaded:' + ','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ)
    )
    assert out.returncode == 0, out.stderr
    assert '"TiPbO3"' in out.stdout  # the query ran
    assert out.stdout.strip().splitlines()[-1] == "loaded:"
