"""Registry fixtures: tiny real checkpoints, and a registry on each backend (embedded, MongoDB)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from registry_helpers import embedded_settings, mongo_settings
from tests.tiny_model import TINY

from atomate2_gmt.model.checkpoint import save_checkpoint
from atomate2_gmt.model.config import GMTNetConfig
from atomate2_gmt.model.gmtnet import GMTNet
from atomate2_gmt.registry import ModelRegistry
from atomate2_gmt.settings import GMTSettings


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``make_checkpoint(task, seed)``: a small real GMTNet checkpoint (distinct per seed)."""
    folder = tmp_path_factory.mktemp("checkpoints")

    def make(task: str = "piezo", seed: int = 0) -> Path:
        path = folder / f"{task}_{seed}.pt"
        if not path.exists():
            torch.manual_seed(seed)
            model = GMTNet(GMTNetConfig(task=task, **TINY))
            save_checkpoint(
                path, model, {"training_data_hash": f"hash-{seed}", "n_train": 10 + seed}
            )
        return path

    return make


@pytest.fixture(params=["embedded", pytest.param("mongo", marks=pytest.mark.slow)])
def settings(request: pytest.FixtureRequest, tmp_path: Path, recwarn) -> GMTSettings:
    """Settings of a fresh registry: embedded (default) or on the real MongoDB server."""
    if request.param == "embedded":
        return embedded_settings(tmp_path)
    server = request.getfixturevalue("mongo_server")
    return mongo_settings(server.uri, tmp_path)


@pytest.fixture
def registry(settings: GMTSettings) -> Iterator[ModelRegistry]:
    reg = ModelRegistry(settings=settings)
    try:
        yield reg.connect()
    finally:
        reg.close()
