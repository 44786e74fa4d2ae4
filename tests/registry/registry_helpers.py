"""Settings helpers of the registry tests (a uniquely named module, importable from tests)."""

from __future__ import annotations

import uuid
from pathlib import Path

from atomate2_gmt.settings import GMTSettings


def embedded_settings(tmp_path: Path) -> GMTSettings:
    return GMTSettings(PROJECT_DIR=tmp_path / "project", CONFIG_FILE=str(tmp_path / "none.yaml"))


def mongo_settings(uri: str, tmp_path: Path) -> GMTSettings:
    return GMTSettings(
        MONGO_URI=uri,
        MONGO_DATABASE=f"gmt_reg_{uuid.uuid4().hex[:8]}",
        STORE_TIMEOUT_S=5.0,
        PROJECT_DIR=tmp_path / "project",
        CONFIG_FILE=str(tmp_path / "none.yaml"),
    )
