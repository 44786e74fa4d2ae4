"""Job functions for the jobflow-remote integration test (importable by the worker process)."""

from __future__ import annotations

from jobflow import job


@job
def add(a: float, b: float) -> float:
    """a + b."""
    return a + b


@job(data="values")
def table(n: int, scale: float) -> dict:
    """``values``: n numbers (goes to the job store's GridFS "data" store)."""
    return {"n": n, "values": [scale * i for i in range(n)]}
