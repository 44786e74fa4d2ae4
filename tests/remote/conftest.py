"""A jobflow-remote project whose queue and job store are on the test MongoDB server."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent


@pytest.fixture
def jf_project(tmp_path: Path, mongo_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A reset jobflow-remote project (local worker 'local', shell scheduler) on ``mongo_server``.

    The worker runs jobs as ``jf -fe execution run`` subprocesses of this interpreter's venv, with
    this folder on PYTHONPATH (for ``remote_jobs``) and the atomate2-gmt stores on the same server.
    """
    jobflow_remote = pytest.importorskip("jobflow_remote")
    import yaml
    from jobflow_remote.config import ConfigManager

    name = f"gmt_{uuid.uuid4().hex[:8]}"
    database = f"jf_{name}"
    uri = mongo_server.uri
    projects = tmp_path / "jfremote"
    projects.mkdir()
    config = {
        "name": name,
        "base_dir": str(tmp_path / "base"),
        "workers": {
            "local": {
                "type": "local",
                "scheduler_type": "shell",
                "work_dir": str(tmp_path / "work"),
                "resources": {},
            }
        },
        "queue": {
            "store": {
                "type": "MongoStore",
                "uri": uri,
                "database": database,
                "collection_name": "jf_jobs",
            }
        },
        "jobstore": {
            "docs_store": {
                "type": "MongoStore",
                "uri": uri,
                "database": database,
                "collection_name": "jf_outputs",
            },
            "additional_stores": {
                "data": {
                    "type": "GridFSStore",
                    "uri": uri,
                    "database": database,
                    "collection_name": "jf_outputs_blobs",
                }
            },
        },
        "runner": {"delay_checkout": 1, "delay_check_run_status": 1, "delay_advance_status": 1},
    }
    (projects / f"{name}.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("JFREMOTE_PROJECTS_FOLDER", str(projects))
    monkeypatch.setenv("JFREMOTE_PROJECT", name)
    monkeypatch.setattr(jobflow_remote.SETTINGS, "projects_folder", str(projects))
    monkeypatch.setattr(jobflow_remote.SETTINGS, "project", name)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{_env('PATH')}")
    monkeypatch.setenv("PYTHONPATH", f"{HERE}:{_env('PYTHONPATH')}".rstrip(":"))
    # atomate2-gmt stores of the jobs: the same server, their own database
    monkeypatch.setenv("ATOMATE2_GMT_MONGO_URI", uri)
    monkeypatch.setenv("ATOMATE2_GMT_MONGO_DATABASE", f"gmt_{name}")
    monkeypatch.setenv("ATOMATE2_GMT_PROJECT_DIR", str(tmp_path / "gmt_project"))
    monkeypatch.setenv("ATOMATE2_GMT_CONFIG_FILE", str(tmp_path / "gmt.yaml"))
    monkeypatch.setenv("ATOMATE2_GMT_DEVICE", "cpu")
    (tmp_path / "gmt.yaml").write_text("BATCH_SIZE: 8\n")
    project = ConfigManager().get_project(name)
    assert project.get_job_controller().reset(reset_output=True)
    return project


def _env(name: str) -> str:
    import os

    return os.environ.get(name, "")
