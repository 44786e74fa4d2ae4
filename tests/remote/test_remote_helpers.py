"""apply_worker_config (job → worker by the role it declares), render_project (template →
project file), and the submission script's dry run."""

from __future__ import annotations

import importlib.util
import stat
from pathlib import Path

import pytest
from jobflow import Flow, Response, job
from pymatgen.core import Lattice, Structure

pytest.importorskip("jobflow_remote")

from atomate2_gmt.remote import (
    DEFAULT_DFPT_RESOURCES,
    DEFAULT_GMT_RESOURCES,
    DEFAULT_SERIAL_DFPT_RESOURCES,
    apply_worker_config,
    render_project,
    worker_assignment,
)
from atomate2_gmt.routing import ROLE_KEY, ROUTING_KEY, iter_jobs, job_role, route_new_jobs
from atomate2_gmt.routing import role_of as job_kind

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


NACL = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _discovery_flow(tmp_path) -> Flow:
    """A real discovery flow: screening (GMT jobs) + selection with the ABINIT DFPT maker."""
    from atomate2_gmt.dfpt.abinit.makers import AbinitDielectricMaker
    from atomate2_gmt.flows.discovery import GMTDiscoveryMaker
    from atomate2_gmt.flows.screen import GMTScreenMaker

    folder = tmp_path / "cands"
    folder.mkdir()
    NACL.to(filename=str(folder / "NaCl.cif"))
    maker = GMTDiscoveryMaker(
        screen_maker=GMTScreenMaker(chunk_size=1), dfpt_maker=AbinitDielectricMaker()
    )
    return maker.make(folder)


def _dfpt_flow() -> Flow:
    """The real DFPT Makers: ABINIT (both), VASP through atomate2 (dielectric + elastic), and
    the feedback job, with their own job names."""
    from atomate2.vasp.flows.elastic import ElasticMaker

    from atomate2_gmt.dfpt.abinit.makers import AbinitDielectricMaker, AbinitPiezoElasticMaker
    from atomate2_gmt.dfpt.vasp import VaspDFPTMaker
    from atomate2_gmt.jobs.feedback import feedback_job

    abinit = AbinitDielectricMaker().make(NACL)
    abinit_pe = AbinitPiezoElasticMaker().make(NACL)
    vasp = VaspDFPTMaker(elastic_maker=ElasticMaker(bulk_relax_maker=None)).make(NACL)
    return Flow([abinit, abinit_pe, vasp, feedback_job(abinit.output), noop()])


def test_jobs_are_routed_by_what_they_are_not_by_name(tmp_path):
    flow = Flow([_discovery_flow(tmp_path), _dfpt_flow()])
    apply_worker_config(flow, gmt_worker="gpu", dfpt_worker="cpu")
    by_kind: dict[str | None, set[str]] = {}
    for j in _iter(flow):
        by_kind.setdefault(job_kind(j), set()).add(j.name)
        worker = (j.config.manager_config or {}).get("worker")
        assert (
            worker == {"gmt": "gpu", "dfpt": "cpu", "dfpt_serial": "cpu", None: None}[job_kind(j)]
        ), j.name
    assert {"abinit dfpt dielectric", "abinit dfpt piezo elastic"} <= by_kind["dfpt_serial"]
    assert {"vasp dfpt result", "dfpt_feedback"} <= by_kind["dfpt_serial"]
    assert "dielectric" in by_kind["dfpt"]  # atomate2's DielectricMaker job
    # atomate2's elastic helper creates the strained VASP runs at run time: they inherit its
    # worker and MPI resources; the other elastic helpers are light
    assert "run_elastic_deformations" in by_kind["dfpt"]
    assert {"generate_elastic_deformations", "fit_elastic_tensor"} <= by_kind["dfpt_serial"]
    assert "gmt_select" in by_kind["gmt"]
    assert any(n.startswith("gmt_predict") for n in by_kind["gmt"])
    assert "noop" in by_kind[None]
    by_name = {j.name: j for j in _iter(flow)}
    # resources follow the backend: ABINIT runs one serial process, VASP an MPI node
    serial = by_name["abinit dfpt dielectric"].config.manager_config["resources"]
    assert serial == DEFAULT_SERIAL_DFPT_RESOURCES
    assert by_name["dielectric"].config.manager_config["resources"] == DEFAULT_DFPT_RESOURCES
    assert by_name["gmt_select"].config.manager_config["resources"] == DEFAULT_GMT_RESOURCES


def test_dfpt_jobs_added_at_run_time_are_routed(tmp_path):
    """The selection adds its DFPT jobs when it runs: they go to the DFPT worker, not to the
    selection's own (GPU) worker."""
    from jobflow import CURRENT_JOB

    from atomate2_gmt.dfpt.abinit.makers import AbinitDielectricMaker
    from atomate2_gmt.jobs.feedback import feedback_job

    flow = apply_worker_config(_discovery_flow(tmp_path), gmt_worker="gpu", dfpt_worker="cpu")
    select = next(j for j in _iter(flow) if j.name == "gmt_select")
    dfpt = AbinitDielectricMaker().make(NACL)
    added = Flow([dfpt, feedback_job(dfpt.output)])
    CURRENT_JOB.job = select  # what jobflow sets while the selection runs
    try:
        route_new_jobs(added)
    finally:
        CURRENT_JOB.job = None
    assert worker_assignment(added) == {"abinit dfpt dielectric": "cpu", "dfpt_feedback": "cpu"}
    # outside a routed flow (run_locally), nothing is set
    plain = Flow([AbinitDielectricMaker().make(NACL)])
    route_new_jobs(plain)
    assert worker_assignment(plain) == {"abinit dfpt dielectric": None}


