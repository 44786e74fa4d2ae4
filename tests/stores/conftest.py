"""Fixtures of prediction documents for the store/query tests (see gmt_store_docs.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from gmt_store_docs import make_doc

from atomate2_gmt.schemas.prediction import GMTPredictionDoc


@pytest.fixture(scope="session")
def doc_factory() -> Callable[..., GMTPredictionDoc]:
    """``doc_factory(name, version=..., e_max=..., eps=..., K=..., G=...)``."""
    return make_doc


@pytest.fixture(scope="session")
def screening_docs() -> list[GMTPredictionDoc]:
    """Six structures with distinct, known derived values (see the table in each test)."""
    return [
        make_doc("ZnO", e_max=1.0, eps=(3.0, 3.0, 4.0), K=140.0, G=45.0),
        make_doc("CdS", e_max=0.4, eps=(5.0, 5.0, 5.5), K=60.0, G=15.0),
        make_doc("GaAs", e_max=0.15, eps=(10.0, 10.0, 10.0), K=75.0, G=33.0),
        make_doc("NaCl", e_max=0.0, eps=(2.3, 2.3, 2.3), K=25.0, G=15.0),
        make_doc("PbTiO3", e_max=3.5, eps=(8.0, 8.0, 6.0), K=100.0, G=-5.0),
        make_doc("TiO2", e_max=0.0, eps=(7.0, 7.0, 8.5), K=210.0, G=110.0),
    ]
