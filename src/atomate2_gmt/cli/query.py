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

__all__ = ["header", "query_command", "register", "render_rows", "with_sigma"]

_FORMATS = ("table", "csv", "json")
_IDENTITY = ("rank", "formula", "space_group", "crystal_system", "point_group")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "0" if abs(value) < 1e-9 else f"{value:.4g}"
    return str(value)


def with_sigma(value: Any, sigma: float | None, note: str | None) -> str:
    """A ranked number with its ensemble σ: ``"0.84 ± 0.12"``; ``"0.84 (σ n/a)"`` when the
    prediction had no ensemble (``note``); booleans and missing values as they are."""
    if not isinstance(value, float | int) or isinstance(value, bool):
        return _fmt(value)
    if sigma is not None:
        return f"{_fmt(float(value))} ± {sigma:.2g}"
    return f"{_fmt(float(value))} ({'σ n/a' if note else 'no σ'})"


def header(name: str) -> str:
    """A column name with its units (``e_ij_max (C/m²)``)."""
    from atomate2_gmt.query import FIELD_UNITS

    unit = FIELD_UNITS.get(name)
    return f"{name} ({unit})" if unit else name


def _marks(row: dict[str, Any]) -> str:
    marks = []
    if row.get("band_gap") == 0 or (row.get("band_gap") is None and row.get("is_metal")):
        marks.append("metal (source)")
    elif row.get("likely_metal") and row.get("band_gap") is None:
        marks.append("metal?")
    if row.get("out_of_domain"):
        marks.append("out of domain")
    return ", ".join(marks) or "-"


def render_rows(rows: list[dict[str, Any]], prop: str, fmt: str, figure: str | None = None) -> str:
    """The query rows as a rich table (text), CSV or JSON. The table shows units in its
    headers, each ranked number with its ensemble σ (or that it has none), the source's
    band gap and energy above the hull where given, likely-metal and out-of-domain marks, and
    the error of failed predictions; ``figure``: a preset's figure of merit column. The
    ``relaxed`` column names the potential that relaxed the structure, ``stability`` the energy
    above the hull and where it is from (:func:`atomate2_gmt.query.stability_label`)."""
    from atomate2_gmt.query import stability_label
    from atomate2_gmt.schemas.fields import DERIVED_FIELDS

    if fmt == "json":
        return json.dumps(rows, indent=2, default=str)
    if fmt == "csv":
        buffer = io.StringIO()
        fields = list(rows[0]) if rows else [*_IDENTITY, *DERIVED_FIELDS[prop]]
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

    ranked = [*([figure] if figure else []), *DERIVED_FIELDS[prop]]
    # relaxed: by which potential the structure was relaxed ("no": predicted as given);
    # stability: the energy above the hull with where it is from (source or MLIP estimate)
    columns = [*_IDENTITY, *ranked, "band_gap", "relaxed", "stability", "marks", "source"]
    if rows and all(r.get("band_gap") is None for r in rows):
        columns.remove("band_gap")
    if any(r.get("error") for r in rows):
        columns.append("error")
    table = Table(title=f"top {len(rows)} candidates: {prop}")
    for col in columns:
        table.add_column(
            header(col),
            justify="left"
            if col in ("formula", "source", "error", "marks", "relaxed", "stability")
            else "right",
        )
    for row in rows:
        cells = []
        for col in columns:
            if col in ranked:
                sigma = (row.get("uncertainty") or {}).get(col)
                cells.append(with_sigma(row.get(col), sigma, row.get("uncertainty_note")))
            elif col == "marks":
                cells.append(_marks(row))
            elif col == "stability":
                cells.append(stability_label(row))
            elif col == "relaxed":
                cells.append(row.get("relaxed") or "no")
            else:
                cells.append(_fmt(row.get(col)))
        table.add_row(*cells)
    console = Console(file=io.StringIO(), width=200, record=True)
    console.print(table)
    notes = ["± : calibrated ensemble σ"]
    if any(r.get("uncertainty_note") for r in rows):
        notes.append("σ n/a: predicted by a single model, no uncertainty")
    if any(r.get("out_of_domain") for r in rows):
        notes.append("out of domain: domain_distance > 1 (extrapolation)")
    if "band_gap" in columns:
        notes.append("band_gap: the candidate source's value")
    notes.append(
        "stability: energy above the hull (eV/atom), the source's DFT value or an MLIP estimate"
    )
    console.print("; ".join(notes), highlight=False)
    return console.export_text()


