"""Errors and warnings raised by the data pipeline."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Sequence

MAX_LISTED_ERRORS = 5


class DataError(ValueError):
    """Input data that cannot be used, with a message naming the file, row or id at fault."""


class DataWarning(UserWarning):
    """Something in a dataset was skipped or dropped (rows with bad structures, NaN labels, ...)."""


def summarize_errors(errors: Sequence[tuple[str, str]], limit: int = MAX_LISTED_ERRORS) -> str:
    """``"id1: msg; id2: msg; ... (+N more)"`` for the first ``limit`` errors."""
    shown = "; ".join(f"{ident}: {msg}" for ident, msg in errors[:limit])
    more = len(errors) - limit
    return shown + (f" (+{more} more)" if more > 0 else "")


def warn(message: str) -> None:
    """Emit a :class:`DataWarning` attributed to the first caller outside this package."""
    warnings.warn(message, DataWarning, stacklevel=_outside_stacklevel())


def _outside_stacklevel() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(2), 2  # 1 = warn's caller
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == here:
        frame, level = frame.f_back, level + 1
    return level
