"""Feature store: feature groups on Delta Lake, time travel, tensors, views, training datasets, online store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from workbench.errors import ConfigError
from workbench.featurestore import FeatureStore, FeatureStoreError, assign_splits

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _pixels(n: int, start: int = 0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n)
    return pd.DataFrame(
        {
            "pid": ids,
            "t": pd.Timestamp("2024-01-01") + pd.to_timedelta(ids, "h"),
            "tile": np.array(["33TWM", "33TWN", "33UVP", "33UWP"])[ids % 4],
            "ndvi": rng.random(n).astype("float32"),
            "b8": rng.random(n),
            "label": (ids % 3).astype("int64"),
        }
    )


@pytest.fixture()
def fs(project_dir: Path) -> FeatureStore:
    return FeatureStore(project_dir)


@pytest.fixture()
def s3_fs(project_dir: Path, s3_bucket: str, s3_server: dict[str, Any]) -> FeatureStore:
    return FeatureStore(project_dir, root=f"{s3_bucket}/fs", storage_options=s3_server["storage_options"])


# ---------------------------------------------------------------------------- feature groups
def test_insert_read_commit_details_and_statistics(fs: FeatureStore) -> None:
    fg = fs.create_feature_group("pixels", 1, primary_key=["pid"], event_time="t", description="S2 pixels")
    assert fg.insert(_pixels(40)) == 0
    assert fg.insert(_pixels(20, start=40)) == 1
    frame = fg.read()
    assert len(frame) == 60 and frame["pid"].tolist() == list(range(60))
    details = fg.commit_details()
    assert sorted(details) == [0, 1] and details[1]["rows"] == 20 and details[0]["operation"] == "append"
    stats = fg.statistics(0)
    assert stats["rows"] == 40
    ndvi = stats["columns"]["ndvi"]
    assert ndvi["count"] == 40 and ndvi["nulls"] == 0
    assert ndvi["min"] <= ndvi["mean"] <= ndvi["max"] and sum(ndvi["histogram"]["counts"]) == 40
    assert stats["columns"]["label"]["class_counts"] == {"0": 14, "1": 13, "2": 13}
    assert stats["columns"]["tile"]["class_counts"]["33TWM"] == 10
    assert fs.get_feature_group("pixels").version == 1
    assert fs.get_or_create_feature_group("pixels", 1, primary_key=["pid"]).primary_key == ["pid"]


def test_time_travel_as_of_returns_commit_in_force(fs: FeatureStore) -> None:
    fg = fs.create_feature_group("tt", 1, primary_key=["pid"])
    fg.insert(_pixels(10))
    time.sleep(0.05)
    between = pd.Timestamp.now(tz="UTC")
    time.sleep(0.05)
    fg.insert(_pixels(5, start=10))
    assert len(fg.read()) == 15
    assert len(fg.read(between)) == 10
    assert len(fg.as_of(between).read()) == 10
    assert len(fg.read(version=0)) == 10
    with pytest.raises(FeatureStoreError, match="before its first commit"):
        fg.read("2000-01-01")
    with pytest.raises(FeatureStoreError, match="wallclock_time"):
        fg.read("not a date")


def test_upsert_and_overwrite_modes(fs: FeatureStore) -> None:
    fg = fs.create_feature_group("ups", 1, primary_key=["pid"])
    fg.insert(_pixels(10))
    changed = _pixels(4, start=8).assign(b8=-1.0)
    fg.insert(changed, mode="upsert")
    frame = fg.read()
    assert len(frame) == 12
    assert (frame.set_index("pid").loc[[8, 9, 10, 11], "b8"] == -1.0).all()
    fg.insert(_pixels(3), mode="overwrite")
    assert len(fg.read()) == 3 and len(fg.read(version=1)) == 12


def test_bad_inserts_write_nothing(fs: FeatureStore) -> None:
    fg = fs.create_feature_group("bad", 1, primary_key=["pid"], event_time="t")
    fg.insert(_pixels(10))
    cases = [
        (_pixels(5, start=100).assign(ndvi="x"), "ndvi"),  # wrong type
        (_pixels(5, start=100).drop(columns=["b8"]), "missing column"),
        (_pixels(5, start=100).assign(extra=1), "unexpected column"),
        (_pixels(5, start=100).drop(columns=["pid"]), "primary-key"),
        (_pixels(5, start=100).assign(pid=[1, 2, None, 4, 5]), "null"),
        (_pixels(5, start=100).assign(pid=[1, 1, 2, 3, 4]), "repeat"),
        (_pixels(5, start=100).assign(t="2024-01-01"), "datetime"),
        (_pixels(5, start=100).drop(columns=["t"]), "event-time"),
    ]
    for frame, message in cases:
        with pytest.raises(FeatureStoreError, match=message):
            fg.insert(frame)
    with pytest.raises(FeatureStoreError, match="pandas or Dask"):
        fg.insert([1, 2, 3])
    with pytest.raises(FeatureStoreError, match="mode"):
        fg.insert(_pixels(2, start=200), mode="merge")
    assert fg.current_version() == 0 and len(fg.read()) == 10


def test_malformed_definitions(fs: FeatureStore) -> None:
    with pytest.raises(FeatureStoreError, match="identifier"):
        fs.create_feature_group("Bad Name", 1, primary_key=["pid"])
    with pytest.raises(FeatureStoreError, match="version"):
        fs.create_feature_group("ok", 0, primary_key=["pid"])
    with pytest.raises(FeatureStoreError, match="primary_key"):
        fs.create_feature_group("ok", 1, primary_key=[])
    with pytest.raises(FeatureStoreError, match="shape"):
        fs.create_feature_group("ok", 1, primary_key=["pid"], tensor_features={"patch": (0, 3)})
    fs.create_feature_group("dup", 1, primary_key=["pid"])
    with pytest.raises(FeatureStoreError, match="already exists"):
        fs.create_feature_group("dup", 1, primary_key=["pid"])
    with pytest.raises(FeatureStoreError, match="does not exist"):
        fs.get_feature_group("nothing")
    with pytest.raises(FeatureStoreError, match="no data yet"):
        fs.get_feature_group("dup").read()
    with pytest.raises(ConfigError, match="project"):
        FeatureStore(42)


def test_dask_insert_is_one_commit_with_merged_statistics(fs: FeatureStore) -> None:
    import dask.dataframe as dd

    frame = _pixels(90)
    fg = fs.create_feature_group("dpix", 1, primary_key=["pid"], online_enabled=True)
    version = fg.insert(dd.from_pandas(frame, npartitions=3))
    assert version == 0 and fg.commit_details()[0]["rows"] == 90
    view = fs.create_feature_view("dview", 1, query=fg.select(["b8", "label"]), labels=["label"])
    assert view.get_feature_vector({"pid": 77}, return_type="dict")["b8"] == pytest.approx(frame["b8"][77])
    stats = fg.statistics()["columns"]["b8"]
    assert stats["count"] == 90
    assert stats["mean"] == pytest.approx(frame["b8"].mean())
    assert stats["std"] == pytest.approx(frame["b8"].std())
    assert sum(stats["histogram"]["counts"]) == 90
    bad = frame.assign(pid=frame["pid"].astype("Int64").where(frame["pid"] != 70, pd.NA))
    with pytest.raises(FeatureStoreError, match="null"):
        fg.insert(dd.from_pandas(bad, npartitions=3))
    assert fg.current_version() == 0 and len(fg.read()) == 90


# ---------------------------------------------------------------------------- tensors
def test_tensor_features_stored_as_zarr(fs: FeatureStore) -> None:
    rng = np.random.default_rng(1)
    patches = rng.random((30, 8, 8, 3)).astype("float32")
    fg = fs.create_feature_group("patches", 1, primary_key=["patch_id"], tensor_features={"patch": (8, 8, 3)})
    meta = pd.DataFrame({"patch_id": np.arange(30), "label": np.arange(30) % 2})
    fg.insert(meta, tensors={"patch": patches})
    fg.insert(pd.DataFrame({"patch_id": [100, 101], "label": [1, 0], "patch": list(patches[:2] + 1)}))
    frame = fg.read()
    assert len(frame) == 32
    np.testing.assert_array_equal(np.stack(frame["patch"].iloc[:30]), patches)
    np.testing.assert_array_equal(frame["patch"].iloc[31], patches[1] + 1)
    refs = fg.read(load_tensors=False)
    assert "patch__store" in refs.columns and "patch" not in refs.columns
    assert list(Path(fg._store._group_dir("patches", 1), "tensors", "patch").glob("*.zarr"))
    stats = fg.statistics(0)["columns"]["patch"]
    assert stats["shape"] == [8, 8, 3] and stats["max"] <= 1.0
    with pytest.raises(FeatureStoreError, match="shape"):
        fg.insert(meta.assign(patch_id=meta.patch_id + 500), tensors={"patch": patches[:, :4]})
    with pytest.raises(FeatureStoreError, match="lacks tensor feature"):
        fg.insert(meta.assign(patch_id=meta.patch_id + 500))
    assert fg.current_version() == 1


# ---------------------------------------------------------------------------- views and training datasets
def _view(fs: FeatureStore, *, tensors: bool = False) -> Any:
    fg = fs.create_feature_group("px", 1, primary_key=["pid"], event_time="t", online_enabled=True)
    fg.insert(_pixels(200))
    query = fg.select(["tile", "ndvi", "b8", "label"])
    if tensors:
        rng = np.random.default_rng(2)
        pg = fs.create_feature_group(
            "pp", 1, primary_key=["pid"], tensor_features={"patch": (4, 4, 2)}, online_enabled=True
        )
        pg.insert(pd.DataFrame({"pid": np.arange(200)}), tensors={"patch": rng.random((200, 4, 4, 2))})
        query = query.join(pg.select_all(), on=["pid"])
    return fs.create_feature_view("view", 1, query=query, labels=["label"]), fg


def test_training_dataset_split_by_tile_streams_to_tf_data(fs: FeatureStore) -> None:
    import tensorflow as tf

    fv, fg = _view(fs, tensors=True)
    td = fv.create_training_dataset(split={"train": 0.75, "test": 0.25}, split_by="tile", seed=3)
    assert td.version == 1 and sum(td.splits.values()) == 200
    parts = fv.get_train_test_split(1)
    assert not set(parts["train"]["tile"]) & set(parts["test"]["tile"])
    assert td.provenance["feature_groups"][0]["delta_version"] == 0
    ds = fv.get_training_dataset(1, "train", batch_size=16, as_dict=True, seed=0)
    assert isinstance(ds, tf.data.Dataset)
    seen = 0
    labels = []
    for x, y in ds:
        assert x["patch"].shape[1:] == (4, 4, 2) and x["features"].shape[1] == 2
        seen += int(y.shape[0])
        labels.extend(y.numpy().tolist())
    assert seen == td.splits["train"]
    assert sorted(labels) == sorted(parts["train"]["label"].tolist())
    x_mem, y_mem = td.arrays("test", as_dict=True)
    assert x_mem["patch"].shape == (td.splits["test"], 4, 4, 2)
    with pytest.raises(FeatureStoreError, match="as_dict"):
        fv.get_training_dataset(1, "train")
    with pytest.raises(FeatureStoreError, match="no split"):
        fv.get_training_dataset(1, "validation")
    with pytest.raises(FeatureStoreError, match="no training dataset version"):
        fv.get_training_dataset(7, "train")
    with pytest.raises(FeatureStoreError, match="batch_size"):
        fv.get_training_dataset(1, "train", batch_size=0, as_dict=True)


def test_training_dataset_keeps_rows_after_source_changes(fs: FeatureStore) -> None:
    fv, fg = _view(fs)
    td = fv.create_training_dataset(split={"train": 0.8, "test": 0.2}, seed=1)
    before = fv.get_train_test_split(td.version)
    fg.insert(_pixels(50, start=1000))
    fg.insert(_pixels(10, start=5).assign(ndvi=np.float32(9.0)), mode="upsert")
    after = fs.get_feature_view("view", 1).get_train_test_split(td.version)
    for split in ("train", "test"):
        pd.testing.assert_frame_equal(before[split], after[split])
    assert fv.get_training_dataset_metadata(td.version).provenance["feature_groups"][0]["delta_version"] == 0
    td2 = fv.create_training_dataset(split={"train": 0.8, "test": 0.2}, seed=1)
    assert td2.version == 2 and sum(td2.splits.values()) == 250
    x, y = td.arrays("train")
    assert x.shape == (td.splits["train"], 2) and y.dtype == np.int64


def test_split_rules() -> None:
    frame = pd.DataFrame({"tile": list("aabbccdd"), "t": pd.date_range("2024-01-01", periods=8, freq="D")})
    explicit = assign_splits(frame, {"train": ["a", "b"], "test": ["c"]}, split_by="tile")
    assert list(explicit) == ["train"] * 4 + ["test"] * 2 + [None, None]
    timed = assign_splits(
        frame, {"train": ("2024-01-01", "2024-01-05"), "test": ("2024-01-05", None)}, split_by="t"
    )
    assert list(timed) == ["train"] * 4 + ["test"] * 4
    fractions = assign_splits(frame, {"train": 0.5, "test": 0.5}, seed=0)
    assert sorted(fractions) == ["test"] * 4 + ["train"] * 4
    assert list(assign_splits(frame, {"a": 0.5, "b": 0.5}, split_by="tile", seed=4)) == list(
        assign_splits(frame, {"a": 0.5, "b": 0.5}, split_by="tile", seed=4)
    )
    for bad, by in [
        ({"train": 0.7, "test": 0.2}, None),
        ({"train": ["a"]}, None),
        ({}, None),
        ({"train": 0.5, "test": [1]}, None),
        ({"train": ["a"], "test": ["a"]}, "tile"),
        ({"train": 1.0}, "nope"),
    ]:
        with pytest.raises(FeatureStoreError):
            assign_splits(frame, bad, split_by=by)


def test_point_in_time_join(fs: FeatureStore) -> None:
    obs = fs.create_feature_group("obs", 1, primary_key=["field", "t"], event_time="t")
    weather = fs.create_feature_group("weather", 1, primary_key=["field", "t"], event_time="t")
    obs.insert(
        pd.DataFrame(
            {
                "field": [1, 1, 2],
                "t": pd.to_datetime(["2024-03-05", "2024-04-05", "2024-04-05"]),
                "label": [0, 1, 1],
            }
        )
    )
    weather.insert(
        pd.DataFrame(
            {
                "field": [1, 1, 1, 2],
                "t": pd.to_datetime(["2024-03-01", "2024-04-01", "2024-04-10", "2024-05-01"]),
                "rain": [1.0, 2.0, 3.0, 4.0],
            }
        )
    )
    frame = obs.select_all().join(weather.select(["rain"]), on=["field"], join_type="left").read()
    assert frame["rain"].tolist()[:2] == [1.0, 2.0] and pd.isna(frame["rain"].iloc[2])
    with pytest.raises(FeatureStoreError, match="join_type"):
        obs.select_all().join(weather.select(["rain"]), on=["field"], join_type="outer")
    with pytest.raises(FeatureStoreError, match="no column"):
        obs.select_all().join(weather.select(["rain"]), on=["nope"])
    with pytest.raises(FeatureStoreError, match="both sides"):
        obs.select_all().join(weather.select_all(), left_on=["label"], right_on=["field"])


# ---------------------------------------------------------------------------- online store
def test_online_feature_vectors(fs: FeatureStore) -> None:
    fv, fg = _view(fs, tensors=True)
    vector = fv.get_feature_vector({"pid": 7})
    names = fv.features
    row = _pixels(200).iloc[7]
    assert vector[names.index("b8")] == pytest.approx(row["b8"])
    assert vector[names.index("tile")] == row["tile"]
    assert vector[names.index("patch")].shape == (4, 4, 2)
    assert "label" not in names
    fg.insert(_pixels(1, start=7).assign(b8=42.0), mode="upsert")
    assert fv.get_feature_vector({"pid": 7}, return_type="dict")["b8"] == 42.0
    frame = fv.get_feature_vectors([{"pid": 1}, {"pid": 2}], return_type="pandas")
    assert frame.shape == (2, len(names))
    with pytest.raises(FeatureStoreError, match="no online row"):
        fv.get_feature_vector({"pid": 99999})
    with pytest.raises(FeatureStoreError, match="lacks primary-key"):
        fv.get_feature_vector({"id": 1})
    with pytest.raises(FeatureStoreError, match="return_type"):
        fv.get_feature_vector({"pid": 1}, return_type="xml")


# ---------------------------------------------------------------------------- reliability
_WRITER = textwrap.dedent("""
    import sys, numpy as np, pandas as pd
    from workbench.featurestore import FeatureStore
    root, worker, n, rows, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    opts = eval(sys.argv[6]) if len(sys.argv) > 6 else None
    fg = FeatureStore(".", root=root, storage_options=opts).get_feature_group("conc", 1)
    for i in range(n):
        start = 0 if mode == "upsert" else (worker * 1000 + i) * rows
        fg.insert(pd.DataFrame({"pid": np.arange(start, start + rows), "v": np.full(rows, float(worker))}), mode=mode)
        print("committed", i, flush=True)