# Over 80 lines because of its signature: one typer option per query filter (the docstring
# is the --help text, so the reason is stated here).
def query_command(
    prop: Annotated[
        str | None,
        typer.Option(
            "--property", "-p", help="dielectric, dielectric_total, piezo or elastic (or --preset)."
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help="A published selection rule: mp-piezo, jarvis-piezo, jarvis-dielectric, "
            "riebesell-dielectric (docs/screening.md, Presets).",
        ),
    ] = None,
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
        typer.Option(
            "--stable-only", "--born-stable", help="Only Born-stable crystals (predicted C)."
        ),
    ] = False,
    max_e_above_hull: Annotated[
        float | None,
        typer.Option("--max-e-above-hull", help="eV/atom; on the source's energy_above_hull."),
    ] = None,
    min_band_gap: Annotated[
        float | None,
        typer.Option("--min-band-gap", help="eV; on the source's band_gap."),
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
    relaxed_only: Annotated[
        bool,
        typer.Option(
            "--relaxed-only",
            help="Leave out generated (hypothetical) crystals predicted on their unrelaxed, "
            "guessed structure (what the relaxation funnel ranks).",
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
    from atomate2_gmt.query import CandidateQuery, missing_values, query_candidates
    from atomate2_gmt.stores import StoreConnectionError, check_store

    if fmt not in _FORMATS:
        typer.echo(f"Error: unknown format {fmt!r}; valid: {', '.join(_FORMATS)}", err=True)
        raise typer.Exit(2)
    try:
        query = CandidateQuery.build(
            prop=prop,
            preset=preset,
            sort=sort,
            top=top,
            crystal_system=crystal_system,
            exclude_elements=exclude_elements,
            include_elements=include_elements,
            non_centrosymmetric=non_centrosymmetric,
            born_stable=stable_only,
            state=state,
            ascending=ascending,
            max_e_above_hull=max_e_above_hull,
            min_band_gap=min_band_gap,
            max_domain_distance=IN_DOMAIN_MAX if in_domain else None,
            model_version=model_version,
            include_metals=True if include_metals else None,
            include_unrelaxed_hypothetical=not relaxed_only,
        )
        settings = cli_settings(ctx, project_dir)
        store = existing_candidate_store(settings)
        check_store(store, timeout_s=settings.STORE_TIMEOUT_S)
        rows = query_candidates(store, query, include_tensors=tensors)
        missing = missing_values(store, query)
    except ValueError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None
    except StoreConnectionError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from None
    _echo_rows(rows, query, fmt)
    if missing:
        left_out = "; ".join(f"{n.label()} without {what}" for what, n in missing.items())
        typer.echo(
            f"left out, lacking a value this query needs: {left_out}",
            err=fmt != "table",
        )


def _echo_rows(rows: list[dict[str, Any]], query: Any, fmt: str) -> None:
    """Print the rows in ``fmt`` (a one-line notice for an empty table)."""
    preset = query.preset_rule
    if preset is not None and fmt == "table":
        typer.echo(f"preset {preset.name}: {preset.description} ({preset.study})")
    if not rows and fmt == "table":
        typer.echo(f"no {query.state} {query.task} predictions match these filters")
        return
    figure = preset.figure if preset is not None else None
    typer.echo(render_rows(rows, query.task, fmt, figure), nl=fmt != "csv")


def register(app: typer.Typer) -> None:
    """Mount ``query`` on the main app."""
    app.command("query")(query_command)
