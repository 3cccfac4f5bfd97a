"""A spatial index over the geometry literals of a store (shapely STRtree).

Each distinct geometry literal gets an integer id; the store keeps the mapping as
triples ``<urn:x-wb:g:ID> <urn:x-wb:lit> literal`` in a hidden named graph so that
a rewritten query can join index answers (ids) with its own patterns. The index
answers selections (``rel(?x, constant)``) and joins (``rel(?x, ?y)``) by an STRtree
bounding-box search followed by the exact shapely predicate, vectorised, on the
candidates only: the same predicate the ``geof:`` function evaluates, so answers
are equal to the unindexed evaluation.
"""

from __future__ import annotations

import logging
import threading
from typing import Iterable, Sequence

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from workbench.linked.geometry import _WKT_CRS, GeometryLiteralError, parse_literal, to_crs84
from workbench.linked.vocab import CRS84, WKT_LITERAL
from workbench.linked.geosparql import RELATIONS

__all__ = ["SpatialIndex", "parse_many", "INDEX_GRAPH", "ID_PREFIX", "LIT_PREDICATE"]

INDEX_GRAPH = "urn:x-wb:spatial-index"
ID_PREFIX = "urn:x-wb:g:"
LIT_PREDICATE = "urn:x-wb:lit"

log = logging.getLogger(__name__)

#: rel -> the predicate ``conv`` with ``rel(a, b) == conv(b, a)`` (the DE-9IM matrix transposed) that GEOS
#: evaluates with a prepared first argument
_PREPARED_CONVERSE = {
    "sfWithin": shapely.contains,
    "sfContains": shapely.within,
    "sfIntersects": shapely.intersects,
    "sfTouches": shapely.touches,
    "sfOverlaps": shapely.overlaps,
}


def parse_many(literals: Sequence[tuple[str, str]]) -> list[BaseGeometry | None]:
    """CRS84 geometries of many literals (``None`` where unparsable), vectorised per CRS for WKT."""
    out: list[BaseGeometry | None] = [None] * len(literals)
    groups: dict[str, tuple[list[int], list[str]]] = {}
    for n, (lexical, datatype) in enumerate(literals):
        if datatype == WKT_LITERAL:
            match = _WKT_CRS.match(lexical)
            crs, text = (match.group(1), match.group(2)) if match else (CRS84, lexical)
            positions, texts = groups.setdefault(crs, ([], []))
            positions.append(n)
            texts.append(text.strip() or "GEOMETRYCOLLECTION EMPTY")
        else:
            try:
                out[n] = parse_literal(lexical, datatype).geom
            except (GeometryLiteralError, ValueError):
                out[n] = None
    for crs, (positions, texts) in groups.items():
        try:
            crs_geoms = shapely.from_wkt(np.array(texts, dtype=object), on_invalid="ignore")
            crs_geoms = np.array([to_crs84(g, crs) if g is not None else None for g in crs_geoms], dtype=object) \
                if crs not in (CRS84,) else crs_geoms
        except (GeometryLiteralError, ValueError):
            continue  # unknown CRS: none of these literals can be evaluated
        for n, geom in zip(positions, crs_geoms):
            out[n] = geom
    return out


