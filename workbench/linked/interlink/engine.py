"""The interlinking run: partition, filter, (weigh, schedule,) verify — in this process or as Dask tasks.

The partition tasks are pure functions of picklable arguments (:func:`batch_task`,
:func:`weigh_task`, :func:`verify_task`); :func:`run` sends them to a Dask client or calls
them here, with one progress bar over the partitions. Pairs are identified by their rows
in the two sides, so partial results from any partitioning concatenate into one answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from tqdm.auto import tqdm

from workbench.linked.interlink.errors import InterlinkError
from workbench.linked.interlink.filtering import FILTERS, candidates
from workbench.linked.interlink.inputs import Side
from workbench.linked.interlink.partition import GridPartitioner, fit_partitioner
from workbench.linked.interlink.tiles import TileGrid, equigrid
from workbench.linked.interlink.verification import relate, relation_masks
from workbench.linked.interlink.weighting import PairFeatures, pair_weights

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["Outcome", "Plan", "batch_task", "default_partitions", "features_of", "plan_run", "run", "verify_task", "weigh_task"]

log = logging.getLogger(__name__)

#: Geometries (both sides) per partition aimed at when the number of partitions is not given: on Dask
#: (small tasks balance the workers), and in one process (only to bound the memory of a partition).
_TARGET_PER_PARTITION = 250_000
_LOCAL_PER_PARTITION = 2_000_000


@dataclass(frozen=True)
class Plan:
    """What every partition task shares: the tile grid, the partitioner and the options."""

    grid: TileGrid
    partitioner: GridPartitioner
    relations: tuple[str, ...]
    filter: str
    schemes: tuple[str, ...] | None
    seed: int


@dataclass
class Outcome:
    """Rows of the verified pairs (``mask`` = relations holding, bit order of ``ALL_RELATIONS``) and counts."""

    source_rows: np.ndarray
    target_rows: np.ndarray
    masks: np.ndarray
    candidates: int
    partitions: int
    filter_seconds: float
    verify_seconds: float


def features_of(source_part: dict[str, np.ndarray], target_part: dict[str, np.ndarray], *,
                ls: np.ndarray, lt: np.ndarray) -> PairFeatures:
    """The weighting inputs of local pairs ``(ls, lt)`` of a partition."""
    return PairFeatures(
        source_part["bounds"][ls], target_part["bounds"][lt],
        source_part["points"][ls], target_part["points"][lt],
        source_part["rows"][ls], target_part["rows"][lt],
    )


def _describe(part: dict[str, Any]) -> dict[str, Any]:
    geoms = part["geoms"] if "geoms" in part else shapely.from_wkb(part["wkb"])
    return {"rows": part["rows"], "geoms": geoms, "bounds": shapely.bounds(geoms).reshape(-1, 4),
            "points": shapely.get_num_coordinates(geoms), "dims": shapely.get_dimensions(geoms)}


def _local_candidates(cell: int, plan: Plan, src: dict[str, Any], tgt: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    ls, lt = candidates(plan.filter, plan.grid, source_geoms=src["geoms"], source_bounds=src["bounds"],
                        target_geoms=tgt["geoms"], target_bounds=tgt["bounds"])
    if plan.partitioner.cells > 1:  # reference-point rule: the pair belongs to one partition
        sb, tb = src["bounds"][ls], tgt["bounds"][lt]
        keep = plan.partitioner.cell_of_points(np.maximum(sb[:, 0], tb[:, 0]), np.maximum(sb[:, 1], tb[:, 1])) == cell
        ls, lt = ls[keep], lt[keep]
    return ls, lt


def _verify_local(plan: Plan, src: dict[str, Any], tgt: dict[str, Any], ls: np.ndarray, lt: np.ndarray) -> np.ndarray:
    """Relation masks of local pairs, from one DE-9IM matrix each.

    The source geometries are prepared first: each meets several targets, and GEOS's
    prepared relate settles a disjoint pair as fast as a separate ``intersects`` test would.
    """
    shapely.prepare(src["geoms"])
    matrices = relate(src["geoms"][ls], tgt["geoms"][lt])
    return relation_masks(matrices, source_dims=src["dims"][ls], target_dims=tgt["dims"][lt],
                          relations=plan.relations)


def batch_task(*, cell: int, plan: Plan, source_part: dict[str, Any], target_part: dict[str, Any]) -> dict[str, Any]:
    """Filter and verify every candidate pair of one partition (rows are global)."""
    src, tgt = _describe(source_part), _describe(target_part)
    t0 = time.perf_counter()
    ls, lt = _local_candidates(cell, plan, src, tgt)
    t1 = time.perf_counter()
    masks = _verify_local(plan, src, tgt, ls, lt)
    t2 = time.perf_counter()
    return {"s": src["rows"][ls], "t": tgt["rows"][lt], "mask": masks, "candidates": len(ls),
            "filter_s": t1 - t0, "verify_s": t2 - t1}


def weigh_task(*, cell: int, plan: Plan, source_part: dict[str, Any], target_part: dict[str, Any]) -> dict[str, Any]:
    """Filter one partition and weigh its candidate pairs (rows are global)."""
    assert plan.schemes is not None
    src, tgt = _describe(source_part), _describe(target_part)
    t0 = time.perf_counter()
    ls, lt = _local_candidates(cell, plan, src, tgt)
    weights = pair_weights(plan.schemes, plan.grid, features=features_of(src, tgt, ls=ls, lt=lt), seed=plan.seed)
    return {"cell": cell, "s": src["rows"][ls], "t": tgt["rows"][lt], "w": weights,
            "filter_s": time.perf_counter() - t0}


def verify_task(*, plan: Plan, source_part: dict[str, Any], target_part: dict[str, Any],
                source_rows: np.ndarray, target_rows: np.ndarray) -> dict[str, Any]:
    """Verify the chosen pairs (global rows) of one partition."""
    src, tgt = _describe(source_part), _describe(target_part)
    t0 = time.perf_counter()
    ls = np.searchsorted(src["rows"], source_rows)
    lt = np.searchsorted(tgt["rows"], target_rows)
    masks = _verify_local(plan, src, tgt, ls, lt)
    return {"s": source_rows, "t": target_rows, "mask": masks, "verify_s": time.perf_counter() - t0}


def plan_run(source: Side, target: Side, *, relations: tuple[str, ...], filter: str,
             schemes: tuple[str, ...] | None, partitions: int, seed: int = 0) -> Plan:
    """The grid (from the source side's mean MBR) and a partitioner of ``partitions`` cells over both sides."""
    if filter not in FILTERS:
        raise InterlinkError(f"unknown filter {filter!r}: expected one of {', '.join(FILTERS)}")
    return Plan(equigrid(source.bounds), fit_partitioner(source.bounds, target.bounds, partitions=partitions),
                tuple(relations), filter, schemes, seed)


def default_partitions(source: Side, target: Side, *, client: Client | None) -> int:
    """Partitions when none are asked for: ~250k geometries each and at least 2 per Dask worker; ~2M in one process."""
    if client is None:
        return max(1, round((len(source) + len(target)) / _LOCAL_PER_PARTITION))
    by_size = max(1, round((len(source) + len(target)) / _TARGET_PER_PARTITION))
    workers = len(client.nthreads()) or 1
    return max(by_size, 2 * workers)


def _parts(plan: Plan, source: Side, target: Side) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    """(cell, source part, target part) of the cells holding geometries of both sides."""
    if plan.partitioner.cells == 1:
        return [(0, {"rows": np.arange(len(source)), "geoms": source.geoms},
                 {"rows": np.arange(len(target)), "geoms": target.geoms})]
    s_rows, s_cells = plan.partitioner.assign(source.bounds)
    t_rows, t_cells = plan.partitioner.assign(target.bounds)
    parts = []
    for cell in np.intersect1d(s_cells, t_cells).tolist():
        sr = s_rows[np.searchsorted(s_cells, cell, "left"):np.searchsorted(s_cells, cell, "right")]
        tr = t_rows[np.searchsorted(t_cells, cell, "left"):np.searchsorted(t_cells, cell, "right")]
        parts.append((cell, {"rows": sr, "geoms": source.geoms[sr]}, {"rows": tr, "geoms": target.geoms[tr]}))
    return parts


class _Executor:
    """Runs tasks here or on a Dask client, yielding results as they complete, with one bar."""

    def __init__(self, client: Client | None, progress: bool) -> None:
        self.client = client
        self.progress = progress

    def scatter(self, items: list[dict[str, Any]]) -> list[Any]:
        if self.client is None:
            return items
        # WKB travels ~40x faster than pickled shapely objects (Dask pickles those one by one)
        return self.client.scatter([{"rows": p["rows"], "wkb": shapely.to_wkb(p["geoms"])} for p in items])

    def map(self, func: Callable[..., dict[str, Any]], calls: Sequence[dict[str, Any]], *,
            desc: str) -> Iterator[dict[str, Any]]:
        bar = tqdm(total=len(calls), desc=desc, unit="partition", disable=not self.progress)
        try:
            if self.client is None:
                for kwargs in calls:
                    yield func(**kwargs)
                    bar.update()
                return
            from distributed import as_completed

            futures = [self.client.submit(func, pure=False, **kwargs) for kwargs in calls]
            for future in as_completed(futures):
                yield future.result()
                bar.update()
        finally:
            bar.close()


def _concat(results: list[dict[str, Any]], key: str, dtype: Any) -> np.ndarray:
    return np.concatenate([r[key] for r in results]).astype(dtype) if results else np.empty(0, dtype=dtype)


def run(source: Side, target: Side, *, plan: Plan, budget: int | None = None, client: Client | None = None,
        progress: bool = False) -> Outcome:
    """Compute the verified pairs: all candidates, or the ``budget`` best-weighted ones (``plan.schemes``).

    Pairs come back sorted by (source row, target row).
    """
    executor = _Executor(client, progress)
    parts = _parts(plan, source, target)
    cells = [cell for cell, _, _ in parts]
    payloads = executor.scatter([p for _, s, t in parts for p in (s, t)])
    sp, tp = payloads[0::2], payloads[1::2]
    if budget is None or plan.schemes is None:
        calls = [{"cell": c, "plan": plan, "source_part": s, "target_part": t} for c, s, t in zip(cells, sp, tp)]
        results = list(executor.map(batch_task, calls, desc="interlinking"))
        s, t, m = _concat(results, "s", np.int64), _concat(results, "t", np.int64), _concat(results, "mask", np.uint32)
        n_candidates = sum(r["candidates"] for r in results)
        filter_s = sum(r["filter_s"] for r in results)
        verify_s = sum(r["verify_s"] for r in results)
    else:
        calls = [{"cell": c, "plan": plan, "source_part": s, "target_part": t} for c, s, t in zip(cells, sp, tp)]
        weighed = list(executor.map(weigh_task, calls, desc="weighing"))
        weighed.sort(key=lambda r: r["cell"])  # completion order differs run to run
        owner = np.concatenate([np.full(len(r["s"]), r["cell"]) for r in weighed]) if weighed else np.empty(0, int)
        cs, ct, cw = _concat(weighed, "s", np.int64), _concat(weighed, "t", np.int64), _concat(weighed, "w", np.float64)
        n_candidates = len(cs)
        filter_s = sum(r["filter_s"] for r in weighed)
        # best weight first; ties by (source, target) rows: the same choice for any partitioning
        order = np.lexsort((ct, cs, -cw))[:budget]
        chosen_cell = owner[order]
        calls = []
        for cell in np.unique(chosen_cell).tolist():
            sel = np.sort(order[chosen_cell == cell])
            j = cells.index(cell)
            calls.append({"plan": plan, "source_part": sp[j], "target_part": tp[j], "source_rows": cs[sel],
                          "target_rows": ct[sel]})
        results = list(executor.map(verify_task, calls, desc="verifying"))
        s, t, m = _concat(results, "s", np.int64), _concat(results, "t", np.int64), _concat(results, "mask", np.uint32)
        verify_s = sum(r["verify_s"] for r in results)
    order = np.lexsort((t, s))
    return Outcome(s[order], t[order], m[order], n_candidates, len(parts), filter_s, verify_s)

