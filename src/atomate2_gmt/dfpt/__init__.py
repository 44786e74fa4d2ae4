"""DFPT backends behind one interface (see docs/dfpt.md).

Every backend is a jobflow Maker whose ``make(structure, candidate_id=None)`` returns a Job or
Flow with a :class:`~atomate2_gmt.schemas.dfpt.DFPTResultDoc` output: ``dfpt.abinit`` (our own
ABINIT DFPT Makers; runs here and in CI) and ``dfpt.vasp`` (atomate2's VASP Makers).
``dfpt.validation`` decides what may become training data.
"""
