"""Interlinking on a real multi-process Dask cluster: the result equals the single-process one and brute force."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from workbench.linked import geosparql
from workbench.linked.interlink import ALL_RELATIONS, interlink
from workbench.linked.synthetic import interlink_cases, interlink_sets


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    from distributed import Client, LocalCluster

    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c


@pytest.mark.parametrize("filter_name", ["grid", "strtree"])
def test_cluster_result_equals_brute_force_and_single_process(client, filter_name: str) -> None:
    source, target = interlink_cases(seed=4)
    a = source.geometry.to_numpy()[:, None]
    b = target.geometry.to_numpy()[None, :]
    sid, tid = source["id"].to_numpy(), target["id"].to_numpy()
    result = interlink(source, target, relations=ALL_RELATIONS, client=client, filter=filter_name, partitions=9)
    assert result.stats["distributed"] and result.stats["partitions"] > 1
    links = result.links
    for name in ALL_RELATIONS:
        i, j = np.nonzero(geosparql.RELATIONS[name](a, b))
        got = links[links.relation == name]
        assert set(zip(got.source_id, got.target_id)) == set(zip(sid[i].tolist(), tid[j].tolist())), name
    local = interlink(source, target, relations=ALL_RELATIONS, filter=filter_name, partitions=1)
    assert result.links.equals(local.links) and result.pairs.equals(local.pairs)
    assert result.stats["disjoint"] == local.stats["disjoint"]


def test_cluster_progressive_run_equals_single_process(client) -> None:
    source, target = interlink_sets(3000, seed=5)
    full = interlink(source, target)
    budget = full.stats["candidates"] // 5
    for weighting in ("chi2*mbro", "random"):
        remote = interlink(source, target, budget=budget, weighting=weighting, client=client)
        local = interlink(source, target, budget=budget, weighting=weighting)
        assert remote.stats["partitions"] >= 4  # at least two per worker
        assert remote.pairs.equals(local.pairs) and remote.links.equals(local.links)
    everything = interlink(source, target, budget=full.stats["candidates"], client=client)
    assert everything.links.equals(full.links)


def test_cli_runs_the_partitions_on_a_scheduler_address(client, tmp_path, capsys) -> None:
    import pandas as pd

    from workbench.cli import main
    from workbench.cluster import close_client

    source, target = interlink_cases(seed=6, random_count=6)
    source.to_parquet(tmp_path / "s.parquet")
    target.to_parquet(tmp_path / "t.parquet")
    address = client.scheduler.address
    try:
        code = main(["interlink", str(tmp_path / "s.parquet"), str(tmp_path / "t.parquet"), "--out", str(tmp_path / "o"),
                     "--dask-address", address, "--partitions", "4", "-q"])
    finally:
        close_client()
    assert code == 0, capsys.readouterr().err
    summary = pd.read_json(tmp_path / "o" / "summary.json", typ="series")
    assert bool(summary["distributed"]) and summary["partitions"] > 1
    local = interlink(source, target)
    assert len(pd.read_parquet(tmp_path / "o" / "links.parquet")) == len(local.links)
