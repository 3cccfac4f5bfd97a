"""Interlinking (issue 11): filtering + DE-9IM verification against a brute-force relate over all pairs."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from workbench.linked import geosparql
from workbench.linked.interlink import ALL_RELATIONS, DEFAULT_RELATIONS, evaluate, interlink, recall_curve
from workbench.linked.interlink.filtering import grid_candidates, strtree_candidates
from workbench.linked.interlink.inputs import read_sides
from workbench.linked.interlink.tiles import equigrid
from workbench.linked.synthetic import interlink_cases, interlink_sets


@pytest.fixture(scope="module")
def cases():
    return interlink_cases(seed=1)


def brute_force(source, target) -> dict[str, set[tuple[str, str]]]:
    """Every relation over every source x target pair, with the store's own geof: definitions."""
    a = source.geometry.to_numpy()[:, None]
    b = target.geometry.to_numpy()[None, :]
    sid, tid = source["id"].to_numpy(), target["id"].to_numpy()
    out = {}
    for name in (*ALL_RELATIONS, "sfDisjoint"):
        i, j = np.nonzero(geosparql.RELATIONS[name](a, b))
        out[name] = set(zip(sid[i].tolist(), tid[j].tolist()))
    return out


def link_sets(result) -> dict[str, set[tuple[str, str]]]:
    links = result.links
    return {name: set(zip(links.loc[links.relation == name, "source_id"], links.loc[links.relation == name, "target_id"]))
            for name in result.relations}


@pytest.fixture(scope="module")
def truth(cases):
    return brute_force(*cases)


def test_the_cases_hold_every_kind_of_relation(truth) -> None:
    for name in ("sfEquals", "sfTouches", "sfOverlaps", "sfCrosses", "sfWithin", "sfContains", "ehCovers",
                 "ehCoveredBy"):
        assert truth[name], f"the test data has no {name} pair"


@pytest.mark.parametrize("filter_name", ["grid", "strtree"])
@pytest.mark.parametrize("partitions", [1, 9])
def test_every_relation_equals_brute_force(cases, truth, filter_name: str, partitions: int) -> None:
    result = interlink(*cases, relations=ALL_RELATIONS, filter=filter_name, partitions=partitions)
    found = link_sets(result)
    for name in ALL_RELATIONS:
        assert found[name] == truth[name], name
    assert result.stats["disjoint"] == len(truth["sfDisjoint"])
    assert result.counts()["sfDisjoint"] == len(truth["sfDisjoint"])
    if partitions > 1:
        assert result.stats["partitions"] > 1


def test_default_relations_and_the_link_table(cases, truth) -> None:
    result = interlink(*cases)
    assert result.relations == DEFAULT_RELATIONS
    assert list(result.links.columns) == ["source_id", "target_id", "relation"]
    assert not result.links.duplicated().any()
    assert len(result.links) == sum(len(truth[n]) for n in DEFAULT_RELATIONS)
    assert result.crs == "EPSG:3857"


def test_both_filters_give_identical_candidates_and_only_mbr_pairs(cases) -> None:
    src, tgt, _ = read_sides(*cases)
    grid = equigrid(src.bounds)
    g = grid_candidates(grid, source_bounds=src.bounds, target_bounds=tgt.bounds, chunk=17)  # small chunks: the target streamed
    s = strtree_candidates(src.geoms, tgt.geoms)
    assert np.array_equal(g[0], s[0]) and np.array_equal(g[1], s[1])
    sb, tb = src.bounds[:, None, :], tgt.bounds[None, :, :]
    overlap = (sb[..., 0] <= tb[..., 2]) & (tb[..., 0] <= sb[..., 2]) & (sb[..., 1] <= tb[..., 3]) & (tb[..., 1] <= sb[..., 3])
    i, j = np.nonzero(overlap)
    assert set(zip(g[0].tolist(), g[1].tolist())) == set(zip(i.tolist(), j.tolist()))
    assert len(set(zip(g[0].tolist(), g[1].tolist()))) == len(g[0])  # no pair twice


