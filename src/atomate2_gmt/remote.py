"""jobflow-remote helpers: send GMT jobs to a GPU worker and DFPT jobs to a CPU worker.

``apply_worker_config(flow)`` sets jobflow-remote's run configuration (worker, resources,
exec_config) on the jobs of a flow by what each job is (its Maker class or job function, see
:func:`job_kind`), also on the DFPT jobs a selection adds at run time; ``render_project``
fills the project template of ``workflows/jobflow_remote/`` from environment variables, so that
no credential is ever committed. jobflow-remote is an optional dependency (the ``remote``
extra).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_DFPT_RESOURCES",
    "DEFAULT_GMT_RESOURCES",
    "DEFAULT_SERIAL_DFPT_RESOURCES",
    "ROLE_KEY",
    "ROUTING_KEY",
    "apply_worker_config",
    "iter_jobs",
    "job_kind",
    "render_project",
    "route_new_jobs",
    "worker_assignment",
]

ROLE_KEY = "atomate2_gmt_role"
"""Job metadata key that declares a job's role ("gmt", "dfpt" or "dfpt_serial") explicitly, for
jobs of other packages that :func:`job_kind` does not know."""

ROUTING_KEY = "atomate2_gmt_routing"
"""Job metadata key holding the routing :func:`apply_worker_config` chose, so that jobs created
at run time (the DFPT jobs of a selection) are routed the same way (:func:`route_new_jobs`)."""

DEFAULT_GMT_RESOURCES: dict[str, Any] = {
    "nodes": 1,
    "ntasks": 1,
    "cpus_per_task": 8,
    "gres": "gpu:1",
    "time": "02:00:00",
}
"""SLURM resources of a GMT job: one GPU, a few cores for graph building, 2 h."""

DEFAULT_DFPT_RESOURCES: dict[str, Any] = {
    "nodes": 1,
    "ntasks": 32,
    "cpus_per_task": 1,
    "time": "24:00:00",
}
"""SLURM resources of an MPI DFPT job (VASP through atomate2, whose ``VASP_CMD`` runs mpirun):
one full CPU node, 24 h."""

DEFAULT_SERIAL_DFPT_RESOURCES: dict[str, Any] = {
    "nodes": 1,
    "ntasks": 1,
    "cpus_per_task": 1,
    "time": "24:00:00",
}
"""SLURM resources of a serial DFPT job (ABINIT as :mod:`atomate2_gmt.dfpt.abinit` runs it: one
process) and of the DFPT result conversion and feedback jobs."""

_KINDS = ("gmt", "dfpt", "dfpt_serial")

_PLACEHOLDER_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _require_jobflow_remote() -> Any:
    try:
        import jobflow_remote
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "jobflow-remote is not installed: pip install 'atomate2-gmt[remote]' "
            "(or pip install 'jobflow-remote>=1.0.1' 'pymongo<4.11' 'ruamel.yaml>=0.17')"
        ) from exc
    return jobflow_remote


def iter_jobs(flow: Any) -> Iterator[Any]:
    """Every ``Job`` of a (nested) ``Flow``, a ``Job`` or a list of them, depth first.

    jobflow's ``Flow.iterflow`` yields the same jobs of a flow (in dependency order), but it
    builds the flow's networkx graph and raises "cannot apply compose_all to an empty list"
    for a flow that is or holds an empty ``Flow`` (jobflow 0.4.0); assigning workers needs
    no order, so this plain walk is kept."""
    from jobflow import Flow, Job

    if isinstance(flow, Job):
        yield flow
    elif isinstance(flow, Flow):
        for item in flow.jobs:
            yield from iter_jobs(item)
    elif isinstance(flow, list | tuple):
        for item in flow:
            yield from iter_jobs(item)
    else:
        raise TypeError(f"expected a jobflow Flow, Job or list of them, got {type(flow).__name__}")


def _maker_classes() -> dict[str, tuple[type, ...]]:
    """Maker classes by the role of the jobs they make."""
    from atomate2.vasp.jobs.base import BaseVaspMaker

    from atomate2_gmt.dfpt.abinit.makers import AbinitDFPTMaker
    from atomate2_gmt.jobs.predict import GMTPredictMaker
    from atomate2_gmt.jobs.retrain import GMTRetrainMaker

    return {
        "gmt": (GMTPredictMaker, GMTRetrainMaker),
        "dfpt": (BaseVaspMaker,),
        "dfpt_serial": (AbinitDFPTMaker,),
    }


def _job_functions() -> dict[str, tuple[Any, ...]]:
    """Job functions (not made by a Maker) by role. atomate2's ``run_elastic_deformations``
    creates the strained VASP runs at run time, which inherit its worker and resources: it is
    an MPI DFPT job; the other elastic helpers are light CPU jobs."""
    from atomate2.common.jobs.elastic import (
        fit_elastic_tensor,
        generate_elastic_deformations,
        run_elastic_deformations,
    )

    from atomate2_gmt.dfpt.vasp import vasp_dfpt_result
    from atomate2_gmt.flows.campaign import campaign_advance, campaign_select
    from atomate2_gmt.flows.discovery import discovery_results, discovery_select
    from atomate2_gmt.jobs.feedback import feedback_job
    from atomate2_gmt.jobs.rank import rank_predictions
    from atomate2_gmt.jobs.select import select_for_dfpt

    def raw(f: Any) -> Any:
        return getattr(f, "original", getattr(f, "__wrapped__", f))

    return {
        "gmt": tuple(
            raw(f)
            for f in (
                rank_predictions,
                select_for_dfpt,
                discovery_select,
                discovery_results,
                campaign_select,
                campaign_advance,
            )
        ),
        "dfpt": (raw(run_elastic_deformations),),
        "dfpt_serial": tuple(
            raw(f)
            for f in (
                vasp_dfpt_result,
                feedback_job,
                generate_elastic_deformations,
                fit_elastic_tensor,
            )
        ),
    }


def job_kind(job: Any) -> str | None:
    """What a job is, for routing: "gmt" (GMTNet: GPU worker), "dfpt" (an MPI DFPT run),
    "dfpt_serial" (a serial DFPT run, a DFPT result conversion or the feedback job), or None.

    Decided by what the job is, never by its name: an explicit ``metadata[ROLE_KEY]``, else the
    class of the Maker that made it (atomate2's VASP Makers, the ABINIT DFPT Makers, the GMT
    Makers), else its job function.
    """
    role = (getattr(job, "metadata", None) or {}).get(ROLE_KEY)
    if role in _KINDS:
        return str(role)
    maker = getattr(job, "maker", None)
    if maker is not None:
        for kind, classes in _maker_classes().items():
            if isinstance(maker, classes):
                return kind
    function = getattr(job, "function", None)
    function = getattr(function, "__wrapped__", function)
    for kind, functions in _job_functions().items():
        if any(function is f for f in functions):
            return kind
    return None


def _site_resources(partition_var: str) -> dict[str, Any]:
    """``partition`` and ``account`` from the environment variables of the project template."""
    out: dict[str, Any] = {}
    if os.environ.get(partition_var):
        out["partition"] = os.environ[partition_var]
    if os.environ.get("GMT_SLURM_ACCOUNT"):
        out["account"] = os.environ["GMT_SLURM_ACCOUNT"]
    return out


def _route(flow: Any, routing: dict[str, Any]) -> None:
    """Give every job of ``flow`` the run configuration of its kind and carry ``routing``."""
    from jobflow_remote import set_run_config

    for job in iter_jobs(flow):
        # dynamic: every job created at run time (a campaign's next round, a selection's DFPT
        # jobs) carries the routing too, so route_new_jobs can apply it there
        job.update_metadata({ROUTING_KEY: routing}, dynamic=True)
        kind = job_kind(job)
        target = routing.get(kind) if kind else None
        if not target:
            continue
        set_run_config(
            job,
            worker=target["worker"],
            resources=target["resources"],
            exec_config=target["exec_config"],
            priority=routing.get("priority"),
            dynamic=False,
        )


def apply_worker_config(
    flow: Any,
    gmt_worker: str | None = "gpu",
    dfpt_worker: str | None = "cpu",
    gmt_resources: Mapping[str, Any] | None = None,
    dfpt_resources: Mapping[str, Any] | None = None,
    gmt_exec_config: str | None = None,
    dfpt_exec_config: str | None = None,
    priority: int | None = None,
    serial_dfpt_resources: Mapping[str, Any] | None = None,
) -> Any:
    """Set jobflow-remote's worker/resources/exec_config on the GMT and DFPT jobs of ``flow``.

    Jobs are routed by what they are (:func:`job_kind`): GMT jobs go to ``gmt_worker`` with
    ``gmt_resources`` (default :data:`DEFAULT_GMT_RESOURCES`, one GPU); MPI DFPT runs (VASP) to
    ``dfpt_worker`` with ``dfpt_resources`` (default :data:`DEFAULT_DFPT_RESOURCES`, a node);
    serial DFPT runs (ABINIT), result conversions and feedback to ``dfpt_worker`` with
    ``serial_dfpt_resources`` (default :data:`DEFAULT_SERIAL_DFPT_RESOURCES`, one core). Other
    jobs keep the worker given to ``submit_flow``. The routing is stored in every job's metadata,
    and the jobs that create DFPT jobs at run time (the selection) route those the same way
    (:func:`route_new_jobs`). Resources are the keys of the worker's scheduler template (SLURM:
    ``partition``, ``gres``, ``time``, ...); a job's resources replace the worker's ``resources``
    block (jobflow-remote does not merge them), so the default ones take ``partition`` and
    ``account`` from the project template's variables ``GMT_GPU_PARTITION`` /
    ``GMT_CPU_PARTITION`` and ``GMT_SLURM_ACCOUNT`` when they are set. Modifies ``flow`` in place
    and returns it.
    """
    _require_jobflow_remote()

    def target(
        worker: str | None, resources: Any, default: Any, partition_var: str, exec_config: Any
    ) -> Any:
        if worker is None:
            return None
        res = {**_site_resources(partition_var), **default} if resources is None else resources
        return {"worker": worker, "resources": dict(res), "exec_config": exec_config}

    routing = {
        "gmt": target(
            gmt_worker, gmt_resources, DEFAULT_GMT_RESOURCES, "GMT_GPU_PARTITION", gmt_exec_config
        ),
        "dfpt": target(
            dfpt_worker,
            dfpt_resources,
            DEFAULT_DFPT_RESOURCES,
            "GMT_CPU_PARTITION",
            dfpt_exec_config,
        ),
        "dfpt_serial": target(
            dfpt_worker,
            serial_dfpt_resources,
            DEFAULT_SERIAL_DFPT_RESOURCES,
            "GMT_CPU_PARTITION",
            dfpt_exec_config,
        ),
        "priority": priority,
    }
    _route(flow, routing)
    return flow


def route_new_jobs(flow: Any) -> Any:
    """Route the jobs a running job creates (``Response(addition=flow)``) as the running job's
    own flow was routed by :func:`apply_worker_config`; a no-op outside such a flow."""
    from jobflow import CURRENT_JOB

    current = CURRENT_JOB.job
    routing = (getattr(current, "metadata", None) or {}).get(ROUTING_KEY)
    if routing:
        _route(flow, routing)
    return flow


def worker_assignment(flow: Any) -> dict[str, str | None]:
    """Job name → worker set by :func:`apply_worker_config` (None: the submit_flow worker)."""
    out: dict[str, str | None] = {}
    for job in iter_jobs(flow):
        out[job.name] = (job.config.manager_config or {}).get("worker")
    return out


def render_project(
    template: str | Path,
    out_path: str | Path,
    env: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Fill the ``${VAR}`` / ``${VAR:-default}`` placeholders of a project template from ``env``.

    ``env`` defaults to ``os.environ``. Every placeholder without a default must be set (the
    error lists all missing names, never values). The file is written user-readable only
    (0600), since jobflow-remote reads database credentials only from its project file; with
    jobflow-remote installed the result is validated as a jobflow-remote ``Project``.
    """
    env = os.environ if env is None else env
    text = Path(template).read_text()
    missing = sorted(
        {m.group(1) for m in _PLACEHOLDER_RE.finditer(text) if m.group(2) is None} - set(env)
    )
    if missing:
        raise KeyError(
            f"{template}: set the environment variable(s) {', '.join(missing)} "
            "(see docs/hpc.md) before rendering the project file"
        )

    def fill(match: re.Match[str]) -> str:
        value = env.get(match.group(1))
        return value if value is not None else (match.group(2) or "")

    rendered = _PLACEHOLDER_RE.sub(fill, text)
    out = Path(out_path).expanduser()
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    try:
        from jobflow_remote.config.base import Project
        from ruamel.yaml import YAML

        Project.model_validate(YAML(typ="safe").load(rendered))
    except ImportError:
        pass
    except Exception as exc:
        raise ValueError(
            f"{template}: the rendered file is not a valid jobflow-remote project: "
            f"{_mask(str(exc), env)}"
        ) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(rendered)
    os.chmod(out, 0o600)
    return out


def _mask(text: str, env: Mapping[str, str]) -> str:
    """``text`` with the values of secret-looking variables and URI passwords masked."""
    from atomate2_gmt.settings import mask_uri

    for key, value in env.items():
        if value and re.search(r"PASS|SECRET|TOKEN|URI", key, re.IGNORECASE):
            text = text.replace(value, "***")
    return mask_uri(text)
