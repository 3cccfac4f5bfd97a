"""Spatial selections and joins: the workbench GeoStore (STRtree index) vs pyoxigraph's built-in geof: functions.

    python benchmarks/linked_spatial.py [--small]

Geographica-style synthetic data (workbench.linked.synthetic). Every comparison checks
that both sides return identical answers; times are the best of 3 runs (1 run for the
slow built-in joins), each run planning the query anew. Full mode: selections over >= 100k
geometries, joins at 2k x 2k vs the built-ins, and the 100k x 100k join vs a direct
shapely STRtree join (the physical floor), and a 1M x 1M join end to end. ``--small`` scales everything down.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import shapely

from _timing import best_of  # benchmarks/ is on sys.path when a benchmark runs as a script
from workbench.linked.store import GeoStore
from workbench.linked.synthetic import generate, to_ntriples

P = ("PREFIX geo: <http://www.opengis.net/ont/geosparql#> PREFIX geof: <http://www.opengis.net/def/function/geosparql/> "
     "PREFIX syn: <http://extremeearth.eu/synthetic/> ")


def timed(fn, repeat: int = 3):  # type: ignore[no-untyped-def]
    """Best of ``repeat`` runs (the same for both sides: the machine is shared and noisy)."""
    return best_of(fn, repeat=repeat)


def fresh(query: str) -> str:
    """``query`` with a unique comment: the store plans it anew (its plan cache would otherwise answer repeats)."""
    return f"{query}\n# run {time.perf_counter_ns()}"


def answers(result) -> list[tuple[str, ...]]:  # type: ignore[no-untyped-def]
    names = [v.value for v in result.variables]
    return sorted(tuple(str(row[n]) for n in names) for row in result)


def build(layers: dict) -> GeoStore:  # type: ignore[type-arg]
    store = GeoStore(entailment="none")
    store.load_data(to_ntriples(layers), format="ntriples")
    return store


def selections(n: int) -> float:
    store = build({"land": generate(n, seed=1)["land"]})
    ratios = []
    for relation in ("sfIntersects", "sfWithin"):
        for side, label in ((9.0, "1%"), (28.5, "10%"), (63.6, "50%")):
            q = P + (f'SELECT ?g WHERE {{ ?g geo:asWKT ?x FILTER(geof:{relation}(?x, '
                     f'"POLYGON((10 10, {10 + side} 10, {10 + side} {10 + side}, 10 {10 + side}, 10 10))"^^geo:wktLiteral)) }}')
            ours_t, ours = timed(lambda: answers(store.query(fresh(q))))
            base_t, base = timed(lambda: answers(store.pyoxigraph.query(q)))
            assert ours == base, "indexed selection differs from the built-in evaluation"
            ratios.append(base_t / ours_t)
            print(f"selection {relation} {label:>4} of {n} ({len(ours)} rows): ours {ours_t:.3f}s, "
                  f"builtin {base_t:.3f}s, {base_t / ours_t:.1f}x")
    return float(np.exp(np.mean(np.log(ratios))))


def joins(n: int) -> float:
    layers = generate(n, seed=2)
    store = build({"land": layers["land"], "pois": layers["pois"]})
    ratios = []
    for rel, a, b in (("sfIntersects", "Land", "Land"), ("sfTouches", "Land", "Land"), ("sfWithin", "Poi", "Land")):
        q = P + (f"SELECT ?a ?b WHERE {{ ?a a syn:{a} ; geo:hasGeometry/geo:asWKT ?x . "
                 f"?b a syn:{b} ; geo:hasGeometry/geo:asWKT ?y . FILTER(geof:{rel}(?x, ?y)) }}")
        ours_t, ours = timed(lambda: answers(store.query(fresh(q))))
        base_t, base = timed(lambda: answers(store.pyoxigraph.query(q)), repeat=1)  # seconds per run
        assert ours == base, f"indexed {rel} join differs from the built-in evaluation"
        ratios.append(base_t / ours_t)
        print(f"join {rel} {n}x{n} ({len(ours)} pairs): ours {ours_t:.3f}s, builtin {base_t:.3f}s, {base_t / ours_t:.1f}x")
    return float(np.exp(np.mean(np.log(ratios))))


def big_join(n: int) -> float:
    layers = generate(n, seed=3)
    store = build({"land": layers["land"], "pois": layers["pois"]})
    q = P + ("SELECT (COUNT(*) AS ?n) WHERE { ?a a syn:Poi ; geo:hasGeometry/geo:asWKT ?x . "
             "?b a syn:Land ; geo:hasGeometry/geo:asWKT ?y . FILTER(geof:sfWithin(?x, ?y)) }")
    ours_t, ours = timed(lambda: int(next(iter(store.query(fresh(q))))[0].value))
    pois, land = layers["pois"].geometry.to_numpy(), layers["land"].geometry.to_numpy()

    def floor() -> int:
        tree = shapely.STRtree(land)
        i, j = tree.query(pois)
        return int(shapely.within(pois[i], land[j]).sum())

    floor_t, expected = timed(floor)
    assert ours == expected
    print(f"join sfWithin {n}x{n} ({ours} pairs): ours {ours_t:.3f}s, direct STRtree {floor_t:.3f}s, "
          f"{ours_t / floor_t:.1f}x the floor")
    return ours_t / floor_t


def million_join(n: int) -> None:
    """The 1M x 1M join (points within parcels) answered end to end, its time printed beside the floor."""
    t0 = time.perf_counter()
    layers = generate(n, seed=4)
    store = build({"land": layers["land"], "pois": layers["pois"]})
    load_t = time.perf_counter() - t0
    q = P + ("SELECT (COUNT(*) AS ?n) WHERE { ?a a syn:Poi ; geo:hasGeometry/geo:asWKT ?x . "
             "?b a syn:Land ; geo:hasGeometry/geo:asWKT ?y . FILTER(geof:sfWithin(?x, ?y)) }")
    t0 = time.perf_counter()
    ours = int(next(iter(store.query(fresh(q))))[0].value)
    first_t = time.perf_counter() - t0  # includes copying the triples into the engine's table
    ours_t, _ = timed(lambda: int(next(iter(store.query(fresh(q))))[0].value), repeat=1)
    pois, land = layers["pois"].geometry.to_numpy(), layers["land"].geometry.to_numpy()
    t0 = time.perf_counter()
    i, j = shapely.STRtree(land).query(pois)
    expected = int(shapely.within(pois[i], land[j]).sum())
    floor_t = time.perf_counter() - t0
    assert ours == expected
    print(f"join sfWithin {n}x{n} ({ours} pairs): finished in {ours_t:.1f}s ({first_t:.1f}s for the first query "
          f"after loading, which builds the engine's triple table; loading {load_t:.0f}s), direct STRtree "
          f"{floor_t:.1f}s, {ours_t / floor_t:.1f}x the floor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="quick mode: smaller scales")
    args = parser.parse_args()
    sel_n, join_n, big_n = (20_000, 600, 20_000) if args.small else (100_000, 2_000, 100_000)
    sel = selections(sel_n)
    floor_ratio = big_join(big_n)
    join = joins(join_n)
    if not args.small:
        million_join(1_000_000)
    print(f"spatial_selection_speedup_vs_builtin (geometric mean): {sel:.1f}x")
    print(f"spatial_join_big_vs_strtree_floor: {floor_ratio:.1f}x")
    print(f"spatial_join_speedup_vs_builtin: {join:.1f}x")


if __name__ == "__main__":
    main()