def test_equigrid_tiles_are_the_mean_mbr_extent(cases) -> None:
    src, _, _ = read_sides(*cases)
    grid = equigrid(src.bounds)
    assert grid.theta_x == pytest.approx(np.mean(src.bounds[:, 2] - src.bounds[:, 0]))
    assert grid.theta_y == pytest.approx(np.mean(src.bounds[:, 3] - src.bounds[:, 1]))


def test_larger_synthetic_sets_agree_across_filters_and_partitions() -> None:
    source, target = interlink_sets(3000, seed=2)
    one = interlink(source, target, partitions=1)
    many = interlink(source, target, filter="strtree", partitions=7)
    assert one.pairs.equals(many.pairs) and one.links.equals(many.links)
    j = shapely.STRtree(target.geometry.to_numpy()).query(source.geometry.to_numpy(), predicate="intersects")
    assert one.stats["related"] == j.shape[1]
    for name in ("sfEquals", "sfWithin", "sfOverlaps", "sfCrosses", "sfTouches"):
        assert one.counts()[name] > 0


# ------------------------------------------------------------------ progressive


@pytest.fixture(scope="module")
def synthetic_pair():
    return interlink_sets(4000, seed=3)


@pytest.fixture(scope="module")
def full_run(synthetic_pair):
    return interlink(*synthetic_pair)


def test_budget_of_all_candidates_gives_the_full_result(synthetic_pair, full_run) -> None:
    n = full_run.stats["candidates"]
    for weighting in ("chi2*mbro", "random"):
        result = interlink(*synthetic_pair, budget=n, weighting=weighting, partitions=3)
        assert result.links.equals(full_run.links)
        assert evaluate(result, full_run)["recall"] == 1.0
        assert result.stats["disjoint"] == full_run.stats["disjoint"]


def test_budgeted_run_verifies_at_most_the_budget_and_matches_the_curve(synthetic_pair, full_run) -> None:
    budget = int(np.ceil(0.2 * full_run.stats["candidates"]))
    curve = recall_curve(*synthetic_pair, weightings=["mbro", "cf"], fractions=[0.2])
    for weighting in ("mbro", "cf"):
        result = interlink(*synthetic_pair, budget=budget, weighting=weighting, partitions=4)
        assert result.stats["verified"] == budget
        assert result.stats["disjoint"] is None  # not every pair was verified
        score = evaluate(result, full_run)
        row = curve[curve.weighting == weighting].iloc[0]
        assert row["budget"] == budget
        assert score["recall"] == pytest.approx(row["recall"])
        assert score["precision"] == pytest.approx(row["precision"])


def test_recall_is_monotone_in_budget_and_weightings_beat_random(synthetic_pair) -> None:
    fractions = np.round(np.linspace(0.05, 1.0, 20), 2)
    curve = recall_curve(*synthetic_pair, fractions=fractions)
    assert set(curve.weighting) == {"cf", "js", "chi2", "mbro", "isp", "chi2*mbro", "random"}
    for _, group in curve.groupby("weighting"):
        assert np.all(np.diff(group["recall"].to_numpy()) >= 0)
        assert group["recall"].iloc[-1] == 1.0
    at20 = curve[curve.fraction == 0.2].set_index("weighting")["recall"]
    assert at20["mbro"] > at20["random"] and at20["chi2"] > at20["random"]
    assert at20["chi2*mbro"] > 1.5 * at20["random"]


def test_random_weighting_is_reproducible_and_seeded(synthetic_pair, full_run) -> None:
    budget = full_run.stats["candidates"] // 10
    a = interlink(*synthetic_pair, budget=budget, weighting="random", seed=5, partitions=1)
    b = interlink(*synthetic_pair, budget=budget, weighting="random", seed=5, partitions=6)
    c = interlink(*synthetic_pair, budget=budget, weighting="random", seed=6)
    assert a.pairs.equals(b.pairs)
    assert not a.pairs.equals(c.pairs)
