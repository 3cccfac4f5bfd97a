"""Geographica-style synthetic geospatial data, and tiny sample products for demos and tests.

:func:`generate` makes, in a [0, 90] x [0, 90] degree universe at scale ``n``:
hexagonal land parcels (``n`` of them, tiling the universe), large hexagon states
(about ``n / 100``), road linestrings and points of interest. Every feature carries a
``tag`` in 1..100 drawn uniformly (seeded), so ``tag <= k`` selects about ``k`` % of the
features: a selectivity knob for benchmarks, as in Geographica's synthetic workload.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

__all__ = ["SYN", "generate", "hexagons", "interlink_cases", "interlink_sets", "to_ntriples", "write_sample_products"]

SYN = "http://extremeearth.eu/synthetic/"
UNIVERSE = 90.0


def hexagons(count: int, *, extent: float = UNIVERSE) -> np.ndarray:
    """About ``count`` pointy-top hexagons tiling ``[0, extent]^2`` (shapely array), vectorised."""
    if count <= 0:
        raise ValueError(f"hexagon count must be positive, got {count}")
    # hexagon of circumradius r covers 1.5*sqrt(3)*r^2
    r = math.sqrt(extent * extent / (count * 1.5 * math.sqrt(3)))
    w, h = math.sqrt(3) * r, 1.5 * r
    cols, rows = max(1, int(round(extent / w))), max(1, int(math.ceil(count / max(1, int(round(extent / w))))))
    j, i = np.divmod(np.arange(cols * rows)[:count], cols)
    cx = i * w + (j % 2) * w / 2 + w / 2
    cy = j * h + r
    angles = np.deg2rad(np.arange(30, 390, 60))
    xs = cx[:, None] + r * np.cos(angles)[None, :]
    ys = cy[:, None] + r * np.sin(angles)[None, :]
    coords = np.stack([xs, ys], axis=-1)
    coords = np.concatenate([coords, coords[:, :1]], axis=1)
    return shapely.polygons(shapely.linearrings(coords))


def generate(n: int, *, seed: int = 0) -> dict[str, gpd.GeoDataFrame]:
    """The synthetic layers at scale ``n``: ``land``, ``states``, ``roads``, ``pois``."""
    rng = np.random.default_rng(seed)
    land = hexagons(n)
    states = hexagons(max(1, n // 100))
    n_roads = max(1, n // 10)
    starts = rng.uniform(0, UNIVERSE, size=(n_roads, 2))
    steps = rng.normal(0, UNIVERSE / math.sqrt(n) * 3, size=(n_roads, 4, 2)).cumsum(axis=1)
    road_coords = np.clip(np.concatenate([starts[:, None, :], starts[:, None, :] + steps], axis=1), 0, UNIVERSE)
    roads = shapely.linestrings(road_coords)
    pois = shapely.points(rng.uniform(0, UNIVERSE, size=(n, 2)))
    layers = {}
    for name, geoms in (("land", land), ("states", states), ("roads", roads), ("pois", pois)):
        layers[name] = gpd.GeoDataFrame(
            {"id": np.arange(len(geoms)), "tag": rng.integers(1, 101, size=len(geoms))},
            geometry=geoms, crs="EPSG:4326",
        )
    return layers


def interlink_sets(n: int, *, seed: int = 0, extent: float = UNIVERSE) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Two geometry sets of ``n`` each for interlinking benchmarks and tests (vectorised).

    The source is a hexagon tiling (land parcels). The target mixes, in a seeded random
    order: a second hexagon tiling shifted by half a cell (25 %: overlaps, touches), exact copies
    of source hexagons (5 %: equals), small squares inside or across source cells (20 %: within,
    overlaps) and road linestrings of 6 vertices (50 %: crosses, within, touches), whose MBRs
    meet many cells the roads miss (as with the linear features of JedAI-spatial's datasets).
    Both have ``id`` (0..n-1) and ``EPSG:4326``.
    """
    if n <= 0:
        raise ValueError(f"set size must be positive, got {n}")
    rng = np.random.default_rng(seed)
    source = hexagons(n, extent=extent)
    cell = math.sqrt(extent * extent / n)
    n_shift, n_copy, n_square = int(0.25 * n), int(0.05 * n), int(0.2 * n)
    n_road = n - n_shift - n_copy - n_square
    shifted = shapely.transform(hexagons(max(1, n_shift), extent=extent), lambda xy: xy + [cell / 2, cell / 3])
    copies = source[rng.choice(n, size=n_copy, replace=False)] if n_copy else np.empty(0, dtype=object)
    centres = rng.uniform(0, extent, size=(n_square, 2))
    half = rng.uniform(0.05, 0.3, size=n_square) * cell
    squares = shapely.box(centres[:, 0] - half, centres[:, 1] - half, centres[:, 0] + half, centres[:, 1] + half)
    starts = rng.uniform(0, extent, size=(n_road, 2))
    steps = rng.normal(0, cell * 1.5, size=(n_road, 5, 2)).cumsum(axis=1)
    roads = shapely.linestrings(np.concatenate([starts[:, None, :], starts[:, None, :] + steps], axis=1))
    target = np.concatenate([shifted[:n_shift], copies, squares, roads])
    target = target[rng.permutation(len(target))]
    frames = tuple(
        gpd.GeoDataFrame({"id": np.arange(len(g))}, geometry=g, crs="EPSG:4326") for g in (source, target)
    )
    return frames[0], frames[1]


