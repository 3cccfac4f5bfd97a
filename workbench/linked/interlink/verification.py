"""Verification: one DE-9IM matrix per candidate pair, and every topological relation derived from it.

:func:`relate` computes the matrices with shapely 2 over arrays of pairs; :func:`relation_masks`
turns them, in one vectorised pass, into a bit mask per pair of the relations that hold.
The relations are named as the GeoSPARQL properties the store answers (``geo:sfIntersects``...):
the Simple Features ones follow GEOS's dimension-aware definitions (as ``shapely.crosses`` etc.),
the Egenhofer and RCC8 ones the GeoSPARQL 1.0 matrix patterns (as the store's ``geof:`` functions).
GeoSPARQL 1.0 has no ``sfCovers``: covering is its Egenhofer ``ehCovers`` / ``ehCoveredBy``.
"""

from __future__ import annotations

import numpy as np
import shapely

from workbench.linked.interlink.errors import InterlinkError

__all__ = [
    "ALL_RELATIONS",
    "DEFAULT_RELATIONS",
    "PATTERNS",
    "check_relations",
    "mask_names",
    "relate",
    "relation_masks",
]

#: The relations interlinking derives (GeoSPARQL local names), in bit order.
ALL_RELATIONS: tuple[str, ...] = (
    "sfIntersects", "sfContains", "sfWithin", "ehCovers", "ehCoveredBy", "sfEquals", "sfTouches", "sfOverlaps",
    "sfCrosses",
    "ehEquals", "ehMeet", "ehOverlap", "ehInside", "ehContains",
    "rcc8eq", "rcc8ec", "rcc8po", "rcc8tppi", "rcc8tpp", "rcc8ntpp", "rcc8ntppi",
)

#: What ``relations=None`` links: the Simple Features relations and covering.
DEFAULT_RELATIONS: tuple[str, ...] = ALL_RELATIONS[:9]

#: GeoSPARQL 1.0 DE-9IM patterns of the Egenhofer and RCC8 relations (Table 2 and 3 of the standard).
PATTERNS: dict[str, str] = {
    "ehCovers": "T*TFT*FF*",
    "ehCoveredBy": "TFF*TFT**",
    "ehEquals": "TFFFTFFFT",
    "ehOverlap": "T*T***T**",
    "ehInside": "TFF*FFT**",
    "ehContains": "T*TFF*FF*",
    "rcc8eq": "TFFFTFFFT",
    "rcc8ec": "FFTFTTTTT",
    "rcc8po": "TTTTTTTTT",
    "rcc8tppi": "TTTFTTFFT",
    "rcc8tpp": "TFFTTFTTT",
    "rcc8ntpp": "TFFTFFTTT",
    "rcc8ntppi": "TTTFFTFFT",
}

_DISJOINT = ("sfDisjoint", "ehDisjoint", "rcc8dc")
_F = ord("F")


