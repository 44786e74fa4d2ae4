#!/usr/bin/env python
"""Submit a GMTNet screening flow to jobflow-remote (GMT jobs → GPU worker, DFPT → CPU worker).

    python workflows/submit_screening.py render-project            # ~/.jfremote/<name>.yaml
    python workflows/submit_screening.py submit candidates/ --gpu-worker gpu --project atomate2_gmt

See docs/hpc.md. Database credentials come only from the environment
(ATOMATE2_GMT_MONGO_URI), never from the command line or this file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TEMPLATE = Path(__file__).parent / "jobflow_remote" / "atomate2_gmt.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render-project", help="Write the jobflow-remote project file.")
    render.add_argument("--template", type=Path, default=TEMPLATE)
    render.add_argument(
        "--out", type=Path, default=None, help="Default: ~/.jfremote/<project name>.yaml"
    )
    render.add_argument("--overwrite", action="store_true")

    submit = sub.add_parser("submit", help="Build the screening flow and submit it.")
    submit.add_argument("candidates", type=Path, help="Folder (or file) of candidate structures.")
    submit.add_argument("--project", default=None, help="jobflow-remote project (default: jf's).")
    submit.add_argument("--gpu-worker", default="gpu", help="Worker of the GMT jobs.")
    submit.add_argument("--cpu-worker", default="cpu", help="Worker of the DFPT jobs.")
    submit.add_argument("--tasks", nargs="+", default=None, help="Tasks (default: all shipped).")
    submit.add_argument("--chunk-size", type=int, default=500, help="Structures per GMT job.")
    submit.add_argument("--top", type=int, default=20, help="Rows per property in the ranking.")
    submit.add_argument("--partition", default=None, help="SLURM partition of the GMT jobs.")
    submit.add_argument("--time", default=None, help="Wall time of a GMT job (HH:MM:SS).")
    submit.add_argument("--dry-run", action="store_true", help="Print the job → worker map only.")
    return parser


def render_project_file(args: argparse.Namespace) -> Path:
    """Fill the template from the environment into the jobflow-remote projects folder."""
    import os

    from atomate2_gmt.remote import render_project

    out = args.out
    if out is None:
        from jobflow_remote import SETTINGS

        name = os.environ.get("GMT_JF_PROJECT", "atomate2_gmt")
        out = Path(SETTINGS.projects_folder) / f"{name}.yaml"
    path = render_project(args.template, out, overwrite=args.overwrite)
    print(f"wrote {path} (mode 0600); check it with: jf project check --errors")
    return path


def submit(args: argparse.Namespace) -> list[str]:
    """Build ``GMTScreenMaker().make(candidates)``, route its jobs, and submit it."""
    from atomate2_gmt.flows.screen import GMTScreenMaker  # lazy: heavy imports
    from atomate2_gmt.jobs.predict import GMTPredictMaker
    from atomate2_gmt.remote import DEFAULT_GMT_RESOURCES, apply_worker_config, worker_assignment

    if not args.candidates.exists():
        raise FileNotFoundError(f"no candidate folder or file at {args.candidates}")
    predict = GMTPredictMaker(tasks=tuple(args.tasks) if args.tasks else None)
    maker = GMTScreenMaker(predict_maker=predict, chunk_size=args.chunk_size, top=args.top)
    flow = maker.make(args.candidates)
    resources = dict(DEFAULT_GMT_RESOURCES)
    if args.partition:
        resources["partition"] = args.partition
    if args.time:
        resources["time"] = args.time
    apply_worker_config(
        flow, gmt_worker=args.gpu_worker, dfpt_worker=args.cpu_worker, gmt_resources=resources
    )
    for name, worker in sorted(worker_assignment(flow).items()):
        print(f"{name:40s} -> {worker or args.gpu_worker}")
    if args.dry_run:
        return []
    from jobflow_remote import submit_flow

    ids = submit_flow(flow, worker=args.gpu_worker, project=args.project)
    print(f"submitted {len(ids)} jobs (db ids {ids[0]}..{ids[-1]}); start: jf runner start")
    return list(ids)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "render-project":
            render_project_file(args)
        else:
            submit(args)
    except (KeyError, OSError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
