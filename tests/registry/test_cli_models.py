"""``atomate2-gmt models`` on the embedded registry of a temporary project."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from atomate2_gmt.cli.app import app


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(tmp_path / "project"))
    monkeypatch.setenv("ATOMATE2_GMT_CONFIG_FILE", str(tmp_path / "none.yaml"))
    (tmp_path / "none.yaml").write_text("DEVICE: cpu\n")
    return {}


def test_models_cli_flow(env, make_checkpoint, tmp_path):
    runner = CliRunner()
    out = runner.invoke(app, ["models", "list"])
    assert out.exit_code == 0, out.output
    assert "0 registered model version(s)" in out.output

    seeded = runner.invoke(app, ["models", "seed"])
    assert seeded.exit_code == 0, seeded.output
    assert "piezo-v1" in seeded.output
    assert "dielectric-v1" in seeded.output

    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"overall": {"fnorm": 0.9}}))
    reg = runner.invoke(
        app,
        ["models", "register", str(make_checkpoint("piezo", 0)), "--task", "piezo",
         "--metrics", str(metrics), "--parent", "piezo-v1"],
    )  # fmt: skip
    assert reg.exit_code == 0, reg.output
    assert reg.output.startswith("piezo-v2  gmtnet-piezo-")

    listed = runner.invoke(app, ["models", "list", "--task", "piezo", "--json"])
    rows = json.loads(listed.output)
    assert [(r["version"], r["promoted"]) for r in rows] == [
        ("piezo-v1", True),
        ("piezo-v2", False),
    ]

    no_reason = runner.invoke(app, ["models", "promote", "piezo-v2"])
    assert no_reason.exit_code != 0
    assert "--reason" in no_reason.output

    refused = runner.invoke(
        app, ["models", "promote", "piezo-v2", "--reason", "x", "--compare-on", "fnorm"]
    )
    assert refused.exit_code == 1
    assert "different held-out sets" in refused.output

    ok = runner.invoke(app, ["models", "promote", "piezo-v2", "--reason", "retrained on DFPT"])
    assert ok.exit_code == 0, ok.output
    assert "promoted piezo-v2" in ok.output

    shown = runner.invoke(app, ["models", "show", "piezo-v1"])
    doc = json.loads(shown.output)
    assert doc["promoted"] is False
    assert doc["promotion_history"][-1]["reason"].endswith("retrained on DFPT")

    missing = runner.invoke(app, ["models", "show", "piezo-v7"])
    assert missing.exit_code == 1
    assert "no model 'piezo-v7'" in missing.output
