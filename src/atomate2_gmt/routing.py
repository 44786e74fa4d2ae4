"""Job roles and their routing: what a job is, declared where the job is made.

Every job of the project says what it is in its metadata (``metadata[ROLE_KEY]``), set when the
job is made: a ``@job`` carries ``**job_role("gmt")`` among its arguments, a Maker that builds a
flow of other packages' jobs calls :func:`declare_role` on them. The roles:

- ``"gmt"``: GMTNet jobs (prediction, ranking, selection, retraining): the GPU worker;
- ``"dfpt"``: an MPI DFPT run (VASP through atomate2): a CPU node;
- ``"dfpt_serial"``: a serial DFPT run (ABINIT), a DFPT result conversion, the feedback job.

A job created at run time (``Response(addition=...)``, ``replace``, ``detour``) that declares no
role of its own inherits its parent's (a dynamic metadata update, applied by jobflow).

:func:`route` gives every job the run configuration (worker, resources, exec_config, priority)
of its role from a routing table (``{role: {"worker", "resources", "exec_config"} | None,
"priority": int | None}``; :func:`atomate2_gmt.remote.apply_worker_config` builds it) and
carries that table to the jobs created at run time; a job that adds jobs of other roles routes
them with :func:`route_new_jobs`. This module reads metadata only: it imports no job and knows
no flow, so a new job needs no entry anywhere else. It imports jobflow alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, get_args

from jobflow import Flow, Job

__all__ = [
    "KIND_KEY",
    "ROLES",
    "ROLE_KEY",
    "ROUTING_KEY",
    "Role",
    "declare_role",
    "iter_jobs",
    "job_role",
    "lacks_role",
    "role_of",
    "route",
    "route_new_jobs",
]

Role = Literal["gmt", "dfpt", "dfpt_serial"]
ROLES: tuple[str, ...] = get_args(Role)

ROLE_KEY = "atomate2_gmt_role"
"""Job metadata key of the job's role (one of :data:`ROLES`)."""

KIND_KEY = "atomate2_gmt_kind"
"""Job metadata key of what a job does where its role does not say it, for selecting jobs in a
job store, a flow or a progress display without reading their names: ``"predict"`` (a
prediction job: a screening chunk, the funnel's relaxed structures), ``"rank"`` (a screening
ranking), ``"relax"`` (one relaxation of the funnel's shortlist, an atomate2 force-field job;
its metadata also carry ``"source"`` and ``"position"``, ``[k, n]`` in the shortlist)."""

ROUTING_KEY = "atomate2_gmt_routing"
"""Job metadata key of the routing table :func:`route` applied, carried to the jobs created at
run time so that :func:`route_new_jobs` routes them the same way."""


def lacks_role(obj: Any) -> bool:
    """Whether ``obj`` is a job that declares no role (the filter of the inherited role)."""
    return isinstance(obj, Job) and ROLE_KEY not in (obj.metadata or {})


def _inherit(role: str) -> dict[str, Any]:
    """The dynamic metadata update that gives a job's role to the role-less jobs it creates."""
    return {
        "update": {ROLE_KEY: role},
        "name_filter": None,
        "function_filter": None,
        "dict_mod": False,
        "callback_filter": lacks_role,
    }


def _check(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown job role {role!r}; valid: {', '.join(ROLES)}")
    return role


def job_role(role: Role, kind: str | None = None) -> dict[str, Any]:
    """Keyword arguments of ``jobflow.job`` that declare the role (and ``kind``, under
    :data:`KIND_KEY`) of every job it makes, e.g. ``@job(name="gmt_rank", **job_role("gmt",
    "rank"))`` (jobflow copies them for each job). Jobs it adds at run time (``addition``,
    ``detour``) inherit the role, not the kind; a job that *replaces* itself passes its whole
    metadata, kind included, to its replacement (jobflow), so no job that replaces itself
    declares a kind."""
    _check(role)
    metadata: dict[str, Any] = {ROLE_KEY: role}
    if kind is not None:
        metadata[KIND_KEY] = kind
    return {"metadata": metadata, "metadata_updates": [_inherit(role)]}


def declare_role(obj: Any, role: Role) -> Any:
    """Give ``role`` to every job of ``obj`` (a Job, a Flow or a list of them) that declares
    none, and to the jobs those create at run time; returns ``obj``. For the jobs a Maker of the
    project builds from other packages' Makers (atomate2's VASP jobs)."""
    _check(role)
    for job in iter_jobs(obj):
        if lacks_role(job):
            job.update_metadata({ROLE_KEY: role}, callback_filter=lacks_role, dynamic=True)
    return obj


def role_of(job: Any) -> str | None:
    """The role a job declares (None: none; such a job runs where ``submit_flow`` sends it)."""
    role = (getattr(job, "metadata", None) or {}).get(ROLE_KEY)
    return str(role) if role in ROLES else None


def iter_jobs(flow: Any) -> Iterator[Job]:
    """Every ``Job`` of a (nested) ``Flow``, a ``Job`` or a list of them, depth first.

    jobflow's ``Flow.iterflow`` yields the same jobs of a flow (in dependency order), but it
    builds the flow's networkx graph and raises "cannot apply compose_all to an empty list"
    for a flow that is or holds an empty ``Flow`` (jobflow 0.4.0); routing needs no order, so
    this plain walk is kept."""
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


def _set_run_config(job: Job, target: dict[str, Any], priority: int | None) -> None:
    """jobflow-remote's run configuration of one job (what ``jobflow_remote.set_run_config``
    writes: the ``manager_config`` of the job's config), without importing jobflow-remote,
    which the job that calls :func:`route_new_jobs` may run without."""
    config = {
        "worker": target["worker"],
        "resources": dict(target["resources"]),
        "exec_config": target["exec_config"],
    }
    if priority is not None:
        config["priority"] = priority
    job.config.manager_config = {**(job.config.manager_config or {}), **config}


def route(flow: Any, routing: dict[str, Any], inherited: str | None = None) -> Any:
    """Give every job of ``flow`` the run configuration of its role in ``routing`` and carry
    ``routing`` to the jobs they create at run time; returns ``flow``. ``inherited``: the role
    of a job without one (the role of the job that creates them, see :func:`route_new_jobs`).
    Jobs whose role has no entry keep the worker given to ``submit_flow``."""
    for job in iter_jobs(flow):
        job.update_metadata({ROUTING_KEY: routing}, dynamic=True)
        role = role_of(job) or inherited
        target = routing.get(role) if role else None
        if target:
            _set_run_config(job, target, routing.get("priority"))
    return flow


def route_new_jobs(flow: Any) -> Any:
    """Route the jobs a running job creates (``Response(addition=flow)``) as the running job's
    own flow was routed (:func:`route`); a no-op outside a routed flow. Returns ``flow``.

    jobflow gives the jobs a response creates the creating job's run configuration
    (``JobConfig.pass_manager_config``) after the job returns, which would send them all to the
    creating job's worker: the running job stops passing its own once its new jobs are routed."""
    from jobflow import CURRENT_JOB

    current = CURRENT_JOB.job
    routing = (getattr(current, "metadata", None) or {}).get(ROUTING_KEY)
    if routing and current is not None:
        route(flow, routing, inherited=role_of(current))
        current.config.pass_manager_config = False
    return flow