""")


def _concurrent_inserts(fs: FeatureStore, tmp: Path, n: int, mode: str = "append") -> None:
    fs.create_feature_group("conc", 1, primary_key=["pid"])
    script = tmp / "writer.py"
    script.write_text(_WRITER)
    extra = [repr(fs.storage_options)] if fs.storage_options else []
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), fs.root, str(w), str(n), "5", mode, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
    fg = fs.get_feature_group("conc", 1)
    assert fg.current_version() == 2 * n - 1
    assert sorted(fg.commit_details()) == list(range(2 * n))
    frame = fg.read()
    assert frame["pid"].is_unique
    assert len(frame) == (5 if mode == "upsert" else 2 * n * 5)


def test_two_processes_inserting_lose_no_commit(fs: FeatureStore, tmp_path: Path) -> None:
    _concurrent_inserts(fs, tmp_path, 6)


def test_two_processes_upserting_the_same_keys(fs: FeatureStore, tmp_path: Path) -> None:
    _concurrent_inserts(fs, tmp_path, 4, mode="upsert")


def test_killed_insert_leaves_last_commit_readable(fs: FeatureStore, tmp_path: Path) -> None:
    fg = fs.create_feature_group("conc", 1, primary_key=["pid"])
    fg.insert(pd.DataFrame({"pid": [-1], "v": [0.0]}))
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), fs.root, "1", "1000", "200000", "append"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("committed")
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    version = fg.current_version()
    frame = fg.read()
    assert version >= 1
    assert len(frame) == 1 + version * 200000
    assert fg.commit_details()[version]["rows"] == 200000


# ---------------------------------------------------------------------------- S3
def test_s3_feature_group_time_travel_tensors_and_training_data(s3_fs: FeatureStore) -> None:
    fg = s3_fs.create_feature_group(
        "pixels", 1, primary_key=["pid"], event_time="t", tensor_features={"series": (12, 2)}
    )
    rng = np.random.default_rng(5)
    fg.insert(_pixels(40), tensors={"series": rng.random((40, 12, 2))})
    fg.insert(_pixels(20, start=40), tensors={"series": rng.random((20, 12, 2))})
    assert s3_fs.root.startswith("s3://")
    assert len(fg.read(version=0)) == 40 and len(fg.read()) == 60
    fv = s3_fs.create_feature_view("s2", 1, query=fg.select(["series", "label"]), labels=["label"])
    td = fv.create_training_dataset(split={"train": 0.5, "test": 0.5}, split_by="pid", seed=0)
    assert not td._native_ok("test", td._zarrs("test"))  # S3: streamed through fsspec/zarr
    batches = list(fv.get_training_dataset(td.version, "test", batch_size=8, shuffle=False))
    assert sum(int(y.shape[0]) for _, y in batches) == td.splits["test"]
    assert tuple(batches[0][0].shape[1:]) == (12, 2)
    assert s3_fs.get_feature_view("s2").get_training_dataset_metadata(1).splits == td.splits
    with pytest.raises(FeatureStoreError, match="schema"):
        fg.insert(_pixels(5, start=500).drop(columns=["b8"]), tensors={"series": rng.random((5, 12, 2))})


def test_s3_two_processes_inserting_lose_no_commit(s3_fs: FeatureStore, tmp_path: Path) -> None:
    _concurrent_inserts(s3_fs, tmp_path, 3)


def test_cli(fs: FeatureStore, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    import json

    from workbench.featurestore import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    fg = fs.create_feature_group("cli_pixels", 1, primary_key=["pid"])
    fg.insert(_pixels(12))
    fs.create_feature_view("cli_view", 1, query=fg.select_all(), labels=["label"]).create_training_dataset()

    def run(*argv: str) -> str:
        args = parser.parse_args(["fs", "--root", fs.root, *argv])
        assert args.func(args) == 0
        return capsys.readouterr().out

    assert run("groups").startswith("cli_pixels v1\tkey=pid\tcommits=1")
    assert json.loads(run("commits", "cli_pixels"))["0"]["rows"] == 12
    assert json.loads(run("stats", "cli_pixels"))["rows"] == 12
    assert "cli_view v1" in run("views")
    assert json.loads(run("dataset", "cli_view"))["splits"] == {"train": 12}
    args = parser.parse_args(["fs", "--root", fs.root, "commits", "missing"])
    with pytest.raises(FeatureStoreError, match="does not exist"):
        args.func(args)


def test_query_filter_select_and_bad_versions(fs: FeatureStore) -> None:
    fg = fs.create_feature_group("q", 1, primary_key=["pid"], event_time="t")
    fg.insert(_pixels(20))
    frame = fg.select(["b8", "label"]).filter("label = 1").read()
    assert list(frame.columns) == ["pid", "t", "b8", "label"]
    assert len(frame) == 7 and (frame["label"] == 1).all()
    with pytest.raises(FeatureStoreError, match="not found"):
        fg.select(["b8"]).filter("label = 1").read()  # a filter sees the selected columns only
    assert "label" not in fg.select_except(["label"]).read().columns
    with pytest.raises(FeatureStoreError, match="not found"):
        fg.select_all().filter("nonexistent > 1").read()
    with pytest.raises(FeatureStoreError, match="no commit 99"):
        fg.read(version=99)
    with pytest.raises(FeatureStoreError, match="no feature"):
        fg.select(["nope"])
    with pytest.raises(FeatureStoreError, match="list of names"):
        fg.select("b8")
    with pytest.raises(FeatureStoreError, match="either"):
        fg.read("2024-01-01", version=0)


def test_streaming_over_several_blocks_matches_the_stored_rows(fs: FeatureStore) -> None:
    rng = np.random.default_rng(7)
    n = 150  # 64 KiB rows: 64 rows per Zarr chunk, so 3 blocks, the last one partial
    patches = rng.random((n, 64, 64, 4)).astype("float32")
    patches[:64] = 0.0  # an all-zero chunk is still written and read back
    fg = fs.create_feature_group("big", 1, primary_key=["pid"], tensor_features={"patch": (64, 64, 4)})
    fg.insert(pd.DataFrame({"pid": np.arange(n), "label": np.arange(n) % 5}), tensors={"patch": patches})
    fv = fs.create_feature_view("bigview", 1, query=fg.select(["patch", "label"]), labels=["label"])
    td = fv.create_training_dataset(seed=3)
    assert td.metadata["splits"]["train"]["block_rows"] == 64
    assert td._native_ok("train", td._zarrs("train"))  # TensorFlow reads the raw chunk files itself
    x_mem, y_mem = td.arrays("train")
    ordered = list(fv.get_training_dataset(td.version, "train", batch_size=40, shuffle=False))
    assert [int(y.shape[0]) for _, y in ordered] == [40, 40, 40, 30]
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in ordered]), x_mem)
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in ordered]), y_mem)
    shuffled = list(fv.get_training_dataset(td.version, "train", batch_size=40, seed=1))
    y_shuffled = np.concatenate([y.numpy() for _, y in shuffled])
    assert sorted(y_shuffled) == sorted(y_mem) and not np.array_equal(y_shuffled, y_mem)
    x_shuffled = np.concatenate([x.numpy() for x, _ in shuffled])
    key = x_shuffled.reshape(n, -1)[:, :4].sum(axis=1) + y_shuffled * 1000
    assert sorted(key) == pytest.approx(sorted(x_mem.reshape(n, -1)[:, :4].sum(axis=1) + y_mem * 1000))
    buffered = fv.get_training_dataset(td.version, "train", batch_size=50, shuffle_buffer=64, seed=2)
    assert sum(int(y.shape[0]) for _, y in buffered) == n
