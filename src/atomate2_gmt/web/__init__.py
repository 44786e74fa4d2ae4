"""A read-only web app and REST API over the stores (``atomate2-gmt serve``).

- :mod:`~atomate2_gmt.web.service`: what is read from the stores for the candidate table and
  pages (plain Python, allow-listed filters); :mod:`~atomate2_gmt.web.records`: DFPT
  comparisons, training documents, model versions; :mod:`~atomate2_gmt.web.figures`: cached
  tensor-surface pictures;
- :mod:`~atomate2_gmt.web.api`: the REST API, maggma ``Resource``s and ``QueryOperator``s
  (FastAPI), OpenAPI docs at ``/docs``;
- :mod:`~atomate2_gmt.web.pages`: server-rendered pages (Jinja2) with a vendored 3Dmol.js viewer;
- :mod:`~atomate2_gmt.web.app`: :func:`create_app` assembles them (maggma ``API``).

Needs the ``web`` extra (``pip install 'atomate2-gmt[web]'``). Nothing else in the package
imports this one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any) -> FastAPI:
    """See :func:`atomate2_gmt.web.app.create_app`."""
    from atomate2_gmt.web.app import create_app as _create_app

    return _create_app(*args, **kwargs)
