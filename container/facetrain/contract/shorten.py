"""Short, printable renderings of values that come from users, for error messages.

A message names what is wrong and shows enough of the value to find it; a 10 MB string or a list of a
million items must not become a 10 MB message (SageMaker keeps 1024 characters of FailureReason, Step
Functions 32 KB of a cause). Standard library only: the Lambdas' layer ships this module.
"""

from __future__ import annotations

import reprlib

_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 60, 60, 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


def clip(text: str, limit: int = 300) -> str:
    """The text, cut to `limit` characters with '...' when longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shorten(value: object, limit: int = 120) -> str:
    """repr of a value, shortened: nested containers and long strings elided with '...'."""
    try:
        text = _REPR.repr(value)
    except (RecursionError, MemoryError, ValueError):  # e.g. an int too long to render
        text = f"<{type(value).__name__}>"
    return clip(text, limit)
