"""Server-rendered pages (Jinja2): the candidate table, a candidate, the parity plots, the models.

Plain HTML with one vendored script (3Dmol.js, for the structure) and the app's own CSS; sorting,
filtering and paging are links and a GET form, so every view has a URL that can be shared.
The pages read the stores through :mod:`atomate2_gmt.web.service`, as the API does.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from atomate2_gmt import __version__
from atomate2_gmt.query import (
    CRYSTAL_SYSTEMS,
    DFPT_FILTERS,
    FIELD_UNITS,
    PRESETS,
    CandidateQuery,
    missing_values,
)
from atomate2_gmt.schemas.fields import DERIVED_FIELDS, PREDICTION_KEY, TASKS
from atomate2_gmt.web import records, service
from atomate2_gmt.web.common import NotFoundError
from atomate2_gmt.web.service import WebStores

__all__ = ["PER_PAGE", "build_router", "templates"]

PER_PAGE = 25
"""Rows per page of the candidate table."""

TABLE_OPTIONS: tuple[str, ...] = (
    "property",
    "preset",
    "sort",
    "ascending",
    "crystal_system",
    "include_elements",
    "exclude_elements",
    "non_centrosymmetric",
    "born_stable",
    "state",
    "max_e_above_hull",
    "min_band_gap",
    "min_value",
    "max_value",
    "model_version",
    "dfpt",
    "include_metals",
    "max_domain_distance",
)
"""The candidate table's URL parameters: the options of one
:class:`~atomate2_gmt.query.CandidateQuery` (``property`` is its ``prop``), and ``page``."""


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return "0" if abs(value) < 1e-9 else f"{value:.{digits}g}"
    return str(value)


def templates() -> Environment:
    """The Jinja2 environment of the package templates (autoescaped)."""
    env = Environment(
        loader=PackageLoader("atomate2_gmt.web", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    env.globals.update(version=__version__, FIELD_UNITS=FIELD_UNITS, urlencode=urlencode)
    return env


def _parity_svg(rows: list[dict[str, Any]], size: int = 320) -> dict[str, Any]:
    """Scatter of every standard Voigt component, predicted vs DFPT, as SVG coordinates."""
    xs = [v for r in rows for line in r["voigt_dfpt"] for v in line]
    ys = [v for r in rows for line in r["voigt_predicted"] for v in line]
    lim = max([abs(v) for v in xs + ys] + [1e-9]) * 1.05
    pad = 40
    scale = (size - 2 * pad) / (2 * lim)

    def px(x: float) -> float:
        return round(pad + (x + lim) * scale, 2)

    def py(y: float) -> float:
        return round(size - pad - (y + lim) * scale, 2)

    points = [
        {"cx": px(x), "cy": py(y), "title": f"{r['formula']}: DFPT {x:.4g}, predicted {y:.4g}"}
        for r in rows
        for lx, ly in zip(r["voigt_dfpt"], r["voigt_predicted"], strict=True)
        for x, y in zip(lx, ly, strict=True)
    ]
    return {
        "size": size,
        "pad": pad,
        "lim": lim,
        "diag": (px(-lim), py(-lim), px(lim), py(lim)),
        "points": points,
    }


CURSOR_PARAMS: tuple[str, str] = ("after", "after_key")
"""The "next" link's cursor: the sort value (JSON) and prediction_id of the page's last row."""


def _cursor(params: Any) -> tuple[Any, str] | None:
    """(sort value, prediction_id) of the ``after``/``after_key`` parameters, or None."""
    import json

    raw, key = params.get("after"), params.get("after_key")
    if raw is None or key is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise ValueError(f"after must be a JSON number or string, got {raw!r}") from None
    if isinstance(value, dict | list):
        raise ValueError(f"after must be a JSON number or string, got {raw!r}")
    return value, key


def _next_cursor(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The ``after``/``after_key`` parameters of the page after ``rows``."""
    import json

    if not rows or rows[-1].get("sort_value") is None:
        return {}
    return {"after": json.dumps(rows[-1]["sort_value"]), "after_key": rows[-1][PREDICTION_KEY]}


