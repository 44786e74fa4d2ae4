"""The ``data`` command group: ``fetch`` and ``info``."""

from __future__ import annotations

import pickle
from pathlib import Path

from typer.testing import CliRunner

from atomate2_gmt.cli.data import app

runner = CliRunner()


def test_info_mp_prints_counts_after_filters() -> None:
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.output.splitlines()[2:] if line}
    assert lines["dielectric"][1:6] == ["eps_electronic", "dimensionless", "902", "902", "0"]
    assert lines["dielectric_total"][1:6] == ["eps_total", "dimensionless", "902", "897", "5"]
    assert lines["piezo"][1:6] == ["piezo_cartesian_C_m2", "C/m^2", "806", "688", "118"]
    assert lines["elastic"][1:6] == ["elastic_voigt_GPa", "GPa", "1005", "987", "18"]


def test_info_rejects_unknown_task_and_source() -> None:
    result = runner.invoke(app, ["info", "band_gap"])
    assert result.exit_code == 1
    assert "unknown task 'band_gap'" in result.output
    result = runner.invoke(app, ["info", "--source", "aflow"])
    assert result.exit_code == 1
    assert "unknown source 'aflow'" in result.output


def test_info_jarvis_reports_missing_and_unverified_files(tmp_path: Path) -> None:
    (tmp_path / "jarvis_elastic.pkl").write_bytes(pickle.dumps([]))
    result = runner.invoke(app, ["info", "--source", "gmtnet-jarvis", "--path", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "jarvis_diele_piezo.pkl: not fetched" in result.output
    assert "jarvis_elastic.pkl: FAILED verification" in result.output
    assert "git blob hash mismatch" in result.output


def test_fetch_refuses_a_mismatching_download(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    for name in ("jarvis_diele_piezo.pkl", "jarvis_elastic.pkl"):
        (remote / name).write_bytes(pickle.dumps([{"JARVIS_ID": "JVASP-1"}]))
    dest = tmp_path / "dest"
    result = runner.invoke(
        app,
        ["fetch", "gmtnet-jarvis", "--dest", str(dest), "--url-base", remote.as_uri()],
    )
    assert result.exit_code == 1
    assert "sha256 mismatch" in result.output
    assert not (dest / "jarvis_diele_piezo.pkl").exists()


def test_fetch_reports_unreachable_source_and_unknown_dataset(tmp_path: Path) -> None:
    missing = (tmp_path / "nowhere").as_uri()
    result = runner.invoke(
        app, ["fetch", "gmtnet-jarvis", "--dest", str(tmp_path / "d"), "--url-base", missing]
    )
    assert result.exit_code == 1
    assert "download failed" in result.output
    result = runner.invoke(app, ["fetch", "matbench"])
    assert result.exit_code == 1
    assert "unknown dataset 'matbench'" in result.output
