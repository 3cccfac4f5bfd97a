"""Units of measure for the GeoSPARQL functions: OGC ``uom:``, EPSG and QUDT ``unit:`` IRIs.

Pure look-ups. A unit IRI is classified as a length (factor: metres per unit), an
angle (factor: degrees per unit) or an area (factor: square metres per unit).

>>> unit_of("http://qudt.org/vocab/unit/KiloM")
Unit(kind='length', factor=1000.0, iri='http://qudt.org/vocab/unit/KiloM')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from workbench.errors import DataError
from workbench.linked.vocab import QUDT_UNIT, UOM

__all__ = ["Unit", "UnitError", "unit_of", "LENGTH_UNITS", "ANGLE_UNITS", "AREA_UNITS", "area_factor"]

_EPSG_UOM = "http://www.opengis.net/def/uom/EPSG/0/"
_FOOT = 0.3048
_US_FOOT = 1200.0 / 3937.0
_MILE = 1609.344

#: IRI -> metres per unit
LENGTH_UNITS: dict[str, float] = {
    UOM + "metre": 1.0,
    UOM + "meter": 1.0,
    UOM + "kilometre": 1000.0,
    UOM + "kilometer": 1000.0,
    _EPSG_UOM + "9001": 1.0,
    _EPSG_UOM + "9002": _FOOT,
    _EPSG_UOM + "9003": _US_FOOT,
    _EPSG_UOM + "9030": 1852.0,
    _EPSG_UOM + "9036": 1000.0,
    QUDT_UNIT + "M": 1.0,
    QUDT_UNIT + "KiloM": 1000.0,
    QUDT_UNIT + "CentiM": 0.01,
    QUDT_UNIT + "MilliM": 0.001,
    QUDT_UNIT + "FT": _FOOT,
    QUDT_UNIT + "FT_US": _US_FOOT,
    QUDT_UNIT + "YD": 3 * _FOOT,
    QUDT_UNIT + "IN": _FOOT / 12,
    QUDT_UNIT + "MI": _MILE,
    QUDT_UNIT + "MI_US": 5280 * _US_FOOT,
    QUDT_UNIT + "MI_N": 1852.0,
}

#: IRI -> degrees per unit
ANGLE_UNITS: dict[str, float] = {
    UOM + "degree": 1.0,
    UOM + "radian": 180.0 / math.pi,
    _EPSG_UOM + "9101": 180.0 / math.pi,
    _EPSG_UOM + "9102": 1.0,
    _EPSG_UOM + "9122": 1.0,
    QUDT_UNIT + "DEG": 1.0,
    QUDT_UNIT + "RAD": 180.0 / math.pi,
    QUDT_UNIT + "ARCMIN": 1.0 / 60.0,
    QUDT_UNIT + "ARCSEC": 1.0 / 3600.0,
}

#: IRI -> square metres per unit
AREA_UNITS: dict[str, float] = {
    UOM + "squareMetre": 1.0,
    UOM + "squareMeter": 1.0,
    QUDT_UNIT + "M2": 1.0,
    QUDT_UNIT + "KiloM2": 1.0e6,
    QUDT_UNIT + "CentiM2": 1.0e-4,
    QUDT_UNIT + "MilliM2": 1.0e-6,
    QUDT_UNIT + "HA": 1.0e4,
    QUDT_UNIT + "AC": 4046.8564224,
    QUDT_UNIT + "FT2": _FOOT * _FOOT,
    QUDT_UNIT + "MI2": _MILE * _MILE,
}


class UnitError(DataError):
    """A unit IRI is unknown, or of the wrong kind for the function."""


@dataclass(frozen=True)
class Unit:
    """A unit of measure: ``kind`` is ``"length"``, ``"angle"`` or ``"area"``; ``factor`` converts to m, deg or m²."""

    kind: str
    factor: float
    iri: str


def unit_of(iri: str, *, allowed: tuple[str, ...] = ("length", "angle", "area")) -> Unit:
    """The :class:`Unit` of a unit IRI.

    Parameters
    ----------
    iri
        An OGC (``http://www.opengis.net/def/uom/OGC/1.0/metre``), EPSG
        (``http://www.opengis.net/def/uom/EPSG/0/9001``) or QUDT
        (``http://qudt.org/vocab/unit/KiloM``) unit IRI.
    allowed
        The kinds the caller accepts.

    Raises
    ------
    UnitError
        If the IRI is unknown or of a kind not in ``allowed`` (the message lists examples).
    """
    for kind, table in (("length", LENGTH_UNITS), ("angle", ANGLE_UNITS), ("area", AREA_UNITS)):
        if iri in table:
            if kind not in allowed:
                raise UnitError(f"unit <{iri}> is an {kind} unit: expected a unit of {' or '.join(allowed)}")
            return Unit(kind, table[iri], iri)
    examples = {"length": "uom:metre, unit:KiloM", "angle": "uom:degree, uom:radian", "area": "unit:M2, unit:HA"}
    raise UnitError(
        f"unsupported unit of measure <{iri}>: expected a {' or '.join(allowed)} unit "
        f"({'; '.join(examples[k] for k in allowed)})"
    )


def area_factor(unit: Unit) -> float:
    """Square metres (or square degrees, for an angle unit) per unit of area; length units are squared."""
    return unit.factor if unit.kind == "area" else unit.factor * unit.factor
