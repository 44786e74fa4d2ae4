"""Assemble the web app: maggma's ``API`` (the REST resources, ``/heartbeat``, OpenAPI docs at
``/docs``), the pages and the static files; every route is GET (or HEAD)."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from maggma.core import StoreError

from atomate2_gmt import __version__
from atomate2_gmt.stores import StoreConnectionError, store_error_reason
from atomate2_gmt.web.figures import TensorPictures
from atomate2_gmt.web.service import WebStores

if TYPE_CHECKING:
    from fastapi import FastAPI

    from atomate2_gmt.settings import GMTSettings

__all__ = ["STATIC_DIR", "create_app", "store_errors"]

STATIC_DIR = Path(__file__).parent / "static"

_DESCRIPTION = """Read-only access to the atomate2-gmt stores: ranked GMTNet predictions
(dielectric ε∞ and ε0, piezoelectric e_iJ in C/m², elastic C_ij in GPa), one prediction document,
its structure and tensor pictures, DFPT results compared with the predictions, the training
documents written by DFPT feedback, and the model registry. Tensors are full Cartesian in the
stored structure's frame; Voigt matrices in the standard order xx, yy, zz, yz, xz, xy."""


def store_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the store cannot be read" (answered with 503)."""
    errors: list[type[BaseException]] = [StoreConnectionError, StoreError, sqlite3.Error]
    try:
        from pymongo.errors import PyMongoError

        errors.append(PyMongoError)
    except ImportError:  # pragma: no cover - pymongo comes with maggma
        pass
    return tuple(errors)


def create_app(
    settings: GMTSettings | None = None,
    stores: WebStores | None = None,
    picture_resolution: int = 40,
) -> FastAPI:
    """The FastAPI app over the configured stores (or ``stores``).

    Routes: ``/`` (candidate table), ``/candidate/{key}``, ``/parity``, ``/registry`` (pages);
    ``/candidates/``, ``/candidates/{key}/``, ``/candidates/{key}/structure``,
    ``/candidates/{key}/picture.png``, ``/dfpt/``, ``/dfpt/{key}/``, ``/training/``,
    ``/training/{record_id}/``, ``/models/``, ``/models/{key}/`` (JSON); ``/heartbeat``;
    ``/docs`` and ``/openapi.json``; ``/static/``. Stores are opened on first use.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from maggma.api.API import API

    from atomate2_gmt.web.api import build_resources
    from atomate2_gmt.web.pages import build_router

    stores = stores or WebStores.from_settings(settings)
    pictures = TensorPictures(stores.cache_dir, resolution=picture_resolution)
    api = API(
        resources=build_resources(stores, pictures),  # type: ignore[arg-type]
        title="atomate2-gmt",
        version=__version__,
        description=_DESCRIPTION,
        heartbeat_meta={"stores": stores.description(), "read_only": True},
        tags_meta=[
            {"name": "candidates", "description": "Prediction documents, ranked and filtered."},
            {"name": "dfpt", "description": "DFPT results and prediction-vs-DFPT errors."},
            {"name": "training", "description": "Training documents from DFPT feedback."},
            {"name": "models", "description": "The model registry."},
        ],
    )
    app = api.app
    # "/" is the candidate table here, not maggma's redirect to the docs; the docs page is
    # served with the vendored Swagger UI (FastAPI's default loads it from a CDN)
    replaced = {"/", "/docs", "/redoc", "/docs/oauth2-redirect"}
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", None) not in replaced]

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "vendor" / "swagger-ui" / "favicon-32x32.png")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="atomate2-gmt API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    app.include_router(build_router(stores))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    async def unavailable(request: Request, exc: Exception) -> Any:
        message = f"the store cannot be read: {store_error_reason(exc)}"
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(f"<h1>503</h1><p>{_escape(message)}</p>", status_code=503)
        return JSONResponse({"detail": message}, status_code=503)

    for error in store_errors():
        app.add_exception_handler(error, unavailable)
    app.state.stores = stores
    return app


def _escape(text: str) -> str:
    import html

    return html.escape(text)