class SpatialIndex:
    """Geometry literals by id, with a lazily (re)built STRtree.

    Literals that cannot be parsed get no id (a ``geof:`` function would answer an
    error for them, so no FILTER can be true for them either).
    """

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], int] = {}
        self._geoms: list[BaseGeometry | None] = []
        self._tree: shapely.STRtree | None = None
        self._tree_ids: np.ndarray = np.empty(0, dtype=np.int64)
        self._lock = threading.RLock()
        self.invalid = 0

    def __len__(self) -> int:
        return len(self._ids)

    def id_of(self, lexical: str, datatype: str) -> int | None:
        """Id of a literal, or ``None`` when it is not indexed."""
        return self._ids.get((lexical, datatype))

    def add(self, literals: Iterable[tuple[str, str]]) -> list[tuple[int, str, str]]:
        """Index literals not yet indexed; returns ``(id, lexical, datatype)`` of the new ones."""
        with self._lock:
            fresh = list(dict.fromkeys(k for k in literals if k not in self._ids))
            geoms = parse_many(fresh)
            new: list[tuple[int, str, str]] = []
            for (lexical, datatype), geom in zip(fresh, geoms):
                if geom is None:
                    self.invalid += 1
                    continue
                self._ids[(lexical, datatype)] = len(self._geoms)
                self._geoms.append(geom)
                new.append((len(self._geoms) - 1, lexical, datatype))
            if new:
                self._tree = None
        return new

    def restore(self, entries: Iterable[tuple[int, str, str]]) -> None:
        """Re-create the index from stored ``(id, lexical, datatype)`` entries."""
        entries = list(entries)
        geoms = parse_many([(lexical, datatype) for _, lexical, datatype in entries])
        with self._lock:
            for (ident, lexical, datatype), geom in zip(entries, geoms):
                if geom is None:
                    continue
                while len(self._geoms) <= ident:
                    self._geoms.append(None)
                self._geoms[ident] = geom
                self._ids[(lexical, datatype)] = ident
            self._tree = None

    def remove(self, keys: Iterable[tuple[str, str]]) -> list[int]:
        """Forget literals (no longer in the store); returns their ids."""
        removed: list[int] = []
        with self._lock:
            for key in keys:
                ident = self._ids.pop(key, None)
                if ident is not None:
                    self._geoms[ident] = None
                    removed.append(ident)
            if removed:
                self._tree = None
        return removed

    def keys(self) -> set[tuple[str, str]]:
        """The indexed literals."""
        return set(self._ids)

    def _global_tree(self) -> tuple[shapely.STRtree, np.ndarray]:
        with self._lock:
            if self._tree is None:
                ids = np.array([i for i, g in enumerate(self._geoms) if g is not None], dtype=np.int64)
                geoms = np.array([self._geoms[i] for i in ids], dtype=object)
                self._tree = shapely.STRtree(geoms)
                self._tree_ids = ids
                log.debug("built STRtree over %d geometry literals", len(ids))
            return self._tree, self._tree_ids

    def all_ids(self) -> np.ndarray:
        """Ids of every indexed literal."""
        return self._global_tree()[1]

    def build(self) -> None:
        """(Re)build the STRtree now (after loads and updates) rather than at the first query."""
        if len(self._geoms):
            self._global_tree()

    def geometries(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Geometries of ``ids`` as a shapely array."""
        return np.array([self._geoms[i] for i in ids], dtype=object)

    def select(self, relation: str, constant: BaseGeometry, *, constant_first: bool) -> np.ndarray:
        """Ids ``i`` with ``relation(geom_i, constant)`` (or ``relation(constant, geom_i)``)."""
        tree, tree_ids = self._global_tree()
        if len(tree_ids) == 0:
            return tree_ids
        candidates = tree.query(constant)
        geoms = tree.geometries.take(candidates)
        # prepared (GEOS caches its index): the same answers, faster. The constant is the object
        # parse_literal cached, so the geof: functions evaluate with it prepared too.
        shapely.prepare(constant)
        if not constant_first and relation in _PREPARED_CONVERSE:
            # rel(g, C) as converse(C, g): GEOS uses the prepared constant only as the first argument
            mask = _PREPARED_CONVERSE[relation](constant, geoms)
        else:
            predicate = RELATIONS[relation]
            mask = predicate(constant, geoms) if constant_first else predicate(geoms, constant)
        return np.sort(tree_ids[candidates[np.asarray(mask, dtype=bool)]])

    def join(self, left: np.ndarray, right: np.ndarray, *, relation: str) -> tuple[np.ndarray, np.ndarray]:
        """Pairs ``(l, r)`` of ids from ``left`` x ``right`` with ``relation(geom_l, geom_r)``."""
        left = np.asarray(left, dtype=np.int64)
        right = np.asarray(right, dtype=np.int64)
        if len(left) == 0 or len(right) == 0:
            return left[:0], right[:0]
        left_geoms = self.geometries(left)
        right_geoms = self.geometries(right)
        tree = shapely.STRtree(right_geoms)
        li, ri = tree.query(left_geoms)
        mask = np.asarray(RELATIONS[relation](left_geoms[li], right_geoms[ri]), dtype=bool)
        return left[li[mask]], right[ri[mask]]
