"""Errors raised by the stores: by the embedded store and by the write helpers alike.

The classes report ``atomate2_gmt.stores`` as their module (where users import them from), so
error messages and pickles name the public path rather than this file.
"""

from __future__ import annotations

from maggma.core import StoreError

__all__ = ["StoreConnectionError", "StoreIndexError", "StoreWriteError"]


class StoreIndexError(StoreError):
    """An index could not be created; ``str()`` is the message (maggma's ``StoreError`` alone
    would print the tuple of its arguments)."""

    __module__ = "atomate2_gmt.stores"

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)


class StoreConnectionError(ConnectionError):
    """A store could not be reached or opened (the message names it, without credentials)."""

    __module__ = "atomate2_gmt.stores"


class StoreWriteError(RuntimeError):
    """A bulk write stopped part-way; the message says how far it got and how to finish."""

    __module__ = "atomate2_gmt.stores"
