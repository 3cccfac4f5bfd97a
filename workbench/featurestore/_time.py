"""One rule for the points in time that time travel takes (``fg.read(t)``, ``fg.as_of(t)``).

What hsfs users pass is accepted:

* ``datetime.datetime``, ``datetime.date``, ``pandas.Timestamp`` (naive means UTC);
* ISO-8601 strings (``"2024-05-01"``, ``"2024-05-01T12:00:00Z"``, ``"2024-05-01 12:00"``);
* compact digit strings ``"%Y%m%d"``, ``"%Y%m%d%H"``, ``"%Y%m%d%H%M"``, ``"%Y%m%d%H%M%S"``,
  ``"%Y%m%d%H%M%S%f"`` (milliseconds);
* integers as **epoch milliseconds** (the Hopsworks convention).

An integer below 10¹¹ (before 1973-03-03 as milliseconds, and in the range of
epoch *seconds* or of Delta versions), a float, a bool or NaT is refused as
ambiguous, with a message saying what to pass instead.
"""

from __future__ import annotations

import datetime as _dt
import numbers
from typing import Any

import pandas as pd

from workbench.errors import FeatureStoreError

__all__ = ["to_wallclock", "MIN_EPOCH_MS"]

#: Smallest integer read as epoch milliseconds (1973-03-03T09:46:40Z).
MIN_EPOCH_MS = 10**11
_COMPACT = {8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S", 17: "%Y%m%d%H%M%S%f"}


def _utc(stamp: pd.Timestamp) -> _dt.datetime:
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(_dt.timezone.utc)
    return stamp.to_pydatetime()


def to_wallclock(value: Any, what: str = "wallclock_time") -> _dt.datetime:
    """The timezone-aware UTC datetime that ``value`` names (see the module's rule).

    Raises
    ------
    FeatureStoreError
        For an ambiguous number, an unparseable string, NaT or another type.
    """
    if isinstance(value, bool) or value is None:
        raise FeatureStoreError(f"{what} must be a datetime, date, string or epoch milliseconds, got {value!r}")
    if isinstance(value, numbers.Integral):
        number = int(value)
        if number < MIN_EPOCH_MS:
            raise FeatureStoreError(
                f"{what}={number} is ambiguous: integers are epoch milliseconds (hsfs convention), and {number} "
                f"would be {pd.Timestamp(max(number, 0), unit='ms').isoformat()}; pass a datetime or "
                f"{number * 1000} if it is epoch seconds, or read(version={number}) for a Delta version"
            )
        return _utc(pd.Timestamp(number, unit="ms"))
    if isinstance(value, numbers.Real):
        raise FeatureStoreError(f"{what}={value!r} is ambiguous: give a datetime or integer epoch milliseconds")
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            fmt = _COMPACT.get(len(text))
            if fmt is None:
                raise FeatureStoreError(
                    f"{what}={value!r}: a digit string must be one of {sorted(_COMPACT.values())} "
                    "(pass epoch milliseconds as an int)"
                )
            try:
                parsed = _dt.datetime.strptime(text if len(text) != 17 else text + "000", fmt)
            except ValueError as exc:
                raise FeatureStoreError(f"{what}={value!r} does not match {fmt}: {exc}") from None
            return _utc(pd.Timestamp(parsed))
    elif not isinstance(value, (_dt.date, pd.Timestamp)):
        raise FeatureStoreError(
            f"{what} must be a datetime, date, string or epoch milliseconds, got {type(value).__name__}"
        )
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise FeatureStoreError(f"{what} must be a datetime or ISO-8601 string, got {value!r}") from exc
    if pd.isna(stamp):
        raise FeatureStoreError(f"{what} must be a datetime, got {value!r}")
    return _utc(stamp)
