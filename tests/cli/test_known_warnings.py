"""Our runs hide jobflow's ``FutureWarning: cd is deprecated`` and nothing else."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from jobflow import Flow, job, run_locally

from atomate2_gmt.known_warnings import (
    CHGNET_GRAD_MESSAGE,
    JOBFLOW_CD_MESSAGE,
    ignore_known_warnings,
    known_warnings_ignored,
)


@job
def _add(a: int, b: int) -> int:
    return a + b


def _run_two_jobs(tmp_path) -> list[warnings.WarningMessage]:
    first = _add(1, 2)
    flow = Flow([first, _add(first.output, 3)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with known_warnings_ignored():
            responses = run_locally(flow, ensure_success=True, log=False, root_dir=tmp_path)
    assert responses[flow.jobs[-1].uuid][1].output == 6
    return caught


def _cd_warnings(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in caught if "cd is deprecated" in str(w.message)]


def test_jobflow_emits_the_cd_warning_without_the_filter(tmp_path) -> None:
    """The filter is needed: jobflow's run_locally does warn (once per job)."""
    first = _add(1, 2)
    flow = Flow([first, _add(first.output, 3)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_locally(flow, ensure_success=True, log=False, root_dir=tmp_path)
    cd = _cd_warnings(caught)
    if not cd:
        pytest.skip("this jobflow/monty does not warn about cd")
    assert all(issubclass(w.category, FutureWarning) for w in cd)
    assert all(w.filename.endswith("jobflow/managers/local.py") for w in cd)


def test_run_is_quiet_about_cd(tmp_path) -> None:
    assert _cd_warnings(_run_two_jobs(tmp_path)) == []


def test_other_warnings_still_show() -> None:
    """Same message from another module, another category from jobflow, and other messages."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ignore_known_warnings()
        warnings.warn("cd is deprecated, says our own code", FutureWarning, stacklevel=1)
        warnings.warn_explicit(
            "cd is deprecated", DeprecationWarning, "local.py", 1, module="jobflow.managers.local"
        )
        warnings.warn_explicit(
            "something else", FutureWarning, "local.py", 1, module="jobflow.managers.local"
        )
        warnings.warn_explicit(
            "cd is deprecated", FutureWarning, "local.py", 1, module="jobflow.managers.local"
        )
    messages = [(str(w.message), w.category) for w in caught]
    assert messages == [
        ("cd is deprecated, says our own code", FutureWarning),
        ("cd is deprecated", DeprecationWarning),
        ("something else", FutureWarning),
    ]


def test_filter_is_scoped_to_the_block() -> None:
    before = list(warnings.filters)
    with known_warnings_ignored():
        added = warnings.filters[: len(warnings.filters) - len(before)]
        assert {(f[0], f[2], f[1].pattern) for f in added} == {
            ("ignore", FutureWarning, JOBFLOW_CD_MESSAGE),
            ("ignore", UserWarning, CHGNET_GRAD_MESSAGE),
        }
    assert warnings.filters == before


def test_console_script_installs_the_filter() -> None:
    """``atomate2-gmt`` (the entry point ``main``) hides the jobflow cd warning of its runs."""
    code = (
        "import sys, warnings\n"
        "from atomate2_gmt.cli import app as cli\n"
        "sys.argv = ['atomate2-gmt', 'version']\n"
        "try:\n"
        "    cli.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "warnings.warn_explicit('cd is deprecated', FutureWarning, 'local.py', 1,\n"
        "                       module='jobflow.managers.local')\n"
        "warnings.warn_explicit('a real one', FutureWarning, 'x.py', 1, module='x')\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, check=True
    )
    assert "a real one" in out.stderr
    assert "cd is deprecated" not in out.stderr