def test_apply_worker_config_custom_resources_and_no_dfpt_worker(tmp_path):
    res = {"partition": "gpu-h100", "gres": "gpu:2", "time": "00:30:00"}
    flow = Flow([_discovery_flow(tmp_path), _dfpt_flow()])
    apply_worker_config(
        flow, gmt_worker="h100", dfpt_worker=None, gmt_resources=res, gmt_exec_config="gmt_env"
    )
    for j in _iter(flow):
        worker = (j.config.manager_config or {}).get("worker")
        assert worker == ("h100" if job_kind(j) == "gmt" else None), j.name
    job = next(j for j in _iter(flow) if j.name == "gmt_select")
    assert job.config.manager_config["resources"] == res
    assert job.config.manager_config["exec_config"] == "gmt_env"


def test_a_job_can_declare_its_role():
    j = noop()
    assert job_kind(j) is None
    j.metadata[ROLE_KEY] = "dfpt"
    assert job_kind(j) == "dfpt"


def _iter(flow):
    return list(iter_jobs(flow))


def test_iter_jobs_walks_nested_and_empty_flows():
    def three() -> list:
        a = noop()
        return [a, noop(a.output), noop(2)]

    a, b, c = three()
    nested = Flow([a, Flow([b, c])])
    assert {j.uuid for j in _iter(nested)} == {j.uuid for j, _ in nested.iterflow()}
    assert [j.uuid for j in _iter([a, [b]])] == [a.uuid, b.uuid]
    a, b, c = three()
    assert [j.uuid for j in _iter(Flow([a, Flow([b, c]), Flow([])]))] == [a.uuid, b.uuid, c.uuid]
    assert _iter(Flow([])) == []
    with pytest.raises(TypeError, match="expected a jobflow Flow, Job or list of them, got int"):
        _iter(3)


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
    assert cpu.resources["ntasks"] == 1  # per-job resources ask more where the backend uses MPI
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


def test_default_resources_take_the_partition_and_account_of_the_template(tmp_path, monkeypatch):
    """jobflow-remote replaces a worker's resources with a job's: the defaults must carry the
    site's partition and account themselves."""
    monkeypatch.setenv("GMT_GPU_PARTITION", "gpu-a100")
    monkeypatch.setenv("GMT_CPU_PARTITION", "standard")
    monkeypatch.setenv("GMT_SLURM_ACCOUNT", "m1234")
    flow = apply_worker_config(Flow([_discovery_flow(tmp_path), _dfpt_flow()]))
    by_name = {j.name: j.config.manager_config["resources"] for j in _iter(flow) if job_kind(j)}
    assert by_name["gmt_select"] == {
        **DEFAULT_GMT_RESOURCES, "partition": "gpu-a100", "account": "m1234"
    }  # fmt: skip
    assert by_name["dielectric"]["partition"] == "standard"
    assert by_name["abinit dfpt dielectric"]["ntasks"] == 1
    assert by_name["abinit dfpt dielectric"]["account"] == "m1234"


def test_routing_travels_to_jobs_created_at_run_time():
    """A campaign adds its next round at run time: those jobs carry the routing too."""
    parent = noop()
    apply_worker_config(Flow([parent]))
    child = noop()
    for update in parent.metadata_updates:  # what jobflow applies to a Response's new jobs
        child.update_metadata(**update)
    assert child.metadata[ROUTING_KEY]["gmt"]["worker"] == "gpu"


@job(**job_role("gmt"))
def _adds_dfpt(structure: Structure) -> Response:
    """A GMT job that adds a DFPT job and a role-less job when it runs (as the selection does)."""
    from atomate2_gmt.dfpt.abinit.makers import AbinitDielectricMaker

    return Response(
        addition=route_new_jobs(Flow([AbinitDielectricMaker().make(structure), noop()]))
    )


def test_jobs_added_at_run_time_keep_their_routing_after_jobflow_runs_the_job():
    """jobflow hands its own run configuration to the jobs a response adds, after the job
    returns: the added DFPT job must still go to the DFPT worker, and a job without a role of
    its own takes the role (and worker) of the job that added it."""
    from jobflow import JobStore
    from maggma.stores import MemoryStore

    parent = _adds_dfpt(NACL)
    apply_worker_config(Flow([parent]), gmt_worker="gpu", dfpt_worker="cpu")
    store = JobStore(MemoryStore())
    store.connect()
    response = parent.run(store)
    added = {j.name: j for j in iter_jobs(response.addition)}
    assert job_kind(added["abinit dfpt dielectric"]) == "dfpt_serial"
    assert worker_assignment(response.addition) == {"abinit dfpt dielectric": "cpu", "noop": "gpu"}
    assert job_kind(added["noop"]) == "gmt"  # inherited


def test_declared_roles_survive_serialisation():
    """Job documents travel as JSON (jobflow-remote's queue): the role and its inheritance too."""
    import json

    from jobflow import Job
    from monty.json import MontyDecoder, MontyEncoder

    made = _adds_dfpt(NACL)
    back = json.loads(json.dumps(made.as_dict(), cls=MontyEncoder), cls=MontyDecoder)
    assert isinstance(back, Job)
    assert job_kind(back) == "gmt"
    orphan = noop()
    for update in back.metadata_updates:
        orphan.update_metadata(**update)
    assert job_kind(orphan) == "gmt"
    with pytest.raises(ValueError, match="unknown job role 'gpu'"):
        job_role("gpu")  # type: ignore[arg-type]
