"""jobflow-remote helpers: send GMT jobs to a GPU worker and DFPT jobs to a CPU worker.

``apply_worker_config(flow)`` sets jobflow-remote's run configuration (worker, resources,
exec_config) on the jobs of a flow by the role each job declares in its metadata
(:mod:`atomate2_gmt.routing`), also on the DFPT jobs a selection adds at run time;
``render_project``
fills the project template of ``workflows/jobflow_remote/`` from environment variables, so that
no credential is ever committed. jobflow-remote is an optional dependency (the ``remote``
extra).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atomate2_gmt.routing import iter_jobs, route

__all__ = [
    "DEFAULT_DFPT_RESOURCES",
    "DEFAULT_GMT_RESOURCES",
    "DEFAULT_SERIAL_DFPT_RESOURCES",
    "apply_worker_config",
    "render_project",
    "worker_assignment",
]

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


def _site_resources(partition_var: str) -> dict[str, Any]:
    """``partition`` and ``account`` from the environment variables of the project template."""
    out: dict[str, Any] = {}
    if os.environ.get(partition_var):
        out["partition"] = os.environ[partition_var]
    if os.environ.get("GMT_SLURM_ACCOUNT"):
        out["account"] = os.environ["GMT_SLURM_ACCOUNT"]
    return out


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

    Jobs are routed by the role they declare (:func:`atomate2_gmt.routing.role_of`): GMT jobs
    go to ``gmt_worker`` with ``gmt_resources`` (default :data:`DEFAULT_GMT_RESOURCES`, one
    GPU); MPI DFPT runs (VASP) to ``dfpt_worker`` with ``dfpt_resources`` (default
    :data:`DEFAULT_DFPT_RESOURCES`, a node); serial DFPT runs (ABINIT), result conversions and
    feedback to ``dfpt_worker`` with ``serial_dfpt_resources`` (default
    :data:`DEFAULT_SERIAL_DFPT_RESOURCES`, one core). Other jobs keep the worker given to
    ``submit_flow``. The routing is stored in every job's metadata, and the jobs that create
    jobs at run time (the selection, a campaign's next round) route those the same way
    (:func:`atomate2_gmt.routing.route_new_jobs`). Resources are the keys of the worker's
    scheduler template (SLURM:
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
    return route(flow, routing)


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
