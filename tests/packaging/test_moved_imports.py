"""Names that moved to modules named for what they hold still import from their old paths."""

from __future__ import annotations

import pytest


def test_web_service_names_come_from_records_and_figures() -> None:
    from atomate2_gmt.web import figures, records
    from atomate2_gmt.web.service import (
        DFPTComparisons,
        TensorPictures,
        dfpt_rows,
        model_document,
        model_versions,
        training_document,
        training_page,
    )

    assert TensorPictures is figures.TensorPictures
    assert DFPTComparisons is records.DFPTComparisons
    assert dfpt_rows is records.dfpt_rows
    assert model_document is records.model_document
    assert model_versions is records.model_versions
    assert training_document is records.training_document
    assert training_page is records.training_page


def test_an_unknown_web_service_name_is_an_attribute_error() -> None:
    from atomate2_gmt.web import service

    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        _ = service.nothing


def test_campaign_config_names_import_from_simulate_and_the_package() -> None:
    import atomate2_gmt.active_learning as al
    from atomate2_gmt.active_learning import config, simulate

    for name in config.__all__:
        assert getattr(simulate, name) is getattr(config, name)
    assert al.CampaignConfig is config.CampaignConfig
    assert al.CampaignResult is config.CampaignResult
