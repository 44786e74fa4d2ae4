"""Named training-data sources (no torch import: the CLI help lists them)."""

from __future__ import annotations

__all__ = ["DATA_SOURCES", "describe_data_sources"]

DATA_SOURCES: dict[str, str] = {
    "mp": "shipped Materials Project tensors (the 2015-era sets, mp_legacy)",
    "mp_newer": "further shipped MP tensors (elastic only, mp_newer)",
    "mp_all": "mp + mp_newer, each source split on its own",
    "store": "DFPT training documents in the training store",
    "mp+store": "mp + store, each source split on its own",
}
"""Named training-data sources of :func:`atomate2_gmt.training.run.load_records`."""


def describe_data_sources() -> str:
    """One line per source, ``name: description``, joined by ``"; "`` (for help texts)."""
    return "; ".join(f"{name}: {text}" for name, text in DATA_SOURCES.items())
