"""Targeted filters for warnings that our runs trigger in third-party code and that a user can do
nothing about. Each filter matches one message, one category and one module, so every other
warning (ours or a library's) is still shown.

- jobflow's ``run_locally`` enters each job folder with monty's ``cd``, which monty deprecated
  (``FutureWarning: cd is deprecated ... Use contextlib.chdir instead``, raised from
  ``jobflow/managers/local.py``): once per job.
- CHGNet (the relaxation funnel's potential) converts a tensor that requires a gradient to a
  number when it computes the stress (``UserWarning: Converting a tensor with requires_grad=True
  to a scalar``, raised from ``chgnet/model/model.py``): once per relaxation.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

__all__ = [
    "CHGNET_GRAD_MESSAGE",
    "CHGNET_GRAD_MODULE",
    "JOBFLOW_CD_MESSAGE",
    "JOBFLOW_CD_MODULE",
    "ignore_known_warnings",
    "known_warnings_ignored",
]

JOBFLOW_CD_MESSAGE = r"cd is deprecated"
"""Start of monty's deprecation message for ``cd`` (a regular expression)."""
JOBFLOW_CD_MODULE = r"jobflow\.managers\.local"
"""The module the warning is attributed to (a regular expression)."""
CHGNET_GRAD_MESSAGE = r"Converting a tensor with requires_grad=True to a scalar"
"""Start of torch's warning that CHGNet's stress computation triggers (a regular expression)."""
CHGNET_GRAD_MODULE = r"chgnet\.model\.model"
"""The module the warning is attributed to (a regular expression)."""


def ignore_known_warnings() -> None:
    """Install the targeted filters in this process (the CLI does so at start)."""
    warnings.filterwarnings(
        "ignore", message=JOBFLOW_CD_MESSAGE, category=FutureWarning, module=JOBFLOW_CD_MODULE
    )
    warnings.filterwarnings(
        "ignore", message=CHGNET_GRAD_MESSAGE, category=UserWarning, module=CHGNET_GRAD_MODULE
    )


@contextlib.contextmanager
def known_warnings_ignored() -> Iterator[None]:
    """The targeted filters inside a ``with`` block only; the previous filters come back after."""
    with warnings.catch_warnings():
        ignore_known_warnings()
        yield
