"""jobflow-remote helpers: send GMT jobs to a GPU worker and DFPT jobs to a CPU worker.

``apply_worker_config(flow)`` sets jobflow-remote's run configuration (worker, resources,
exec_config) on the jobs of a screening flow by job name; ``render_project`` fills the project
template of ``workflows/jobflow_remote/`` from environment variables, so that no credential is
ever committed. jobflow-remote is an optional dependency (``pip install 'atomate2-gmt[remote]'``).
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
    "DFPT_JOB_PREFIXES",
    "GMT_JOB_PREFIXES",
    "apply_worker_config",
    "iter_jobs",
    "job_kind",
    "render_project",
    "worker_assignment",
]

GMT_JOB_PREFIXES: tuple[str, ...] = (
    "gmt_predict",
    "gmt_upsert",
    "gmt_rank",
    "gmt_select",
    "gmt_retrain",
)
"""Names of the GMTNet jobs (GPU worker)."""

DFPT_JOB_PREFIXES: tuple[str, ...] = ("abinit_", "vasp_", "dfpt_")
"""Names of the DFPT jobs (CPU worker)."""

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
"""SLURM resources of a DFPT job: one full CPU node, 24 h."""

_PLACEHOLDER_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _require_jobflow_remote() -> Any:
    try:
        import jobflow_remote
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "jobflow-remote is not installed: pip install 'atomate2-gmt[remote]' "
            "(or pip install 'jobflow-remote>=0.1.5' 'pymongo<4.11')"
        ) from exc
    return jobflow_remote


def iter_jobs(flow: Any) -> Iterator[Any]:
    """Every ``Job`` of a (nested) ``Flow``, a ``Job`` or a list of them."""
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


def job_kind(name: str) -> str | None:
    """'gmt', 'dfpt' or None for a job name (matched on the name prefixes above)."""
    if name.startswith(GMT_JOB_PREFIXES):
        return "gmt"
    if name.startswith(DFPT_JOB_PREFIXES):
        return "dfpt"
    return None


def apply_worker_config(
    flow: Any,
    gmt_worker: str | None = "gpu",
    dfpt_worker: str | None = "cpu",
    gmt_resources: Mapping[str, Any] | None = None,
    dfpt_resources: Mapping[str, Any] | None = None,
    gmt_exec_config: str | None = None,
    dfpt_exec_config: str | None = None,
    priority: int | None = None,
) -> Any:
    """Set jobflow-remote's worker/resources/exec_config on the GMT and DFPT jobs of ``flow``.

    GMT jobs (names starting ``gmt_predict``, ``gmt_upsert``, ``gmt_rank``, ``gmt_select``,
    ``gmt_retrain``) go to ``gmt_worker`` with ``gmt_resources`` (default
    :data:`DEFAULT_GMT_RESOURCES`, one GPU); DFPT jobs (``abinit_*``, ``vasp_*``, ``dfpt_*``) to
    ``dfpt_worker`` with ``dfpt_resources`` (default :data:`DEFAULT_DFPT_RESOURCES`). Other jobs
    keep the worker given to ``submit_flow``. Jobs that a GMT or DFPT job creates at run time
    inherit the setting (jobflow's ``dynamic`` config updates). Resources are the keys of the
    worker's scheduler template (SLURM: ``partition``, ``gres``, ``time``, ...). Modifies
    ``flow`` in place and returns it.
    """
    _require_jobflow_remote()
    from jobflow_remote import set_run_config

    jobs = list(iter_jobs(flow))
    gmt_res = dict(DEFAULT_GMT_RESOURCES if gmt_resources is None else gmt_resources)
    dfpt_res = dict(DEFAULT_DFPT_RESOURCES if dfpt_resources is None else dfpt_resources)
    settings: dict[str, tuple[str | None, dict[str, Any], str | None]] = {
        "dfpt": (dfpt_worker, dfpt_res, dfpt_exec_config),
        "gmt": (gmt_worker, gmt_res, gmt_exec_config),
    }
    prefixes = {"dfpt": DFPT_JOB_PREFIXES, "gmt": GMT_JOB_PREFIXES}
    for kind in ("dfpt", "gmt"):  # GMT last: it wins where jobflow's substring filter overlaps
        worker, resources, exec_config = settings[kind]
        if worker is None:
            continue
        for prefix in prefixes[kind]:
            # dynamic: jobs created at run time by a matching job match the same filter
            set_run_config(
                flow,
                name_filter=prefix,
                worker=worker,
                resources=resources,
                exec_config=exec_config,
                priority=priority,
            )
    # jobflow's name_filter is a substring test ('dfpt_' is in 'gmt_select_for_dfpt_x'):
    # give every existing job the worker of its own prefix
    for job in jobs:
        job_type = job_kind(job.name)
        if job_type is None or settings[job_type][0] is None:
            continue
        worker, resources, exec_config = settings[job_type]
        if (job.config.manager_config or {}).get("worker") != worker:
            set_run_config(
                job,
                worker=worker,
                resources=resources,
                exec_config=exec_config,
                priority=priority,
                dynamic=False,
            )
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
