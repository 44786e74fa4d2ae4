"""Pydantic documents of atomate2-gmt (layer 5, see docs/architecture.md): import each from its
module (``schemas.prediction``, ``schemas.dfpt``, ``schemas.training``, ``schemas.fields``, ...).
"""