def build_router(stores: WebStores) -> APIRouter:
    """The page routes (``/``, ``/candidate/{key}``, ``/parity``, ``/registry``).

    One function of about 120 lines on purpose: each route is a short closure over ``stores``
    and the shared ``render``, and FastAPI registers them by decoration here."""
    env = templates()
    router = APIRouter(include_in_schema=False)
    store_lines = stores.description()

    def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(stores=store_lines, tasks=TASKS, **context)
        return HTMLResponse(html, status_code=status_code)

    def error(status_code: int, message: str) -> HTMLResponse:
        return render("error.html", status_code=status_code, message=message, code=status_code)

    @router.get("/", response_class=HTMLResponse)
    def table(request: Request, page: int = Query(1, ge=1)) -> HTMLResponse:
        options = {
            k: v for k, v in request.query_params.items() if k not in ("page", *CURSOR_PARAMS)
        }
        unknown = sorted(set(options) - set(TABLE_OPTIONS))
        if unknown:
            return error(
                422,
                f"unknown parameter(s) {', '.join(unknown)}; valid: page, "
                + ", ".join(TABLE_OPTIONS),
            )
        prop = options.pop("property", None)
        if not prop and not options.get("preset"):
            prop = "dielectric"
        try:
            filters = CandidateQuery.build(prop=prop, **options)
            rows, total = service.candidate_page(
                stores.candidates,
                filters,
                (page - 1) * PER_PAGE,
                PER_PAGE,
                stores.counts,
                after=_cursor(request.query_params),
            )
            sort_field = filters.sort_field()
            missing = missing_values(stores.candidates, filters, stores.counts.count_each)
        except ValueError as exc:
            return error(422, str(exc))
        params = filters.as_params()
        n_pages = max(1, -(-total.n // PER_PAGE))

        next_cursor = _next_cursor(rows)

        def link(**change: Any) -> str:
            merged = {**params, **{k: v for k, v in change.items() if v is not None}}
            for k in [k for k, v in change.items() if v is None]:
                merged.pop(k, None)
            return "/?" + urlencode(merged)

        return render(
            "table.html",
            rows=rows,
            total=total,
            page=page,
            n_pages=n_pages,
            per_page=PER_PAGE,
            filters=filters,
            sort_field=sort_field,
            fields=DERIVED_FIELDS[filters.task],
            sortable=service.sort_choices(filters.task),
            figure=(filters.preset_rule.figure if filters.preset_rule else None),
            presets=PRESETS,
            missing=missing,
            crystal_systems=CRYSTAL_SYSTEMS,
            dfpt_filters=DFPT_FILTERS,
            link=link,
            next_cursor=next_cursor,
        )

    @router.get("/candidate/{key}", response_class=HTMLResponse)
    def candidate(key: str) -> HTMLResponse:
        try:
            view = service.candidate_view(stores.candidates, key)
            structure = service.structure_view(view["document"])
        except NotFoundError as exc:
            return error(404, str(exc.args[0]))
        doc = view["document"]
        return render(
            "candidate.html",
            doc=doc,
            view=view,
            structure=structure,
            key=doc["prediction_id"],
            symmetry=doc.get("symmetry") or {},
        )

    @router.get("/parity", response_class=HTMLResponse)
    def parity(include_rejected: bool = False) -> HTMLResponse:
        states = ("accepted", "rejected") if include_rejected else ("accepted",)
        rows = stores.comparisons.rows(stores.candidates, None, states)
        panels = []
        for task in TASKS:
            sub = [r for r in rows if r["task"] == task]
            if sub:
                panels.append(
                    {"task": task, "rows": sub, "units": sub[0]["units"], "svg": _parity_svg(sub)}
                )
        return render("parity.html", panels=panels, include_rejected=include_rejected)

    @router.get("/registry", response_class=HTMLResponse)
    def registry() -> HTMLResponse:
        return render("models.html", models=records.model_versions(stores.registry))

    return router
