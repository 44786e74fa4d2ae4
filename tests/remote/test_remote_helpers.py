"""apply_worker_config (job → worker by name), render_project (template → project file), and the
submission script's dry run."""

from __future__ import annotations

import importlib.util
import stat
from pathlib import Path

import pytest
from jobflow import Flow, job

pytest.importorskip("jobflow_remote")

from atomate2_gmt.remote import (
    DEFAULT_DFPT_RESOURCES,
    DEFAULT_GMT_RESOURCES,
    apply_worker_config,
    job_kind,
    render_project,
    worker_assignment,
)

ROOT = Path(__file__).parents[2]
TEMPLATE = ROOT / "workflows" / "jobflow_remote" / "atomate2_gmt.yaml"
ENV = {
    "ATOMATE2_GMT_MONGO_URI": "mongodb://alice:s3cr3t-pw@db.example.org:27017/?authSource=admin",
    "GMT_WORK_DIR": "/scratch/alice/gmt",
    "GMT_PRE_RUN": "source /home/alice/venvs/gmt/bin/activate",
    "GMT_GPU_PARTITION": "gpu-a100",
    "GMT_CPU_PARTITION": "standard",
}


@job
def noop(x: int = 0) -> int:
    return x


def _named(name: str):
    j = noop()
    j.name = name
    return j


def _flow() -> Flow:
    names = [
        *("gmt_predict_0", "gmt_predict_1", "gmt_rank", "gmt_upsert", "gmt_retrain"),
        *("gmt_select_for_dfpt_top", "abinit_dfpt_piezo", "vasp_dfpt", "dfpt_collect", "other"),
    ]
    return Flow([Flow([_named(n) for n in names[:4]]), *[_named(n) for n in names[4:]]])


def test_job_kind():
    assert job_kind("gmt_predict_3") == "gmt"
    assert job_kind("gmt_select_for_dfpt_x") == "gmt"
    assert job_kind("abinit_dfpt") == "dfpt"
    assert job_kind("vasp_static") == "dfpt"
    assert job_kind("store_results") is None


def test_apply_worker_config_routes_by_name():
    flow = apply_worker_config(_flow(), gmt_worker="gpu", dfpt_worker="cpu")
    assignment = worker_assignment(flow)
    assert assignment == {
        "gmt_predict_0": "gpu",
        "gmt_predict_1": "gpu",
        "gmt_rank": "gpu",
        "gmt_upsert": "gpu",
        "gmt_retrain": "gpu",
        "gmt_select_for_dfpt_top": "gpu",  # contains 'dfpt_' but is a GMT job
        "abinit_dfpt_piezo": "cpu",
        "vasp_dfpt": "cpu",
        "dfpt_collect": "cpu",
        "other": None,  # left to submit_flow's worker
    }
    by_name = {j.name: j for j in _iter(flow)}
    assert by_name["gmt_predict_0"].config.manager_config["resources"] == DEFAULT_GMT_RESOURCES
    assert by_name["vasp_dfpt"].config.manager_config["resources"] == DEFAULT_DFPT_RESOURCES
    # dynamic: jobs a GMT job creates at run time get the same worker
    updates = by_name["gmt_predict_0"].config_updates
    assert any(u["name_filter"] == "gmt_predict" for u in updates)


def test_apply_worker_config_custom_resources_and_no_dfpt_worker():
    res = {"partition": "gpu-h100", "gres": "gpu:2", "time": "00:30:00"}
    flow = apply_worker_config(
        _flow(), gmt_worker="h100", dfpt_worker=None, gmt_resources=res, gmt_exec_config="gmt_env"
    )
    assignment = worker_assignment(flow)
    assert assignment["gmt_predict_1"] == "h100"
    assert assignment["abinit_dfpt_piezo"] is None
    job = next(j for j in _iter(flow) if j.name == "gmt_rank")
    assert job.config.manager_config["resources"] == res
    assert job.config.manager_config["exec_config"] == "gmt_env"


