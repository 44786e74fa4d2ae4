"""``evaluate CKPT --member CKPT``: an ensemble's mean metrics and the coverage of its spread."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests.tiny_model import TINY
from typer.testing import CliRunner

from atomate2_gmt.cli.app import app
from atomate2_gmt.model.checkpoint import save_checkpoint
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.gmtnet import GMTNet


def _checkpoint(path, task: str, seed: int):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    save_checkpoint(path, GMTNet(GMTNetConfig(task=task, **TINY)), {"name": f"tiny-{seed}"})
    return path


def test_evaluate_with_members_reports_the_ensemble_and_its_coverage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = _checkpoint(tmp_path / "a.pt", "piezo", 1)
    b = _checkpoint(tmp_path / "b.pt", "piezo", 2)
    c = _checkpoint(tmp_path / "c.pt", "piezo", 3)
    out = tmp_path / "r.json"
    args = ["evaluate", str(a), "--member", str(b), "--member", str(c), "--json", str(out), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    ens = report["ensemble"]
    assert ens["members"] == 3
    assert ens["overall"]["n"] == report["overall"]["n"] == ens["coverage"]["n"]
    for key in ("coverage_1sigma", "coverage_2sigma", "component_coverage_1sigma"):
        assert 0.0 <= ens["coverage"][key] <= 1.0
    assert ens["coverage"]["coverage_1sigma"] <= ens["coverage"]["coverage_2sigma"]
    # three different untrained members disagree: their spread is not zero
    assert np.isfinite(ens["coverage"]["median_z"])
    # --spread-scale multiplies σ: the median z shrinks by the factor, the fit stays the same
    scaled_out = tmp_path / "r2.json"
    args2 = [*args[:-3], "--json", str(scaled_out), "--spread-scale", "2.5", "-q"]
    assert CliRunner().invoke(app, args2).exit_code == 0
    scaled = json.loads(scaled_out.read_text())["ensemble"]["coverage"]
    assert scaled["spread_scale"] == 2.5
    assert scaled["median_z"] == pytest.approx(ens["coverage"]["median_z"] / 2.5)
    assert scaled["calibrating_scale"] == pytest.approx(ens["coverage"]["calibrating_scale"])
    assert scaled["coverage_2sigma"] >= ens["coverage"]["coverage_2sigma"]
    # without members there is no spread to scale; a factor must be positive
    alone = CliRunner().invoke(app, ["evaluate", str(a), "--spread-scale", "2", "-q"])
    assert alone.exit_code == 2
    assert "give --member too" in alone.output
    zero = CliRunner().invoke(app, [*args[:-1], "--spread-scale", "0", "-q"])
    assert zero.exit_code == 2
    assert "must be positive" in zero.output


def test_evaluate_refuses_a_member_of_another_task(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = _checkpoint(tmp_path / "a.pt", "piezo", 1)
    d = _checkpoint(tmp_path / "d.pt", "dielectric", 2)
    result = CliRunner().invoke(app, ["evaluate", str(a), "--member", str(d), "-q"])
    assert result.exit_code != 0
    assert "dielectric" in str(result.exception) + result.output


def test_evaluate_ensemble_needs_two_members() -> None:
    from atomate2_gmt.training.evaluate import evaluate_ensemble

    with pytest.raises(ValueError, match="an ensemble needs at least 2 members, got 1"):
        evaluate_ensemble([GMTNet(GMTNetConfig(task="piezo", **TINY))], None)  # type: ignore[arg-type]
