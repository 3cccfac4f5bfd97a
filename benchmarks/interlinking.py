"""Interlinking: all topological relations at once (equigrid + DE-9IM) vs geopandas sjoin + relate per joined pair.

    python benchmarks/interlinking.py [--small] [--dask-n N]

Data: ``workbench.linked.synthetic.interlink_sets`` (hexagon parcels x a mix of shifted
hexagons, copies, small squares and road linestrings). Sections:

* batch, n x n (200k full, 20k small): ``interlink`` in one process, every relation, vs the
  baseline a user writes: ``geopandas.sjoin(predicate="intersects")`` then ``shapely.relate``
  over the joined pairs (vectorised), which gives the matrices but no relation yet. Both
  answers are checked equal (the intersecting pairs). The filter's time and memory peak
  (tracemalloc: numpy's allocations) are printed for both filters;
* Dask: 1 vs 2 workers (``LocalCluster(processes=True)``, 1 thread each) at ``--dask-n``
  (1M full, 20k small), the same 9 partitions for both;
* progressive: recall of the intersecting pairs at 10 % and 20 % of the candidate budget per
  weighting, and the ratio to RANDOM (n = 50k full, 10k small).

The last line is the batch ratio: the baseline's time over ours (> 1: we are faster), wall
clock and CPU time of the process (the machine is shared: CPU time is the steadier figure);
``--only dask`` (or ``progressive``) runs one section, and then ends with its own figure.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import geopandas as gpd
import numpy as np
import shapely

from workbench.linked.interlink import interlink, recall_curve
from workbench.linked.interlink.filtering import grid_candidates, strtree_candidates
from workbench.linked.interlink.inputs import read_sides
from workbench.linked.interlink.tiles import equigrid
from workbench.linked.synthetic import interlink_sets


def timed(fn):  # type: ignore[no-untyped-def]
    gc.collect()
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def cpu_timed(fn):  # type: ignore[no-untyped-def]
    """(wall seconds, CPU seconds of this process, result): CPU time is what a loaded machine distorts least."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def traced(fn):  # type: ignore[no-untyped-def]
    """(seconds, peak MiB of Python/numpy allocations, result)."""
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, out