def _iter(flow):
    from atomate2_gmt.remote import iter_jobs

    return list(iter_jobs(flow))


def test_render_project(tmp_path):
    out = render_project(TEMPLATE, tmp_path / "p.yaml", env=ENV)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text()
    assert "${" not in text.split("name:", 1)[1]
    from jobflow_remote.config.base import Project
    from ruamel.yaml import YAML

    project = Project.model_validate(YAML(typ="safe").load(text))
    gpu, cpu = project.workers["gpu"], project.workers["cpu"]
    assert gpu.resources["gres"] == "gpu:1"
    assert gpu.resources["partition"] == "gpu-a100"
    assert gpu.resources["time"] == "02:00:00"
    assert gpu.resources["account"] is None
    assert "source /home/alice/venvs/gmt/bin/activate" in gpu.pre_run
    assert str(gpu.work_dir) == "/scratch/alice/gmt/gpu"
    assert cpu.resources["ntasks"] == 32
    assert cpu.resources["time"] == "24:00:00"
    assert project.jobstore["additional_stores"]["data"]["type"] == "GridFSStore"
    assert project.queue.store["database"] == "atomate2_gmt"
    with pytest.raises(FileExistsError, match="overwrite"):
        render_project(TEMPLATE, out, env=ENV)
    custom = render_project(
        TEMPLATE, out, env={**ENV, "GMT_SLURM_ACCOUNT": "m1234", "GMT_CPU_NTASKS": "64"},
        overwrite=True,
    )  # fmt: skip
    project = Project.model_validate(YAML(typ="safe").load(custom.read_text()))
    assert project.workers["cpu"].resources == {**project.workers["cpu"].resources, "ntasks": 64}
    assert project.workers["gpu"].resources["account"] == "m1234"


def test_render_project_errors_name_variables_not_secrets(tmp_path):
    with pytest.raises(KeyError, match="GMT_GPU_PARTITION, GMT_PRE_RUN, GMT_WORK_DIR"):
        render_project(TEMPLATE, tmp_path / "p.yaml", env={"ATOMATE2_GMT_MONGO_URI": "x"})
    bad = {**ENV, "GMT_WORK_DIR": "relative/path"}
    with pytest.raises(ValueError, match="not a valid jobflow-remote project") as err:
        render_project(TEMPLATE, tmp_path / "p.yaml", env=bad)
    assert "s3cr3t-pw" not in str(err.value)
    assert not (tmp_path / "p.yaml").exists()


def test_template_has_no_credentials():
    text = TEMPLATE.read_text()
    assert "password:" not in text
    assert "@" not in text.replace("user:password@host", "")


def test_submit_script_dry_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("atomate2_gmt.flows.screen")
    from pymatgen.core import Lattice, Structure

    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(tmp_path / "project"))
    monkeypatch.setenv("ATOMATE2_GMT_CONFIG_FILE", str(tmp_path / "none.yaml"))
    (tmp_path / "none.yaml").write_text("DEVICE: cpu\n")
    folder = tmp_path / "candidates"
    folder.mkdir()
    for a in (5.3, 5.4, 5.5):
        s = Structure.from_spacegroup("F-43m", Lattice.cubic(a), ["Zn", "S"], [[0] * 3, [0.25] * 3])
        s.to(filename=str(folder / f"ZnS_{a}.cif"))
    spec = importlib.util.spec_from_file_location(
        "submit_screening", ROOT / "workflows" / "submit_screening.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main(["submit", str(folder), "--tasks", "piezo", "--chunk-size", "2",
                        "--partition", "gpu-a100", "--dry-run"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "gmt_predict_0" in out
    assert "gmt_predict_1" in out
    assert "gmt_rank" in out
    assert "-> gpu" in out
    assert module.main(["submit", str(tmp_path / "nowhere"), "--dry-run"]) == 1
    assert "no candidate folder or file at" in capsys.readouterr().err
