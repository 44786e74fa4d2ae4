"""Job functions for the jobflow-remote integration test (importable by the worker process)."""

from __future__ import annotations

from jobflow import job


@job
def add(a: float, b: float) -> float:
    """a + b."""
    return a + b


@job
def multiply(a: float, b: float) -> float:
    """a * b."""
    return a * b
