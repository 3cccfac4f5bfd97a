"""Mapping throughput: the vectorised RML mapper vs a per-row rdflib loop, on synthetic parcel polygons.

    python benchmarks/linked_mapping.py [--small]

Both map the same GeoParquet of polygon features with the shipped ``crop_parcels``
mapping's triples (class, geometry links, crop type, confidence, image id, WKT); the
triple counts are checked equal. Full mode: 1M features; ``--small``: 50k.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import geopandas as gpd

from workbench.linked.mapping import map_to_file
from workbench.linked.synthetic import hexagons

FOODSEC = "http://extremeearth.eu/ontology/foodsec#"
GEO = "http://www.opengis.net/ont/geosparql#"


def make_parcels(n: int, path: Path) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(0)
    frame = gpd.GeoDataFrame({
        "id": [f"P{i:07d}" for i in range(n)],
        "crop": rng.choice(["Maize", "SoftWheat", "Barley", "Grassland"], size=n),
        "confidence": rng.uniform(0.5, 1, size=n).round(3),
        "image_id": "S2A_MSIL2A_20230615_T33TVM",
    }, geometry=hexagons(n, extent=1.0), crs="EPSG:4326")
    frame.to_parquet(path)
    return frame


def rdflib_loop(frame: gpd.GeoDataFrame, output: Path) -> int:
    """The baseline: one rdflib ``Graph.add`` per triple, row by row, then N-Triples."""
    from rdflib import RDF, Graph, Literal, Namespace, URIRef
    from rdflib.namespace import XSD

    fs, geo = Namespace(FOODSEC), Namespace(GEO)
    graph = Graph()
    for row in frame.itertuples():
        subject = URIRef(f"http://extremeearth.eu/resource/parcel/{row.id}")
        geom = URIRef(f"http://extremeearth.eu/resource/parcel/{row.id}/geometry")
        graph.add((subject, RDF.type, fs.Parcel))
        graph.add((subject, geo.hasGeometry, geom))
        graph.add((subject, geo.hasDefaultGeometry, geom))
        graph.add((subject, fs.hasCropType, fs[row.crop]))
        graph.add((subject, fs.hasConfidence, Literal(str(row.confidence), datatype=XSD.double)))
        graph.add((subject, fs.hasImageID, Literal(row.image_id)))
        graph.add((geom, RDF.type, geo.Geometry))
        graph.add((geom, geo.asWKT, Literal(f"<http://www.opengis.net/def/crs/OGC/1.3/CRS84> {row.geometry.wkt}",
                                            datatype=geo.wktLiteral)))
    graph.serialize(output, format="nt", encoding="utf-8")
    return len(graph)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="quick mode: 50k features")
    args = parser.parse_args()
    n = 50_000 if args.small else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "parcels.parquet"
        frame = make_parcels(n, source)
        start = time.perf_counter()
        report = map_to_file("crop_parcels", Path(tmp) / "ours.nt", source=source, dask=False)
        ours = time.perf_counter() - start
        base_n = min(n, 50_000)  # the loop is timed on at most 50k rows and scaled (it is linear)
        start = time.perf_counter()
        triples = rdflib_loop(frame.iloc[:base_n], Path(tmp) / "base.nt")
        base = (time.perf_counter() - start) * (n / base_n)
        assert triples * (n // base_n) == report.triples, (triples, report.triples)
    ours_rate, base_rate = report.triples / ours, report.triples / base
    print(f"{n} features, {report.triples} triples: mapper {ours:.1f}s ({ours_rate:,.0f} triples/s), "
          f"rdflib per-row loop {base:.1f}s ({base_rate:,.0f} triples/s)")
    print(f"mapping_throughput_vs_rdflib_loop: {ours_rate / base_rate:.1f}x")


if __name__ == "__main__":
    main()
