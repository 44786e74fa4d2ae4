"""Data layer: records (structure + tensor in the structure's frame + provenance) and sources.

- :mod:`~atomate2_gmt.data.records`: :class:`~atomate2_gmt.data.records.TensorRecord`,
  ``TASKS``, ``TASK_UNITS``, the seeded split and the training-data hash.
- :mod:`~atomate2_gmt.data.mp`: the Materials Project tensors shipped in ``datasets/``.
- :mod:`~atomate2_gmt.data.jarvis`: the GMTNet paper's JARVIS-DFT benchmark (download, hash
  check, restricted unpickling, the paper's filters and split).
- :mod:`~atomate2_gmt.data.store_source`: training records from a store of training documents
  (the DFPT feedback).
- :mod:`~atomate2_gmt.data.curation`: named curations of implausible training records;
  :mod:`~atomate2_gmt.data.quality`: which DFPT settings make production-quality training data;
  :mod:`~atomate2_gmt.data.domain`: a crystal's distance from a task's training data.
- :mod:`~atomate2_gmt.data.criteria`: the store-query operators a user's filter may use.

Import from the modules: this package imports none of them, so that a light one (the query
criteria) does not load pymatgen with the datasets' readers.
"""
