"""``atomate2-gmt query``: the best screened candidates for one property, from the store.

Mount with ``register(app)`` (or ``app.command("query")(query_command)``). The store comes from
:class:`~atomate2_gmt.settings.GMTSettings` (embedded in ``PROJECT_DIR`` unless MongoDB is
configured).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Any

import typer

from atomate2_gmt.cli.context import ProjectDirOption, cli_settings, existing_candidate_store

__all__ = ["query_command", "register", "render_rows"]

_FORMATS = ("table", "csv", "json")
_TABLE_COLUMNS = ("rank", "formula", "space_group", "crystal_system", "point_group")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "0" if abs(value) < 1e-9 else f"{value:.4g}"
    return str(value)


def render_rows(rows: list[dict[str, Any]], prop: str, fmt: str) -> str:
    """The query rows as a rich table (text), CSV or JSON."""
    from atomate2_gmt.schemas.fields import DERIVED_FIELDS

    if fmt == "json":
        return json.dumps(rows, indent=2, default=str)
    if fmt == "csv":
        buffer = io.StringIO()
        fields = list(rows[0]) if rows else [*_TABLE_COLUMNS, *DERIVED_FIELDS[prop]]
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: json.dumps(v) if isinstance(v, list | dict) else ("" if v is None else v)
                    for k, v in row.items()
                }
            )
        return buffer.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(_FORMATS)}")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"top {len(rows)} candidates: {prop}")
    columns = [
        *_TABLE_COLUMNS,
        *DERIVED_FIELDS[prop],
        "domain_distance",
        "energy_above_hull",
        "source",
    ]
    if rows and all(r.get("energy_above_hull") is None for r in rows):
        columns.remove("energy_above_hull")
    for col in columns:
        table.add_column(col, justify="right" if col not in ("formula", "source") else "left")
    for row in rows:
        table.add_row(*(_fmt(row.get(c)) for c in columns))
    console = Console(file=io.StringIO(), width=160, record=True)
    console.print(table)
    return console.export_text()


# Over 80 lines because of its signature: one typer option per query filter (the docstring
# is the --help text, so the reason is stated here).
def query_command(
    prop: Annotated[
        str,
        typer.Option("--property", "-p", help="dielectric, dielectric_total, piezo or elastic."),
    ],
    sort: Annotated[
        str | None,
        typer.Option("--sort", "-s", help="Derived field to sort on (default per property)."),
    ] = None,
    top: Annotated[int, typer.Option("--top", "-n", min=1, help="Number of candidates.")] = 20,
    crystal_system: Annotated[
        str | None, typer.Option("--crystal-system", help="e.g. hexagonal.")
    ] = None,
    exclude_elements: Annotated[str, typer.Option("--exclude-elements", help="e.g. Pb,Cd")] = "",
    include_elements: Annotated[str, typer.Option("--include-elements", help="e.g. O")] = "",
    non_centrosymmetric: Annotated[
        bool | None,
        typer.Option(
            "--non-centrosymmetric/--centrosymmetric",
            help="Keep only non-centrosymmetric (or only centrosymmetric) crystals.",
        ),
    ] = None,
    stable_only: Annotated[
        bool,
        typer.Option("--stable-only", help="Only Born-stable crystals (predicted elastic tensor)."),
    ] = False,
    max_e_above_hull: Annotated[
        float | None,
        typer.Option("--max-e-above-hull", help="eV/atom; on the source's energy_above_hull."),
    ] = None,
    in_domain: Annotated[
        bool,
        typer.Option(
            "--in-domain",
            help="Only crystals within the training data's domain (domain_distance <= 1).",
        ),
    ] = False,
    include_metals: Annotated[
        bool,
        typer.Option(
            "--include-metals",
            help="Keep crystals flagged likely_metal (left out of dielectric and piezo queries "
            "by default; see docs/screening.md).",
        ),
    ] = False,
    state: Annotated[str, typer.Option("--state", help="successful or failed.")] = "successful",
    model_version: Annotated[str | None, typer.Option("--model-version")] = None,
    ascending: Annotated[bool, typer.Option("--ascending", help="Smallest values first.")] = False,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
    tensors: Annotated[
        bool, typer.Option("--tensors", help="Add tensors to csv/json output.")
    ] = False,
    project_dir: ProjectDirOption = None,
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Show the top screened candidates for a property, from the prediction store."""
    from atomate2_gmt.data.domain import IN_DOMAIN_MAX
    from atomate2_gmt.query import query_candidates
    from atomate2_gmt.stores import StoreConnectionError, check_store

    if fmt not in _FORMATS:
        typer.echo(f"Error: unknown format {fmt!r}; valid: {', '.join(_FORMATS)}", err=True)
        raise typer.Exit(2)
    try:
        settings = cli_settings(ctx, project_dir)
        store = existing_candidate_store(settings)
        check_store(store, timeout_s=settings.STORE_TIMEOUT_S)
        rows = query_candidates(
            store,
            prop,
            sort=sort,
            top=top,
            crystal_system=crystal_system,
            exclude_elements=exclude_elements,
            include_elements=include_elements,
            non_centrosymmetric=non_centrosymmetric,
            stable_only=stable_only,
            state=state,
            ascending=ascending,
            max_e_above_hull=max_e_above_hull,
            max_domain_distance=IN_DOMAIN_MAX if in_domain else None,
            model_version=model_version,
            include_tensors=tensors,
            include_metals=True if include_metals else None,
        )
    except ValueError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None
    except StoreConnectionError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from None
    _echo_rows(rows, prop, fmt, state)


def _echo_rows(rows: list[dict[str, Any]], prop: str, fmt: str, state: str) -> None:
    """Print the rows in ``fmt`` (a one-line notice for an empty table)."""
    if not rows and fmt == "table":
        typer.echo(f"no {state} {prop} predictions match these filters")
        return
    typer.echo(render_rows(rows, prop, fmt), nl=fmt != "csv")


def register(app: typer.Typer) -> None:
    """Mount ``query`` on the main app."""
    app.command("query")(query_command)