def check_relations(relations: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The relations to link (``None``: :data:`DEFAULT_RELATIONS`), checked.

    Raises
    ------
    InterlinkError
        On an unknown name, a disjointness relation (counted, never linked), or none at all.
    """
    if relations is None:
        return DEFAULT_RELATIONS
    if isinstance(relations, str):
        relations = [r.strip() for r in relations.split(",") if r.strip()]
    names = tuple(dict.fromkeys(relations))
    if not names:
        raise InterlinkError(f"no relation given: expected some of {', '.join(ALL_RELATIONS)}")
    for name in names:
        if name in _DISJOINT:
            raise InterlinkError(
                f"relation {name!r} is not linked (every far-apart pair would be a link); "
                f"the result counts disjoint pairs instead"
            )
        if name not in ALL_RELATIONS:
            hint = " (GeoSPARQL 1.0 calls covering ehCovers / ehCoveredBy)" if "over" in name else ""
            raise InterlinkError(f"unknown relation {name!r}{hint}: expected some of {', '.join(ALL_RELATIONS)}")
    return names


def relate(source_geoms: np.ndarray, target_geoms: np.ndarray) -> np.ndarray:
    """DE-9IM matrices of paired geometries, as an ``(n, 9)`` array of the bytes ``F``, ``0``, ``1``, ``2``.

    Prepared source geometries (``shapely.prepare``) make GEOS use its prepared relate.
    """
    if len(source_geoms) == 0:
        return np.empty((0, 9), dtype=np.uint8)
    matrices = shapely.relate(source_geoms, target_geoms)
    return np.asarray(matrices, dtype="S9").view(np.uint8).reshape(-1, 9)


def _matches(m: np.ndarray, pattern: str) -> np.ndarray:
    ok = np.ones(len(m), dtype=bool)
    for k, ch in enumerate(pattern):
        if ch == "*":
            continue
        if ch == "T":
            ok &= m[:, k] != _F
        else:
            ok &= m[:, k] == ord(ch)
    return ok


def _t(m: np.ndarray, k: int) -> np.ndarray:
    return m[:, k] != _F


def _f(m: np.ndarray, k: int) -> np.ndarray:
    return m[:, k] == _F


def relation_masks(matrices: np.ndarray, *, source_dims: np.ndarray, target_dims: np.ndarray,
                   relations: tuple[str, ...] = ALL_RELATIONS) -> np.ndarray:
    """Bit mask (``uint32``, bit *i* = ``ALL_RELATIONS[i]``) of the relations that hold per pair.

    Parameters
    ----------
    matrices
        ``(n, 9)`` DE-9IM bytes from :func:`relate`.
    source_dims, target_dims
        Topological dimension of each pair's geometries (``shapely.get_dimensions``): the
        Simple Features relations crosses, overlaps, touches and equals depend on them.
    relations
        The relations to derive (others stay 0).
    """
    m = matrices
    da, db = np.asarray(source_dims), np.asarray(target_dims)
    intersects = ~(_f(m, 0) & _f(m, 1) & _f(m, 3) & _f(m, 4))
    out = np.zeros(len(m), dtype=np.uint32)
    for name in relations:
        bit = ALL_RELATIONS.index(name)
        if name == "sfIntersects":
            hold = intersects
        elif name == "sfContains":  # T*****FF*
            hold = _t(m, 0) & _f(m, 6) & _f(m, 7)
        elif name == "sfWithin":  # T*F**F***
            hold = _t(m, 0) & _f(m, 2) & _f(m, 5)
        elif name == "sfEquals":  # same dimension and T*F**FFF*
            hold = (da == db) & _t(m, 0) & _f(m, 2) & _f(m, 5) & _f(m, 6) & _f(m, 7)
        elif name in ("sfTouches", "ehMeet"):  # never between two points; FT*******, F**T*****, F***T****
            hold = ~((da == 0) & (db == 0)) & _f(m, 0) & (_t(m, 1) | _t(m, 3) | _t(m, 4))
        elif name == "sfOverlaps":  # equal dimensions; lines: 1*T***T**, else T*T***T**
            lines = (da == 1) & (db == 1)
            hold = (da == db) & _t(m, 2) & _t(m, 6) & np.where(lines, m[:, 0] == ord("1"), _t(m, 0))
        elif name == "sfCrosses":
            lower = (da < db) & _t(m, 0) & _t(m, 2)  # point/line, point/area, line/area
            higher = (da > db) & _t(m, 0) & _t(m, 6)
            lines = (da == 1) & (db == 1) & (m[:, 0] == ord("0"))
            hold = lower | higher | lines
        else:
            hold = _matches(m, PATTERNS[name])
        out |= hold.astype(np.uint32) << np.uint32(bit)
    return out


def mask_names(mask: int) -> list[str]:
    """The relation names set in one bit mask."""
    return [name for bit, name in enumerate(ALL_RELATIONS) if mask >> bit & 1]