def interlink_cases(*, seed: int = 0, random_count: int = 30) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Two small geometry sets in ``[0, 10]^2`` with the cases an interlinker gets wrong.

    Points, lines and polygons on both sides; touching squares, identical copies, a polygon
    with a hole (and geometries in, on and across the hole), multi-geometries whose parts lie
    far apart, long lines crossing the whole extent (hence every partition boundary), points
    on vertices and edges, plus ``random_count`` random small polygons, lines and points per
    side. Ids are strings (``s0``..., ``t0``...); the CRS is ``EPSG:3857`` (planar).
    """
    rng = np.random.default_rng(seed)
    box = shapely.box
    squares = [box(x, y, x + 2, y + 2) for x in range(0, 10, 2) for y in range(0, 10, 2)]
    holed = shapely.Polygon([(1, 1), (5, 1), (5, 5), (1, 5)], [[(2, 2), (4, 2), (4, 4), (2, 4)]])
    source = [
        *squares,
        holed,
        shapely.MultiPolygon([box(0.2, 0.2, 0.8, 0.8), box(9.2, 9.2, 9.8, 9.8)]),
        shapely.LineString([(0, 0), (10, 10)]),
        shapely.LineString([(0, 5), (5, 5), (5, 10)]),
        shapely.Point(2, 2), shapely.Point(3, 3), shapely.Point(7, 1),
        box(0.5, 0.5, 9.5, 9.5),
        shapely.MultiLineString([[(0, 9), (1, 9)], [(9, 0), (9, 1)]]),
        shapely.MultiPoint([(0.5, 9.5), (9.5, 0.5)]),
    ]
    target = [
        squares[0], squares[7], squares[24],  # identical copies
        box(1, 1, 3, 3), box(5, 5, 7, 7),  # shifted: overlaps
        box(10, 0, 12, 2), box(-2, 4, 0, 6),  # sharing an edge: touches
        box(0, 0, 4, 2),  # covering two squares, sharing their edges
        box(2.5, 2.5, 3.5, 3.5),  # inside the hole
        box(1.5, 1.5, 2.5, 2.5),  # across the hole's inner ring
        shapely.Point(3, 3), shapely.Point(2, 2), shapely.Point(1, 1), shapely.Point(6, 6), shapely.Point(5, 5),
        shapely.Point(4, 7),
        shapely.LineString([(0, 2), (10, 2)]),  # along square edges
        shapely.LineString([(0, 10), (10, 0)]),  # crossing the diagonal and everything
        shapely.LineString([(2, 2), (4, 4)]),  # on the diagonal (overlapping lines)
        shapely.LineString([(6.5, 6.5), (7.5, 7.5)]),
        shapely.MultiPoint([(3, 3), (8.5, 8.5)]),
        shapely.MultiLineString([[(1, 0), (1, 10)], [(8, 3), (9, 3)]]),
        shapely.MultiPolygon([box(0.3, 0.3, 0.6, 0.6), box(9.3, 9.3, 9.6, 9.6)]),
        holed,  # identical polygon with a hole
    ]

    def scatter(count: int) -> list[Any]:
        centres = rng.uniform(0, 10, size=(count, 2))
        polys = shapely.buffer(shapely.points(centres), rng.uniform(0.1, 0.8, count), quad_segs=2)
        starts = rng.uniform(0, 10, size=(count, 2))
        lines = shapely.linestrings(np.stack([starts, starts + rng.normal(0, 1.5, size=(count, 2))], axis=1))
        points = shapely.points(np.round(rng.uniform(0, 10, size=(count, 2)) * 2) / 2)  # some on grid lines
        return [*polys, *lines, *points]

    source += scatter(random_count)
    target += scatter(random_count)
    frames = []
    for prefix, geoms in (("s", source), ("t", target)):
        frames.append(gpd.GeoDataFrame({"id": [f"{prefix}{i}" for i in range(len(geoms))]},
                                       geometry=np.asarray(geoms, dtype=object), crs="EPSG:3857"))
    return frames[0], frames[1]


def to_ntriples(layers: dict[str, gpd.GeoDataFrame]) -> str:
    """N-Triples of the layers (vectorised): ``syn:<layer>/<id>`` features with ``syn:tag`` and a WKT geometry."""
    geo = "http://www.opengis.net/ont/geosparql#"
    lines: list[np.ndarray] = []
    for name, frame in layers.items():
        ids = frame["id"].astype(str)
        feature = f"<{SYN}{name}/" + ids + ">"
        geom = f"<{SYN}{name}/" + ids + "/geom>"
        wkt = pd.Series(shapely.to_wkt(frame.geometry.to_numpy(), rounding_precision=9), index=frame.index)
        cls = name.removesuffix("s")
        block = np.column_stack([
            (feature + f" <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <{SYN}{cls.capitalize()}> .").to_numpy(),
            (feature + f" <{SYN}tag> \"" + frame["tag"].astype(str) + "\"^^<http://www.w3.org/2001/XMLSchema#integer> .").to_numpy(),
            (feature + f" <{geo}hasGeometry> " + geom + " .").to_numpy(),
            (geom + f" <{geo}asWKT> \"" + wkt + f"\"^^<{geo}wktLiteral> .").to_numpy(),
        ])
        lines.append(block.ravel())
    return "\n".join(np.concatenate(lines).tolist()) + "\n"


_ICE = ["OpenWater", "BrashPancakeIce", "YoungIce", "LevelFirstYearIce", "DeformedIce"]
_CROPS = ["Grassland", "Maize", "Legumes", "WinterCaraway", "WinterWheat", "Rapeseed", "Potato", "Rye",
          "WinterBarley", "Beet", "SpringBarley", "Soy", "Sunflower", "PermanentPlantations", "Triticale", "Other"]


def write_sample_products(directory: str | Path, *, seed: int = 0, parcels: int = 60) -> dict[str, Path]:
    """Write tiny simulated vector products: a sea-ice chart (GeoJSON), crop parcels (GeoParquet), in-situ points (CSV).

    The geometries are simulated (hexagons near Svalbard and in Slovenia); the columns are
    those the shipped mappings expect. Returns name -> path.
    """
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ice = hexagons(40, extent=1.0)
    ice = shapely.transform(ice, lambda xy: xy * [4.0, 1.5] + [14.0, 77.0])
    ice_frame = gpd.GeoDataFrame({
        "id": [f"S1A_{i:03d}" for i in range(len(ice))],
        "ice_class": rng.choice(_ICE, size=len(ice)),
        "concentration": rng.uniform(0, 1, size=len(ice)).round(2),
        "image_id": rng.choice(["S1A_EW_GRDM_20230101", "S1B_EW_GRDM_20230102"], size=len(ice)),
    }, geometry=ice, crs="EPSG:4326")
    paths = {"sea_ice_chart": directory / "sea_ice_chart.geojson"}
    ice_frame.to_file(paths["sea_ice_chart"], driver="GeoJSON")
    cells = shapely.transform(hexagons(parcels, extent=1.0), lambda xy: xy * [0.05, 0.03] + [14.5, 46.0])
    parcel_frame = gpd.GeoDataFrame({
        "id": [f"P{i:05d}" for i in range(len(cells))],
        "crop": rng.choice(_CROPS, size=len(cells)),
        "confidence": rng.uniform(0.5, 1, size=len(cells)).round(3),
        "image_id": "S2A_MSIL2A_20230615_T33TVM",
    }, geometry=cells, crs="EPSG:4326")
    paths["crop_parcels"] = directory / "crop_parcels.parquet"
    parcel_frame.to_parquet(paths["crop_parcels"])
    points = shapely.get_coordinates(shapely.centroid(cells[:: max(1, len(cells) // 12)]))
    insitu = pd.DataFrame({
        "point_id": [f"L{i:04d}" for i in range(len(points))],
        "lon": points[:, 0], "lat": points[:, 1],
        "crop": rng.choice(_CROPS, size=len(points)),
        "date": "2023-06-20",
    })
    paths["insitu_points"] = directory / "insitu_points.csv"
    insitu.to_csv(paths["insitu_points"], index=False)
    return paths