def baseline(source: gpd.GeoDataFrame, target: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    joined = gpd.sjoin(source, target, predicate="intersects", how="inner")
    right = joined["index_right"].to_numpy()
    matrices = shapely.relate(joined.geometry.to_numpy(), target.geometry.to_numpy()[right])
    return joined.index.to_numpy(), right, matrices


def batch(n: int) -> float:
    source, target = interlink_sets(n, seed=0)
    src, tgt, _ = read_sides(source, target)
    grid = equigrid(src.bounds)
    g_t, g_mem, cand = traced(lambda: grid_candidates(grid, source_bounds=src.bounds, target_bounds=tgt.bounds))
    s_t, s_mem, cand2 = traced(lambda: strtree_candidates(src.geoms, tgt.geoms))
    assert np.array_equal(cand[0], cand2[0]) and np.array_equal(cand[1], cand2[1])
    print(f"filter grid    {n} x {n}: {len(cand[0])} candidates in {g_t:.2f} s, memory peak {g_mem:.0f} MiB "
          f"({grid.nx} x {grid.ny} tiles of {grid.theta_x:.3f} x {grid.theta_y:.3f})")
    print(f"filter strtree {n} x {n}: {len(cand2[0])} candidates in {s_t:.2f} s, memory peak {s_mem:.0f} MiB "
          f"(numpy side; the tree lives in GEOS)")
    ours_t, ours_cpu, ours = cpu_timed(lambda: interlink(source, target))
    base_t, base_cpu, (left, right, matrices) = cpu_timed(lambda: baseline(source, target))
    related = ours.pairs[(ours.pairs["mask"].to_numpy() & 1) != 0]
    base_pairs = np.sort(left.astype(np.int64) * len(target) + right)
    ours_pairs = np.sort(related["source_row"].to_numpy() * len(target) + related["target_row"].to_numpy())
    assert np.array_equal(base_pairs, ours_pairs), "intersecting pairs differ from sjoin's"
    st = ours.stats
    print(f"batch ours     {n} x {n}: {ours_t:.2f} s, CPU {ours_cpu:.2f} s (read {st['read_seconds']:.2f}, filter {st['filter_seconds']:.2f}, "
          f"verify {st['verify_seconds']:.2f}); {st['candidates']} candidates, {len(ours.links)} links over "
          f"{len(ours.relations)} relations + {st['disjoint']} disjoint")
    print(f"batch baseline {n} x {n}: {base_t:.2f} s, CPU {base_cpu:.2f} s (sjoin intersects + relate of {len(matrices)} pairs, "
          f"no relation derived)")
    print("links per relation: " + ", ".join(f"{k} {v}" for k, v in ours.counts().items()))
    return base_t / ours_t, base_cpu / ours_cpu


def dask_scaling(n: int, partitions: int) -> float:
    from distributed import Client, LocalCluster

    source, target = interlink_sets(n, seed=1)
    times = {}
    results = {}
    for workers in (1, 2):
        with LocalCluster(processes=True, n_workers=workers, threads_per_worker=1, dashboard_address=None,
                          memory_limit="8GiB") as cluster, Client(cluster) as client:
            client.submit(sum, [1]).result()  # workers up
            times[workers], results[workers] = timed(
                lambda: interlink(source, target, client=client, partitions=partitions))
    assert results[1].pairs.equals(results[2].pairs)
    st = results[2].stats
    print(f"dask {n} x {n}, {st['partitions']} partitions: 1 worker {times[1]:.1f} s, 2 workers {times[2]:.1f} s, "
          f"{times[1] / times[2]:.2f}x ({st['candidates']} candidates, {len(results[2].links)} links)")
    return times[1] / times[2]


def progressive(n: int) -> dict[str, float]:
    source, target = interlink_sets(n, seed=2)
    curve = recall_curve(source, target, fractions=[0.1, 0.2])
    table = curve.pivot(index="weighting", columns="fraction", values="recall")
    rand = table.loc["random"]
    ratios = {}
    for name, row in table.iterrows():
        ratios[name] = row[0.1] / rand[0.1]
        print(f"progressive {n} x {n} {name:<10}: recall@10% {row[0.1]:.3f} ({row[0.1] / rand[0.1]:.2f}x random), "
              f"recall@20% {row[0.2]:.3f} ({row[0.2] / rand[0.2]:.2f}x random)")
    full = interlink(source, target)
    share = full.stats["related"] / full.stats["candidates"]
    print(f"progressive: {share:.0%} of the candidates intersect, so recall@10% is at most {min(1, 0.1 / share):.3f} "
          f"({min(1, 0.1 / share) / 0.1:.2f}x random at best)")
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="quick run (make bench)")
    parser.add_argument("--n", type=int, help="batch size per side (default 200000, small 20000)")
    parser.add_argument("--dask-n", type=int, help="Dask size per side (default 1000000, small 20000)")
    parser.add_argument("--progressive-n", type=int, help="progressive size per side (default 50000, small 10000)")
    parser.add_argument("--only", choices=("batch", "dask", "progressive"), action="append",
                        help="run only these sections (repeatable; default all)")
    args = parser.parse_args()
    sections = set(args.only or ("batch", "dask", "progressive"))
    n = args.n or (20_000 if args.small else 200_000)
    dask_n = args.dask_n or (20_000 if args.small else 1_000_000)
    prog_n = args.progressive_n or (10_000 if args.small else 50_000)
    if "progressive" in sections:
        progressive(prog_n)
    if "dask" in sections:
        speedup = dask_scaling(dask_n, partitions=8)
        if sections == {"dask"}:
            print(f"dask {dask_n} x {dask_n}: {speedup:.2f}x faster with 2 workers than 1")
    if "batch" in sections:
        ratio, cpu_ratio = batch(n)
        print(f"batch all relations {n} x {n}: {ratio:.2f}x the speed of geopandas sjoin(intersects) + relate per pair "
              f"({cpu_ratio:.2f}x in CPU time)")


if __name__ == "__main__":
    main()
