"""What hsfs users pass (issue 17, items 13-15): time-travel arguments, safe casts, NaT, the online upsert."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench import errors
from workbench.featurestore import FeatureStore, FeatureStoreError
from workbench.featurestore._time import to_wallclock
from workbench.featurestore.online import _cell, _column_cells

UTC = dt.timezone.utc


def _frame(n: int, start: int = 0) -> pd.DataFrame:
    ids = np.arange(start, start + n)
    return pd.DataFrame({"pid": ids, "t": pd.Timestamp("2024-01-01") + pd.to_timedelta(ids, "h"),
                         "ndvi": (ids / 8).astype("float32"), "count": ids.astype("int32")})


@pytest.fixture()
def fs(project_dir: Path) -> FeatureStore:
    return FeatureStore(project_dir)


def test_feature_store_error_is_a_workbench_error() -> None:
    assert errors.FeatureStoreError is FeatureStoreError
    assert issubclass(FeatureStoreError, errors.WorkbenchError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_717_243_200_000, dt.datetime(2024, 6, 1, 12, tzinfo=UTC)),  # epoch milliseconds (hsfs)
        ("20240601", dt.datetime(2024, 6, 1, tzinfo=UTC)),
        ("2024060112", dt.datetime(2024, 6, 1, 12, tzinfo=UTC)),
        ("202406011230", dt.datetime(2024, 6, 1, 12, 30, tzinfo=UTC)),
        ("20240601123005", dt.datetime(2024, 6, 1, 12, 30, 5, tzinfo=UTC)),
        ("20240601123005250", dt.datetime(2024, 6, 1, 12, 30, 5, 250_000, tzinfo=UTC)),
        ("2024-06-01 12:00", dt.datetime(2024, 6, 1, 12, tzinfo=UTC)),
        ("2024-06-01T14:00:00+02:00", dt.datetime(2024, 6, 1, 12, tzinfo=UTC)),
        (dt.date(2024, 6, 1), dt.datetime(2024, 6, 1, tzinfo=UTC)),
        (dt.datetime(2024, 6, 1, 12), dt.datetime(2024, 6, 1, 12, tzinfo=UTC)),
        (np.int64(1_717_243_200_000), dt.datetime(2024, 6, 1, 12, tzinfo=UTC)),
    ],
)
def test_wallclock_rule(value: object, expected: dt.datetime) -> None:
    assert to_wallclock(value) == expected


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (0, "ambiguous"),
        (1_796_000_000, "epoch seconds"),  # seconds, which used to be read as nanoseconds (1970-01-01T00:29:56)
        (12.5, "ambiguous"),
        (True, "must be a datetime"),
        ("2024-13-45", "ISO-8601"),
        ("2024061", "digit string"),
        ("20241345", "does not match"),
        (pd.NaT, "must be a datetime"),
        ([2024], "got list"),
    ],
)
def test_wallclock_refusals(value: object, needle: str) -> None:
    with pytest.raises(FeatureStoreError, match=needle):
        to_wallclock(value)


def test_time_travel_with_epoch_ms_and_zero(fs: FeatureStore) -> None:
    fg = fs.create_feature_group("tt", 1, primary_key=["pid"], event_time="t")
    fg.insert(_frame(4))
    between = int(time.time() * 1000)
    time.sleep(0.05)
    fg.insert(_frame(4, start=4))
    assert len(fg.read(between)) == 4 and len(fg.as_of(between).read()) == 4
    later = (dt.datetime.now(UTC) + dt.timedelta(seconds=1)).strftime("%Y%m%d%H%M%S")
    assert len(fg.read(later)) == 8  # the compact hsfs form
    with pytest.raises(FeatureStoreError, match=r"read\(version=0\)"):
        fg.read(0)
    assert len(fg.read(version=0)) == 4


def test_narrowing_casts_when_lossless_and_refuses_otherwise(fs: FeatureStore) -> None:
    fg = fs.create_feature_group("casts", 1, primary_key=["pid"], event_time="t")
    fg.insert(_frame(3))  # ndvi float32, count int32
    wide = _frame(3, start=3).astype({"ndvi": "float64", "count": "int64"})
    fg.insert(wide)  # every value fits exactly: cast, no error
    back = fg.read()
    assert back["ndvi"].dtype == np.float32 and back["count"].dtype == np.int32
    assert back["ndvi"].tolist()[3:] == [0.375, 0.5, 0.625]
    lossy = _frame(1, start=6).astype({"ndvi": "float64"})
    lossy.loc[0, "ndvi"] = 0.1  # not a float32
    with pytest.raises(FeatureStoreError, match=r"'ndvi' is float64 .* stores float32; value 0.1"):
        fg.insert(lossy)
    big = _frame(1, start=7).astype({"count": "int64"})
    big.loc[0, "count"] = 2**40
    with pytest.raises(FeatureStoreError, match=r"'count' is int64 .* stores int32"):
        fg.insert(big)
    nan = _frame(1, start=8).astype({"ndvi": "float64"})
    nan.loc[0, "ndvi"] = np.nan
    fg.insert(nan)  # NaN survives the cast
    assert len(fg.read()) == 7
    with pytest.raises(FeatureStoreError, match="'ndvi' is string"):
        fg.insert(_frame(1, start=9).astype({"ndvi": str}))


def test_nat_event_times_are_refused(fs: FeatureStore) -> None:
    fg = fs.create_feature_group("nat", 1, primary_key=["pid"], event_time="t")
    frame = _frame(3)
    frame.loc[1, "t"] = pd.NaT
    with pytest.raises(FeatureStoreError, match=r"event-time column 't' has 1 missing value\(s\) \(NaT\)"):
        fg.insert(frame)
    assert not fg.has_data()


@pytest.mark.parametrize(
    "series",
    [
        pd.Series([1, 2, 3], dtype="int64"),
        pd.Series([1, None, 3], dtype="Int64"),
        pd.Series([True, False]),
        pd.Series([0.5, np.nan, 2.0], dtype="float32"),
        pd.Series(pd.to_datetime(["2024-01-01 00:00:00", "2024-02-03 04:05:06", None])),
        pd.Series(pd.to_datetime(["2024-01-01 00:00:00.5", None])),
        pd.Series(pd.to_datetime(["2024-01-01 00:00:00.000000001"])),
        pd.Series(pd.to_datetime(["2024-01-01"]).tz_localize("Europe/Vienna")),
        pd.Series(["a", "b"]),
        pd.Series(["a", None, 3], dtype=object),
    ],
)
def test_column_conversion_matches_the_per_cell_rule(series: pd.Series) -> None:
    assert _column_cells(series) == [_cell(v) for v in series.astype(object)]


def test_online_rows_appear_only_with_the_offline_commit(fs: FeatureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    fg = fs.create_feature_group("onl", 1, primary_key=["pid"], event_time="t", online_enabled=True)
    fg.insert(_frame(5))
    online_file = fs.online.path
    count = sqlite3.connect(online_file).execute('SELECT count(*) FROM "fg_onl_1"').fetchone()[0]
    assert count == 5

    def broken_commit(*args: object, **kwargs: object) -> int:
        raise RuntimeError("the Delta commit failed")

    monkeypatch.setattr(type(fg), "_commit", broken_commit)
    with pytest.raises(RuntimeError, match="Delta commit failed"):
        fg.insert(_frame(5, start=5))
    count = sqlite3.connect(online_file).execute('SELECT count(*) FROM "fg_onl_1"').fetchone()[0]
    assert count == 5  # the staged online rows were rolled back
