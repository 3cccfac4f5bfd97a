"""Real labelled time series beside the project (../shared/data): compositing + LSTM, and the three crop models.

Both data sets are read in place and never copied into the project; the tests
skip when the folder is absent.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from workbench.models.crops import build_model, fit_percentile_scaling  # noqa: E402
from workbench.sentinel2 import monthly_composite  # noqa: E402
from workbench.training.fit import evaluate, two_phase_fit  # noqa: E402

warnings.filterwarnings("ignore", category=RuntimeWarning)


def test_slovenia_ndvi_composites_and_lstm_on_a_held_out_block(shared_data: Path) -> None:
    folder = shared_data / "eolearn-slovenia-ndvi"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    times = np.array(json.loads((folder / "timestamps.json").read_text()), dtype="datetime64[ns]")
    ndvi = np.load(folder / "data" / "NDVI.npy")[..., 0]
    valid = np.load(folder / "mask" / "IS_VALID.npy")[..., 0].astype(bool) & (np.load(folder / "mask" / "CLM.npy")[..., 0] == 0)
    lulc = np.load(folder / "mask_timeless" / "LULC.npy")[..., 0]
    cube = xr.DataArray(np.where(valid, ndvi, np.nan)[:, None], dims=("time", "band", "y", "x"),
                        coords={"time": times, "band": ["NDVI"]})
    comp = monthly_composite(cube, agronomic_year=2016, chunk=64).compute()
    assert comp["reflectance"].shape == (12, 1, 101, 100)
    # November 2016 has no acquisition at all: it is interpolated and flagged
    assert int(comp["valid_count"][2].max()) == 0 and bool(comp["filled"][2].all())
    assert np.isfinite(comp["reflectance"].values).all()
    # forest (2), grassland (3), shrubland (4), artificial (8); rows >= 70 are held out
    classes = [2, 3, 4, 8]
    labels = np.full(lulc.shape, -1)
    for i, c in enumerate(classes):
        labels[lulc == c] = i
    x = comp["reflectance"].values.transpose(2, 3, 0, 1)
    held = np.zeros(labels.shape, bool)
    held[70:] = True
    train, test = (labels >= 0) & ~held, (labels >= 0) & held
    model = build_model("lstm", 12, 1, 4, n_layers=2, units=32, scaling=fit_percentile_scaling(x[train]))
    two_phase_fit(model, x[train], labels[train], n_classes=4, weighted_epochs=2, unweighted_epochs=6,
                  batch_size=64, learning_rate=3e-3)
    report = evaluate(model, x[test], labels[test], n_classes=4)
    majority = np.bincount(labels[test]).max() / test.sum()
    print(f"slovenia NDVI LSTM: OA {report.overall_accuracy:.3f} kappa {report.kappa:.3f} (majority {majority:.3f})")
    assert report.overall_accuracy > majority + 0.1
    assert report.kappa > 0.4


def _formosat(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    table = pd.read_csv(folder / name, header=None).to_numpy()
    return table[:, 2:].astype(np.float32).reshape(len(table), 149, 3), table[:, 0].astype(np.int32)


@pytest.mark.parametrize(
    "name, kwargs, epochs, lr, min_oa",
    [
        ("tempcnn", {}, 20, 1e-3, 0.45),
        ("lstm", {"n_layers": 2, "units": 64}, 20, 3e-3, 0.25),
        ("starrnn", {"n_layers": 2, "units": 64, "batch_norm": False}, 20, 3e-3, 0.15),
    ],
)
def test_formosat2_crop_series_with_the_three_models(
    shared_data: Path, name: str, kwargs: dict, epochs: int, lr: float, min_oa: float
) -> None:
    folder = shared_data / "temporalcnn-formosat2"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    x_train, y_train = _formosat(folder, "train_dataset.csv")
    x_test, y_test = _formosat(folder, "test_dataset.csv")
    assert x_train.shape == (260, 149, 3) and len(np.unique(y_train)) == 13
    model = build_model(name, 149, 3, 13, scaling=fit_percentile_scaling(x_train), **kwargs)
    two_phase_fit(model, x_train, y_train, n_classes=13, weighted_epochs=0, unweighted_epochs=epochs,
                  batch_size=32, learning_rate=lr)
    report = evaluate(model, x_test, y_test, n_classes=13)
    print(f"formosat2 {name}: OA {report.overall_accuracy:.3f} median F1 {report.median_f1:.3f} kappa {report.kappa:.3f}")
    assert report.overall_accuracy > min_oa  # chance is 1/13 = 0.077
