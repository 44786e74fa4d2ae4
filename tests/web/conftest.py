"""A project folder with real data for the web tests: shipped-model predictions of 14 MP
structures (two per crystal system) and of NaCl, a real VASP DFPT result of NaCl fed back (an
accepted DFPT result and its training documents), and the registry seeded with the shipped
models. Built once per session; the tests only read it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.model.conftest import mp_by_system

TASKS = ("dielectric", "piezo", "elastic")


@pytest.fixture(scope="session")
def web_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``{"dir", "settings", "docs", "nacl_id"}`` of a filled project (embedded stores)."""
    from atomate2_gmt.jobs.feedback import apply_feedback
    from atomate2_gmt.jobs.predict import GMTPredictMaker, predict_documents
    from atomate2_gmt.registry import ModelRegistry, seed_from_pretrained
    from atomate2_gmt.settings import GMTSettings
    from atomate2_gmt.stores import candidate_store, training_store, upsert_predictions
    from tests.jobs.conftest import vasp_dfpt_doc

    folder = tmp_path_factory.mktemp("web") / "project"
    env = {
        "ATOMATE2_GMT_PROJECT_DIR": str(folder),
        "ATOMATE2_GMT_DEVICE": "cpu",
        "HOME": str(folder.parent),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("ATOMATE2_GMT_CONFIG_FILE", raising=False)
        mp.delenv("ATOMATE2_GMT_MONGO_URI", raising=False)
        mp.delenv("ATOMATE2_GMT_MODELS", raising=False)
        settings = GMTSettings()
        groups = mp_by_system(2)
        structures = [s for cs in groups for s in groups[cs]]
        nacl = vasp_dfpt_doc("NaCl_phonons_dielectric")
        maker = GMTPredictMaker(tasks=TASKS, workers=0, model_workers=0)
        docs = predict_documents(maker, [*structures, nacl.get_structure()]).documents
        assert isinstance(docs, list)
        cands = candidate_store(settings)
        upsert_predictions(cands, docs)
        nacl_id = docs[-1]["prediction_id"]
        out = apply_feedback(
            nacl.model_copy(update={"candidate_id": nacl_id}), training_store(settings), cands
        )
        assert out["state"] == "accepted", out
        seed_from_pretrained(ModelRegistry(settings=settings), tasks=list(TASKS))
        cands.close()
        yield {
            "dir": folder,
            "settings": settings,
            "docs": docs,
            "nacl_id": nacl_id,
            "env": {**os.environ, **env},
        }


@pytest.fixture(scope="session")
def web_app(web_project: dict[str, Any]) -> Any:
    """The FastAPI app over the session project."""
    from atomate2_gmt.web.app import create_app

    return create_app(web_project["settings"])


@pytest.fixture(scope="session")
def client(web_app: Any) -> Iterator[Any]:
    """A FastAPI TestClient of :func:`web_app`."""
    from fastapi.testclient import TestClient

    with TestClient(web_app) as c:
        yield c
