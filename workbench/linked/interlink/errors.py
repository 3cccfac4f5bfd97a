"""The error interlinking raises on bad input (a :class:`workbench.errors.DataError`)."""

from __future__ import annotations

from workbench.errors import DataError

__all__ = ["InterlinkError"]


class InterlinkError(DataError):
    """An interlinking input or option is invalid: empty side, mixed CRS, bad budget, unknown relation or weighting."""
