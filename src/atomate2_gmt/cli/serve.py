"""``atomate2-gmt serve``: the read-only web app and REST API over the configured stores.

Binds to 127.0.0.1 unless ``--host`` says otherwise (the app has no login: on a shared machine
reach it through an SSH tunnel, docs/screening.md). Needs the ``web`` extra.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from atomate2_gmt.cli.context import ProjectDirOption, cli_settings, existing_candidate_store

__all__ = ["serve"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    project_dir: ProjectDirOption = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Serve the candidate store in a browser (table, candidate pages, parity) and as a REST API
    (read-only; OpenAPI docs at /docs)."""
    try:
        import uvicorn

        from atomate2_gmt.web.app import create_app
    except ImportError as exc:
        typer.echo(
            f"Error: the web app needs the 'web' extra ({exc.name} is missing): "
            "pip install 'atomate2-gmt[web]'",
            err=True,
        )
        raise typer.Exit(1) from None
    from atomate2_gmt.stores import StoreConnectionError, check_store, describe_store

    settings = cli_settings(ctx, project_dir)
    store = existing_candidate_store(settings)
    try:
        check_store(store, timeout_s=settings.STORE_TIMEOUT_S)
    except StoreConnectionError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from None
    app = create_app(settings)
    if not _is_loopback(host):
        typer.echo(
            f"Warning: binding to {host}: anyone who can reach this address can read the store "
            "(the app has no login). Prefer 127.0.0.1 and an SSH tunnel.",
            err=True,
        )
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"serving {describe_store(store)} at http://{shown}:{port}/ (API docs: /docs)")
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
