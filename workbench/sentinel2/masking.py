"""Cloud masking from the L2A scene classification (SCL) and DN → reflectance (pure, no I/O)."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from workbench.errors import DataError

__all__ = ["DEFAULT_INVALID_SCL", "invalid_classes", "valid_mask", "dilate_invalid", "to_reflectance"]

#: SCL classes masked by default: no data, saturated, cloud shadow, cloud medium/high, thin cirrus.
DEFAULT_INVALID_SCL: tuple[int, ...] = (0, 1, 3, 8, 9, 10)


def invalid_classes(
    *, mask_dark: bool = False, mask_snow: bool = False, extra: Iterable[int] = ()
) -> tuple[int, ...]:
    """SCL classes to mask: the defaults, optionally dark areas (2) and snow (11).

    Parameters
    ----------
    mask_dark
        Also mask class 2 (dark area pixels, often terrain shadow).
    mask_snow
        Also mask class 11 (snow and ice).
    extra
        Further classes (0–11) to mask.
    """
    classes = set(DEFAULT_INVALID_SCL)
    if mask_dark:
        classes.add(2)
    if mask_snow:
        classes.add(11)
    for value in extra:
        if not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= 11:
            raise DataError(f"SCL class {value!r} is not a scene-classification code in 0..11")
        classes.add(int(value))
    return tuple(sorted(classes))


def dilate_invalid(invalid: np.ndarray, pixels: int) -> np.ndarray:
    """Grow an invalid mask ``(..., y, x)`` by ``pixels`` in y and x (square structuring element)."""
    if pixels < 0:
        raise DataError(f"dilation must be >= 0 pixels, got {pixels}")
    if pixels == 0:
        return invalid
    from scipy.ndimage import maximum_filter

    size = [1] * (invalid.ndim - 2) + [2 * pixels + 1, 2 * pixels + 1]
    return maximum_filter(invalid.astype(np.uint8), size=size, mode="nearest").astype(bool)


def valid_mask(scl: np.ndarray, *, invalid: Iterable[int] = DEFAULT_INVALID_SCL, dilation: int = 0) -> np.ndarray:
    """Boolean mask of usable observations from an SCL array ``(..., y, x)``.

    Parameters
    ----------
    scl
        Scene classification codes (integers 0–11).
    invalid
        Classes that are not usable (see :func:`invalid_classes`).
    dilation
        Pixels by which clouds/shadows (the invalid area) are grown.
    """
    bad = np.isin(scl, np.asarray(tuple(invalid), dtype=np.int64))
    return ~dilate_invalid(bad, dilation)


def to_reflectance(
    dn: np.ndarray, *, scale: float | np.ndarray = 1e-4, offset: float | np.ndarray = -0.1, nodata: int = 0
) -> np.ndarray:
    """L2A DN to surface reflectance: ``DN * scale + offset``; ``nodata`` DN becomes NaN.

    ``scale`` and ``offset`` broadcast against ``dn`` (e.g. one value per date).
    """
    out = dn.astype(np.float32) * np.asarray(scale, dtype=np.float32) + np.asarray(offset, dtype=np.float32)
    return np.where(dn == nodata, np.float32(np.nan), out).astype(np.float32)
