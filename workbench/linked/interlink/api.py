"""``interlink(source, target, ...)``: the one call of the interlinking layer."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.linked.interlink.engine import default_partitions, plan_run, run
from workbench.linked.interlink.errors import InterlinkError
from workbench.linked.interlink.filtering import FILTERS
from workbench.linked.interlink.inputs import Side, read_sides
from workbench.linked.interlink.result import LinkResult
from workbench.linked.interlink.verification import ALL_RELATIONS, check_relations
from workbench.linked.interlink.weighting import parse_weighting

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["check_budget", "interlink", "links_frame"]

log = logging.getLogger(__name__)


def check_budget(budget: Any) -> int | None:
    """The budget as a positive int (``None``: verify every candidate).

    Raises
    ------
    InterlinkError
        When it is not a positive whole number.
    """
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        if isinstance(budget, float) and budget.is_integer():
            budget = int(budget)
        else:
            raise InterlinkError(f"budget must be a positive whole number of pairs to verify, got {budget!r}")
    if budget <= 0:
        raise InterlinkError(f"budget must be a positive number of pairs to verify, got {budget}")
    return int(budget)


def links_frame(source: Side, target: Side, *, s: np.ndarray, t: np.ndarray, masks: np.ndarray,
                relations: tuple[str, ...]) -> pd.DataFrame:
    """Long link table: one ``(source_id, target_id, relation)`` row per pair and relation that holds."""
    rows = [np.flatnonzero((masks >> np.uint32(ALL_RELATIONS.index(name))) & np.uint32(1)) for name in relations]
    pick = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    codes = np.repeat(np.arange(len(relations)), [len(r) for r in rows])
    return pd.DataFrame({
        "source_id": source.ids[s[pick]],
        "target_id": target.ids[t[pick]],
        "relation": pd.Categorical.from_codes(codes, categories=list(relations)),
    })


def interlink(source: Any, target: Any, *, relations: list[str] | tuple[str, ...] | str | None = None,
              budget: int | None = None, weighting: str | None = None, client: Client | None = None,
              filter: str = "grid", partitions: int | None = None, crs: str | None = None,
              invalid: str = "error", source_id: str | None = None, target_id: str | None = None,
              seed: int = 0, progress: bool = False) -> LinkResult:
    """Discover the topological relations between two geometry sets (JedAI-spatial style).

    Parameters
    ----------
    source, target
        Paths (GeoParquet, GeoJSON, GeoPackage, CSV), GeoDataFrames/GeoSeries, dask-geopandas
        GeoDataFrames, or :class:`~workbench.linked.interlink.inputs.StoreSelection`. The source
        side is indexed (give the smaller one), the target side streamed.
    relations
        GeoSPARQL relation names to link (default: the Simple Features ones and
        ``ehCovers``/``ehCoveredBy``); disjoint pairs are counted, not linked.
    budget
        Verify at most this many candidate pairs, the best-weighted first (progressive).
    weighting
        Scheme ordering the pairs under a budget: ``cf``, ``js``, ``chi2``, ``mbro``, ``isp``,
        ``random`` or a product like ``chi2*mbro`` (default with a budget: ``chi2*mbro``).
    client
        A Dask client: partitions run as tasks on its cluster; ``None``: in this process.
    filter
        ``"grid"`` (equigrid of the source side) or ``"strtree"``; both give the same candidates.
    partitions
        Spatial partitions (default: on Dask ~250k geometries each and at least two per worker;
        in one process one per ~2M geometries).
    crs
        CRS to compare in (default: the source's); the other side is reprojected.
    invalid
        Invalid geometries: ``"error"``, ``"repair"`` (``make_valid``) or ``"skip"``; counted.
    source_id, target_id
        Id columns (default ``id`` when present, else the index; IRIs for store selections).
    seed
        Seed of the ``random`` weighting.
    progress
        Show a progress bar over the partitions.

    Returns
    -------
    LinkResult
        The link table, verified pairs, counts and writers.

    Raises
    ------
    InterlinkError
        On an empty side, mixed CRS, an invalid geometry (``invalid="error"``), a budget that
        is not a positive whole number, an unknown relation, weighting or filter.
    """
    started = time.perf_counter()
    names = check_relations(relations)
    budget = check_budget(budget)
    if weighting is not None and budget is None:
        raise InterlinkError(f"weighting {weighting!r} orders pairs under a budget: give budget=N too")
    schemes = parse_weighting("chi2*mbro" if weighting is None else weighting) if budget is not None else None
    if filter not in FILTERS:
        raise InterlinkError(f"unknown filter {filter!r}: expected one of {', '.join(FILTERS)}")
    if partitions is not None and (isinstance(partitions, bool) or not isinstance(partitions, (int, np.integer))
                                   or partitions < 1):
        raise InterlinkError(f"partitions must be a positive whole number, got {partitions!r}")
    src, tgt, crs_used = read_sides(source, target, crs=crs, source_id=source_id, target_id=target_id,
                                    invalid=invalid)
    read_s = time.perf_counter() - started
    computed = tuple(dict.fromkeys(("sfIntersects", *names)))
    plan = plan_run(src, tgt, relations=computed, filter=filter, schemes=schemes,
                    partitions=partitions or default_partitions(src, tgt, client=client), seed=seed)
    outcome = run(src, tgt, plan=plan, budget=budget, client=client, progress=progress)
    intersects_bit = np.uint32(1 << ALL_RELATIONS.index("sfIntersects"))
    related = int(np.count_nonzero(outcome.masks & intersects_bit))
    complete = budget is None or budget >= outcome.candidates
    stats: dict[str, Any] = {
        "source": len(src), "target": len(tgt),
        "source_repaired": src.repaired, "target_repaired": tgt.repaired,
        "source_skipped": src.skipped, "target_skipped": tgt.skipped,
        "source_empty": src.empty, "target_empty": tgt.empty,
        "candidates": outcome.candidates, "verified": len(outcome.masks), "related": related,
        "disjoint": len(src) * len(tgt) - related if complete else None,
        "budget": budget, "weighting": "*".join(schemes) if schemes else None, "filter": filter,
        "partitions": outcome.partitions, "tiles": plan.grid.tiles,
        "theta": (plan.grid.theta_x, plan.grid.theta_y),
        "read_seconds": read_s, "filter_seconds": outcome.filter_seconds, "verify_seconds": outcome.verify_seconds,
        "seconds": time.perf_counter() - started, "distributed": client is not None,
    }
    links = links_frame(src, tgt, s=outcome.source_rows, t=outcome.target_rows, masks=outcome.masks, relations=names)
    pairs = pd.DataFrame({"source_row": outcome.source_rows, "target_row": outcome.target_rows,
                          "mask": outcome.masks})
    log.info("interlinked %d x %d geometries: %d candidates, %d verified, %d links", len(src), len(tgt),
             outcome.candidates, len(outcome.masks), len(links))
    return LinkResult(links, pairs, names, crs_used, src.ids, tgt.ids, stats)
