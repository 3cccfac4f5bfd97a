"""``workbench interlink``: outputs, the store round trip, a progress bar, and one-line errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from workbench.cli import main
from workbench.linked.synthetic import interlink_cases


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("interlink_cli")
    source, target = interlink_cases(seed=11, random_count=8)
    source.to_parquet(root / "s.parquet")
    target.to_file(root / "t.geojson", driver="GeoJSON")
    return {"root": root, "source": root / "s.parquet", "target": root / "t.geojson"}


def test_cli_writes_links_summary_and_loads_the_store(files, capsys: pytest.CaptureFixture[str]) -> None:
    out, store = files["root"] / "out", files["root"] / "store"
    code = main(["interlink", str(files["source"]), str(files["target"]), "--out", str(out), "--relations",
                 "sfIntersects,sfTouches", "sfEquals", "--load", str(store), "-q"])
    assert code == 0
    text = capsys.readouterr().out
    assert "candidate pairs" in text and "loaded" in text
    links = pd.read_parquet(out / "links.parquet")
    assert set(links.relation) == {"sfIntersects", "sfTouches", "sfEquals"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["sfIntersects"] == (links.relation == "sfIntersects").sum()
    assert summary["crs"] == "EPSG:3857" and summary["disjoint"] > 0
    assert (out / "links.nt").read_text().count("\n") == len(links)
    # the store answers the topology property from the asserted link triples
    query = "SELECT (COUNT(*) AS ?n) WHERE { ?s geo:sfTouches ?t }"
    assert main(["sparql", "query", query, "--store", str(store), "--no-query-rewrite"]) == 0
    answer = capsys.readouterr().out.split()
    assert int(answer[-1]) == (links.relation == "sfTouches").sum() > 0


def test_cli_selects_sides_from_a_store_with_query_files(files, capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.linked.mapping import map_to_store
    from workbench.linked.store import GeoStore
    from workbench.linked.synthetic import write_sample_products

    root = files["root"]
    products = write_sample_products(root / "products")
    store_dir = root / "products_store"
    store = GeoStore(store_dir)
    map_to_store("crop_parcels", store, source=products["crop_parcels"])
    map_to_store("insitu_points", store, source=products["insitu_points"])
    del store
    (root / "parcels.rq").write_text("SELECT ?feature ?wkt WHERE { ?feature a foodsec:Parcel ; geo:hasGeometry/geo:asWKT ?wkt }")
    (root / "points.rq").write_text("SELECT ?feature ?wkt WHERE { ?feature a foodsec:Observation ; geo:hasGeometry/geo:asWKT ?wkt }")
    code = main(["interlink", f"@{root / 'parcels.rq'}", f"@{root / 'points.rq'}", "--store", str(store_dir),
                 "--relations", "sfContains", "--out", str(root / "out2"), "-q"])
    assert code == 0, capsys.readouterr().err
    links = pd.read_parquet(root / "out2" / "links.parquet")
    assert len(links) >= 10  # the sample in-situ points are parcel centroids
    assert links.source_id.str.startswith("http://extremeearth.eu/resource/parcel/").all()


def test_cli_shows_a_progress_bar_over_partitions(files) -> None:
    out = files["root"] / "out3"
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "interlink", str(files["source"]), str(files["target"]),
                           "--out", str(out), "--partitions", "4", "--budget", "100", "--weighting", "mbro"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "weighing" in proc.stderr and "partition" in proc.stderr and "verifying" in proc.stderr
    assert "verified 100 (budget 100, weighting mbro)" in proc.stdout


@pytest.mark.parametrize(("extra", "message"), [
    (["--budget", "0"], "budget must be a positive number of pairs to verify, got 0"),
    (["--budget", "5", "--weighting", "bogus"], "unknown weighting 'bogus'"),
    (["--weighting", "cf"], "give budget=N too"),
    (["--relations", "sfNear"], "unknown relation 'sfNear'"),
    (["--partitions", "-1"], "partitions must be a positive whole number"),
    (["--crs", "nonsense"], "unknown CRS 'nonsense'"),
])
def test_cli_bad_options_are_one_line_errors(files, extra: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["interlink", str(files["source"]), str(files["target"]), "--out", str(files["root"] / "bad"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert err.startswith("workbench interlink: error:")


def test_cli_bad_inputs(files, capsys: pytest.CaptureFixture[str]) -> None:
    root = files["root"]
    assert main(["interlink", str(root / "missing.parquet"), str(files["target"]), "--out", str(root / "x")]) == 2
    assert "missing.parquet does not exist" in capsys.readouterr().err
    assert main(["interlink", "@q.rq", str(files["target"]), "--out", str(root / "x")]) == 2
    assert "give --store DIR" in capsys.readouterr().err
    assert main(["interlink", "@q.rq", str(files["target"]), "--store", str(root / "nostore"), "--out", str(root / "x")]) == 2
    assert "store directory" in capsys.readouterr().err
    (root / "empty.csv").write_text("id,lon,lat\n")
    assert main(["interlink", str(files["source"]), str(root / "empty.csv"), "--out", str(root / "x")]) == 2
    assert "the target is empty" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["interlink", str(files["source"]), str(files["target"]), "--out", str(root / "x"), "--budget", "ten"])
    assert info.value.code == 2
    assert "invalid int value: 'ten'" in capsys.readouterr().err
    assert not (root / "x").exists()  # nothing written on an error
