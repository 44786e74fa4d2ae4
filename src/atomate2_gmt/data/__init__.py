"""Data layer: records (structure + tensor in the structure's frame + provenance) and sources.

- :mod:`~atomate2_gmt.data.records`: :class:`TensorRecord`, :data:`TASKS`, :data:`TASK_UNITS`,
  the seeded split and the training-data hash.
- :mod:`~atomate2_gmt.data.mp`: the Materials Project tensors shipped in ``datasets/``.
- :mod:`~atomate2_gmt.data.jarvis`: the GMTNet paper's JARVIS-DFT benchmark (download, hash
  check, restricted unpickling, the paper's filters and split).
- ``store_source.py`` (not written yet): training records read from a maggma store of DFPT
  results (written by the feedback jobs); it will return :class:`TensorRecord` lists too.
"""

from atomate2_gmt.data.jarvis import (
    DEFAULT_URL_BASE,
    GMTNET_JARVIS_FILES,
    JARVIS_FILTERS,
    FileHashes,
    JarvisSplits,
    RestrictedUnpickler,
    fetch_gmtnet_jarvis,
    git_blob_sha1,
    jarvis_atoms_to_structure,
    load_gmtnet_jarvis,
    safe_load_pickle,
)
from atomate2_gmt.data.mp import RESIDUAL_THRESHOLDS, MPDataset, load_mp
from atomate2_gmt.data.records import (
    TASK_RANK,
    TASK_UNITS,
    TASKS,
    TensorRecord,
    record_hash,
    records_hash,
    split_records,
)

__all__ = [
    "DEFAULT_URL_BASE",
    "GMTNET_JARVIS_FILES",
    "JARVIS_FILTERS",
    "RESIDUAL_THRESHOLDS",
    "TASKS",
    "TASK_RANK",
    "TASK_UNITS",
    "FileHashes",
    "JarvisSplits",
    "MPDataset",
    "RestrictedUnpickler",
    "TensorRecord",
    "fetch_gmtnet_jarvis",
    "git_blob_sha1",
    "jarvis_atoms_to_structure",
    "load_gmtnet_jarvis",
    "load_mp",
    "record_hash",
    "records_hash",
    "safe_load_pickle",
    "split_records",
]
