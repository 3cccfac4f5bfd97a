"""Crop samples, models and training: pixels, LSTM / TempCNN / StarRNN, weighted two-phase training, crop map."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")

import geopandas as gpd  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from shapely.geometry import box  # noqa: E402

from tests.notebook_checks import assert_showcases_shown
from workbench.datasets.pixels import (  # noqa: E402
    extract_pixels,
    feature_columns,
    rasterize_parcels,
    select_reliable,
    tile_split,
    to_arrays,
)
from workbench.errors import DataError  # noqa: E402
from workbench.models.crops import (  # noqa: E402
    StarCell,
    build_lstm,
    build_model,
    build_starrnn,
    build_tempcnn,
    fit_percentile_scaling,
)
from workbench.processors.crops import NODATA, crop_map, load_crop_model, parcel_majority, predict_composite  # noqa: E402
from workbench.training.fit import class_weights, evaluate, two_phase_fit  # noqa: E402

warnings.filterwarnings("ignore", category=RuntimeWarning)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------- models


def test_star_cell_matches_its_equations_on_a_hand_computed_step() -> None:
    cell = StarCell(2)
    cell.build((None, 3))
    w_z = np.array([[0.1, -0.2], [0.3, 0.0], [-0.1, 0.2]], np.float32)
    b_z = np.array([0.05, -0.05], np.float32)
    w_x = np.array([[0.2, 0.1], [-0.3, 0.4], [0.0, -0.2]], np.float32)
    w_h = np.array([[0.5, -0.1], [0.2, 0.3]], np.float32)
    b_k = np.array([0.1, -0.1], np.float32)
    cell.set_weights([w_z, b_z, w_x, w_h, b_k])
    x = np.array([[1.0, 2.0, -1.0]], np.float32)
    h = np.array([[0.3, -0.4]], np.float32)
    # by hand: x·W_z = [0.1+0.6+0.1, -0.2+0-0.2] = [0.8, -0.4]
    z = np.tanh(np.array([0.8 + 0.05, -0.4 - 0.05]))
    # x·W_x = [0.2-0.6+0, 0.1+0.8+0.2] = [-0.4, 1.1]; h·W_h = [0.15-0.08, -0.03-0.12] = [0.07, -0.15]
    k = _sigmoid(np.array([-0.4 + 0.07 + 0.1, 1.1 - 0.15 - 0.1]))
    expected = np.tanh((1 - k) * h[0] + k * z)
    new_h, states = cell(x, [h])
    np.testing.assert_allclose(np.asarray(new_h)[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(states[0]), np.asarray(new_h))
    # stacked in keras.layers.RNN over 4 steps, the same recursion from h = 0
    rnn = keras.layers.RNN(StarCell(2))
    seq = np.random.default_rng(0).normal(size=(1, 4, 3)).astype(np.float32)
    rnn(seq)
    rnn.cell.set_weights([w_z, b_z, w_x, w_h, b_k])
    h_np = np.zeros(2)
    for t in range(4):
        zt = np.tanh(seq[0, t] @ w_z + b_z)
        kt = _sigmoid(seq[0, t] @ w_x + h_np @ w_h + b_k)
        h_np = np.tanh((1 - kt) * h_np + kt * zt)
    np.testing.assert_allclose(np.asarray(rnn(seq))[0], h_np, rtol=1e-5, atol=1e-6)


def test_tempcnn_is_built_as_published() -> None:
    model = build_tempcnn(12, 10, 16)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv1D)]
    assert len(convs) == 3
    for conv in convs:
        assert conv.filters == 64 and conv.kernel_size == (5,) and conv.padding == "same"
        assert isinstance(conv.kernel_initializer, keras.initializers.HeNormal)
        assert conv.kernel_regularizer.get_config()["l2"] == pytest.approx(1e-6)
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 4
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.5] * 4
    assert not any("pool" in type(layer).__name__.lower() for layer in model.layers)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert dense[0].units == 256 and dense[-1].units == 16
    assert model.output_shape == (None, 16)


def test_lstm_and_starrnn_shapes_and_bad_input() -> None:
    lstm = build_lstm(12, 10, 16)
    cells = [layer.units for layer in lstm.layers if isinstance(layer, keras.layers.LSTM)]
    assert cells == [200, 200, 200]
    star = build_starrnn(12, 10, 5, n_layers=2, units=8)
    assert [layer.cell.units for layer in star.layers if isinstance(layer, keras.layers.RNN)] == [8, 8]
    assert star.predict(np.zeros((2, 12, 10), np.float32), verbose=0).shape == (2, 5)
    with pytest.raises(DataError, match="n_classes"):
        build_lstm(12, 10, 1)
    with pytest.raises(DataError, match="unknown crop model"):
        build_model("gru", 12, 10, 4)
    with pytest.raises(DataError, match="n_steps"):
        build_tempcnn(0, 10, 4)
    with pytest.raises(DataError, match="scaling"):
        build_lstm(12, 10, 4, scaling=(np.zeros(3), np.ones(3)))


def test_percentile_scaling_is_fitted_on_training_data() -> None:
    rng = np.random.default_rng(0)
    x = np.stack([rng.uniform(0, 1, (500, 12)), rng.uniform(100, 300, (500, 12))], axis=-1).astype(np.float32)
    lo, hi = fit_percentile_scaling(x)
    np.testing.assert_allclose(lo, np.percentile(x.reshape(-1, 2), 2, axis=0), rtol=1e-5)
    np.testing.assert_allclose(hi, np.percentile(x.reshape(-1, 2), 98, axis=0), rtol=1e-5)
    model = build_lstm(12, 2, 3, n_layers=1, units=4, scaling=(lo, hi))
    scaled = model.get_layer("percentile_scaling")(np.stack([lo, hi])[None].repeat(1, 0))
    np.testing.assert_allclose(np.asarray(scaled)[0], [[0, 0], [1, 1]], atol=1e-5)
    with pytest.raises(DataError, match="non-empty"):
        fit_percentile_scaling(np.zeros((0, 12, 2)))


# ---------------------------------------------------------------- training


def _imbalanced(seed: int, n: int = 1200, minority: float = 0.06) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < minority).astype(np.int32)
    base = np.where(y[:, None], 0.25, 0.0) + rng.normal(0, 1.0, (n, 12))
    return np.stack([base, rng.normal(0, 1, (n, 12))], axis=-1).astype(np.float32), y


def _small_model(seed: int) -> keras.Model:
    from workbench.training.fit import seed_everything

    seed_everything(seed)
    return keras.Sequential([keras.Input((12, 2)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])


def test_weighted_phase_raises_minority_recall() -> None:
    x, y = _imbalanced(0)
    xt, yt = _imbalanced(1, n=3000)
    recalls = {}
    for weighted in (True, False):
        model = _small_model(0)
        two_phase_fit(model, x, y, n_classes=2, weighted_epochs=15 if weighted else 0,
                      unweighted_epochs=0 if weighted else 15, batch_size=64, learning_rate=1e-2, seed=0)
        recalls[weighted] = evaluate(model, xt, yt, n_classes=2).recall[1]
    assert recalls[True] > recalls[False] + 0.3, recalls


def test_two_phase_fit_records_both_phases_and_takes_tf_data() -> None:
    import tensorflow as tf

    x, y = _imbalanced(2, n=300)
    w = class_weights(y, 3)
    assert w[2] == 1.0 and w[1] > w[0]
    assert w[0] == pytest.approx(len(y) / (2 * (y == 0).sum()))
    model = build_lstm(12, 2, 2, n_layers=1, units=4)
    result = two_phase_fit(model, x, y, n_classes=2, weighted_epochs=1, unweighted_epochs=1,
                           validation_data=(x[:50], y[:50]), batch_size=64)
    assert [h["phase"] for h in result.history] == [1.0, 2.0]
    assert "val_accuracy" in result.history[0] and result.samples_per_second > 0
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    result = two_phase_fit(build_tempcnn(12, 2, 2, filters=4, dense_units=8), ds, n_classes=2,
                           weighted_epochs=1, unweighted_epochs=0)
    assert len(result.history) == 1 and result.class_weight[1] > 1
    with pytest.raises(DataError, match="epochs"):
        two_phase_fit(model, x, y, n_classes=2, weighted_epochs=0, unweighted_epochs=0)
    with pytest.raises(DataError, match="labels"):
        two_phase_fit(model, x, y[:10], n_classes=2)
    with pytest.raises(DataError, match="labels must be in"):
        class_weights(np.array([0, 5]), 3)
    with pytest.raises(DataError, match="weight_decay"):
        two_phase_fit(model, x, y, n_classes=2, weight_decay=-1.0)


# ---------------------------------------------------------------- pixel samples


def _toy_composite(n: int = 12) -> xr.Dataset:
    rng = np.random.default_rng(0)
    refl = rng.uniform(0.0, 0.1, (12, 2, n, n)).astype(np.float32)
    refl[:, 1, :, : n // 2] += 0.5  # left half: "vegetation" in band 2
    x = 500005.0 + 10 * np.arange(n)
    y = 5100005.0 - 10 * np.arange(n)
    return xr.Dataset(
        {"reflectance": (("month", "band", "y", "x"), refl),
         "filled": (("month", "y", "x"), np.zeros((12, n, n), np.uint8))},
        coords={"band": ["B04", "B08"], "x": x, "y": y, "month": np.arange(12)},
        attrs={"crs": "EPSG:32633", "tile": "T1"},
    )


def _toy_parcels(n: int = 12) -> gpd.GeoDataFrame:
    half = n // 2
    x0, y0 = 500000.0, 5100010.0
    return gpd.GeoDataFrame(
        {"parcel_id": ["A", "B"], "crop_id": [1, 0]},
        geometry=[box(x0, y0 - 10 * n, x0 + 10 * half, y0), box(x0 + 10 * half, y0 - 10 * n, x0 + 10 * n, y0)],
        crs="EPSG:32633",
    )


def test_rasterize_erodes_borders_and_extracts_pixels() -> None:
    comp, parcels = _toy_composite(), _toy_parcels()
    labels, index = rasterize_parcels(parcels, comp, erode=0)
    assert (labels[:, :6] == 1).all() and (labels[:, 6:] == 0).all()
    labels, index = rasterize_parcels(parcels, comp, erode=1)
    assert (labels[:, 5:7] == -1).all() and (labels[:, :5] == 1).all() and (labels[:, 7:] == 0).all()
    assert (labels == 1).sum() == 12 * 5 and (labels == 0).sum() == 12 * 5  # only the shared border is lost
    frame = extract_pixels(comp, parcels, tile="T1", erode=1)
    assert len(frame) == 120
    assert list(frame.columns[:8]) == ["tile", "parcel_id", "label", "row", "col", "x", "y", "n_filled"]
    assert feature_columns(["B04", "B08"])[:3] == ["B04_m00", "B08_m00", "B04_m01"]
    x, y = to_arrays(frame)
    assert x.shape == (120, 12, 2) and set(y) == {0, 1}
    assert (x[y == 1, :, 1].mean() - x[y == 0, :, 1].mean()) > 0.4
    row = frame.iloc[0]
    np.testing.assert_allclose(x[0, 3], comp["reflectance"].values[3, :, row["row"], row["col"]])
    with pytest.raises(DataError, match="crop_id"):
        rasterize_parcels(parcels.drop(columns="crop_id"), comp)
    with pytest.raises(DataError, match="crs"):
        rasterize_parcels(parcels, comp.assign_attrs(crs=""))
    with pytest.raises(DataError, match="bands"):
        extract_pixels(comp, parcels, tile="T1", bands=["B99"])


def test_reliable_selection_drops_far_profiles_and_tile_split() -> None:
    rng = np.random.default_rng(0)
    cols = feature_columns(["B04"], 12)
    good = rng.normal(0.2, 0.01, (95, 12))
    bad = rng.normal(0.6, 0.01, (5, 12))
    frame = pd.DataFrame(np.vstack([good, bad]), columns=cols)
    frame["label"] = 0
    frame["tile"] = ["A"] * 40 + ["B"] * 30 + ["C"] * 30
    kept = select_reliable(frame, drop_fraction=0.05)
    assert len(kept) == 95 and kept[cols].to_numpy().max() < 0.4
    split = tile_split(frame, train=["A", "B"], validation=["C"])
    assert split.groupby("split")["tile"].unique().apply(list).to_dict() == {"train": ["A", "B"], "validation": ["C"]}
    with pytest.raises(DataError, match="both"):
        tile_split(frame, train=["A"], validation=["A"])
    with pytest.raises(DataError, match="no samples"):
        tile_split(frame, train=["A"], validation=["Z"])
    with pytest.raises(DataError, match="drop_fraction"):
        select_reliable(frame, drop_fraction=1.5)
    with pytest.raises(DataError, match="feature columns"):
        to_arrays(frame[["label", "tile"]])


# ---------------------------------------------------------------- crop map processor


def test_crop_map_and_parcel_majority(tmp_path: Path) -> None:
    import rioxarray

    from workbench import storage

    comp, parcels = _toy_composite(), _toy_parcels()
    # a fixed "model": class 1 where mean band-2 reflectance is high
    inp = keras.Input((12, 2))
    score = keras.layers.Lambda(lambda t: keras.ops.mean(t[..., 1:2], axis=1) - 0.3)(inp)
    out = keras.layers.Lambda(lambda s: keras.ops.concatenate([-s, s], axis=-1))(score)
    model = keras.Model(inp, keras.layers.Softmax()(keras.layers.Rescaling(50.0)(out)))
    comp["reflectance"][:, :, 0, 0] = np.nan  # a pixel without data
    labels = predict_composite(model, comp, rows_per_batch=5)
    assert labels.shape == (12, 12) and labels.values[0, 0] == NODATA
    assert (labels.values[1:, :6] == 1).all() and (labels.values[:, 6:] == 0).all()
    result = parcel_majority(labels, parcels, class_names=["c0", "c1"])
    assert result["predicted_id"].tolist() == [1, 0] and result["correct"].all()
    assert result["predicted_name"].tolist() == ["c1", "c0"] and (result["agreement"] == 1.0).all()
    assert result["n_pixels"].tolist() == [71, 72]
    storage.write_zarr(comp, tmp_path / "t1.zarr")
    cog = crop_map(model, tmp_path / "t1.zarr", tmp_path / "map.tif")
    opened = rioxarray.open_rasterio(cog)
    assert opened.rio.crs.to_epsg() == 32633 and int(opened.values[0, 0, 0]) == NODATA
    assert parcel_majority(opened, parcels)["predicted_id"].tolist() == [1, 0]
    with pytest.raises(DataError, match="takes series"):
        predict_composite(build_lstm(6, 2, 2, n_layers=1, units=2), comp)
    with pytest.raises(DataError, match=".keras"):
        load_crop_model(tmp_path / "map.tif")


def test_models_save_and_load_with_the_star_cell(tmp_path: Path) -> None:
    model = build_starrnn(12, 2, 3, n_layers=1, units=4, scaling=(np.zeros(2), np.ones(2)))
    path = tmp_path / "star.keras"
    model.save(path)
    loaded = load_crop_model(path)
    x = np.random.default_rng(0).random((3, 12, 2)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)


# ---------------------------------------------------------------- notebooks


def test_food_security_notebooks_chain(project_dir: Path) -> None:
    """02 (composites) → 03 (samples) → 04 (three models) → 05 (crop map) on a small sample, with papermill."""
    import papermill
    import rioxarray

    from workbench.samples.sentinel2 import generate_sentinel2_samples

    generate_sentinel2_samples("workbench-data", n_tiles=3, size=32, seed=0)
    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    papermill.execute_notebook(str(notebooks / "02_preprocess_s2.ipynb"), str(project_dir / "02.ipynb"),
                               parameters={"chunk": 32}, kernel_name="python3", cwd=str(project_dir))
    composites = project_dir / "workbench-data" / "sentinel2" / "composites"
    assert sorted(p.name for p in composites.iterdir()) == ["33TVM.zarr", "33TVN.zarr", "33TWM.zarr"]
    papermill.execute_notebook(str(notebooks / "03_crop_samples.ipynb"), str(project_dir / "03.ipynb"),
                               kernel_name="python3", cwd=str(project_dir))
    papermill.execute_notebook(str(notebooks / "04_train_crops.ipynb"), str(project_dir / "04.ipynb"),
                               parameters={"weighted_epochs": 1, "unweighted_epochs": 1, "star_units": 8,
                                           "grid_layers": [1], "grid_cells": [4, 8], "grid_epochs": 1},
                               kernel_name="python3", cwd=str(project_dir))
    assert_showcases_shown(project_dir / "04.ipynb")
    crops = project_dir / "workbench-data" / "crops"
    table = pd.read_csv(crops / "comparison.csv", index_col=0)
    assert list(table.index) == ["lstm", "tempcnn", "starrnn", "transformer", "random_forest", "knn"]
    assert table["paper OA %"].tolist()[:3] == [85.39, 81.71, 81.17]
    assert ((table["OA %"] >= 0) & (table["OA %"] <= 100)).all()
    samples = pd.read_parquet(crops / "pixel_samples.parquet")
    assert set(samples["split"]) == {"train", "validation"} and samples["sample_id"].is_unique
    from workbench import registry
    from workbench.featurestore import FeatureStore

    lstm = registry.get_model("crop_lstm")
    assert lstm.version == 1 and {"overall_accuracy", "median_f1", "kappa"} <= set(lstm.metrics)
    assert lstm.load().get_layer("lstm_0").units in (4, 8)  # the size the grid search chose
    td = FeatureStore().get_feature_view("crop_series").get_training_dataset_metadata(1)
    assert td.splits == {"train": int((samples["split"] == "train").sum()),
                         "validation": int((samples["split"] == "validation").sum())}
    papermill.execute_notebook(str(notebooks / "05_crop_map.ipynb"), str(project_dir / "05.ipynb"),
                               kernel_name="python3", cwd=str(project_dir))
    assert_showcases_shown(project_dir / "05.ipynb")
    cmap = rioxarray.open_rasterio(crops / "maps" / "33TWM.tif")
    assert cmap.shape == (1, 32, 32) and cmap.rio.crs.to_epsg() == 32633
    labels = gpd.read_parquet(crops / "parcel_labels.parquet")
    assert {"predicted_id", "agreement", "correct"} <= set(labels.columns) and (labels["n_pixels"] > 0).all()
    assert (crops / "crop_map.html").stat().st_size > 1000
    baseline_map = rioxarray.open_rasterio(crops / "maps_baseline" / "33TWM.tif")  # the random forest's, on Dask
    assert baseline_map.shape == cmap.shape and baseline_map.rio.crs == cmap.rio.crs
    assert set(np.unique(baseline_map.values)) <= set(range(16)) | {255}


def test_grid_search_over_layers_and_cells(project_dir: Path) -> None:
    from workbench.models.crops import grid_search_lstm

    x, y = _imbalanced(3, n=200)
    cols = feature_columns(["a", "b"], 12)
    frame = pd.DataFrame(x.reshape(len(x), -1), columns=cols)
    frame["label"] = y
    frame["split"] = np.where(np.arange(len(y)) < 150, "train", "validation")
    result = grid_search_lstm(frame, n_classes=2, layers=[1], cells=[2, 4], weighted_epochs=1,
                              unweighted_epochs=1, batch_size=64, project=project_dir)
    assert len(result.table) == 2
    assert result.best_params["n_layers"] == 1 and result.best_params["units"] in (2, 4)
    with pytest.raises(DataError, match="validation"):
        grid_search_lstm(frame[frame["split"] == "train"], n_classes=2, layers=[1], cells=[2])


def test_pixel_samples_through_the_feature_store(project_dir: Path) -> None:
    from workbench.datasets.pixels import split_arrays, to_training_dataset

    rng = np.random.default_rng(0)
    cols = feature_columns(["B04", "B08"], 12)
    frame = pd.DataFrame(rng.random((60, 24)).astype(np.float32), columns=cols)
    frame.insert(0, "sample_id", [f"T-{i}" for i in range(60)])
    frame["tile"] = ["A"] * 40 + ["B"] * 20
    frame["split"] = ["train"] * 40 + ["validation"] * 20
    frame["label"] = rng.integers(0, 3, 60)
    td = to_training_dataset(frame)
    assert td.splits == {"train": 40, "validation": 20}
    arrays = split_arrays(td)
    x, y = arrays["train"]
    assert x.shape == (40, 12, 2) and y.dtype == np.int32
    expected = {tuple(np.round(r, 5)) for r in frame[frame["split"] == "train"][cols].to_numpy()}
    assert {tuple(np.round(r.reshape(-1), 5)) for r in x} == expected  # same series, stored order shuffled
    second = to_training_dataset(frame.iloc[10:50])  # a re-run replaces the samples
    assert second.version == td.version + 1 and second.splits == {"train": 30, "validation": 10}
    with pytest.raises(DataError, match="sample_id"):
        to_training_dataset(frame.drop(columns="sample_id"))


def test_bad_inputs_of_the_stage_helpers(tmp_path: Path) -> None:
    from workbench.models.crops import CropRun, comparison_table, save_model_file, train_crop_models
    from workbench.processors.crops import crop_map_folium
    from workbench.sentinel2 import list_composites

    with pytest.raises(DataError, match="does not exist"):
        list_composites(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no <tile>.zarr"):
        list_composites(tmp_path / "empty")
    with pytest.raises(DataError, match="no crop maps"):
        crop_map_folium({}, class_names=["a"])
    comp, parcels = _toy_composite(), _toy_parcels()
    labels = xr.DataArray(np.zeros((12, 12), np.uint8), dims=("y", "x"),
                          coords={"y": comp["y"], "x": comp["x"]}, attrs={"crs": "EPSG:32633"})
    with pytest.raises(DataError, match="parcel_id"):
        parcel_majority(labels, parcels.drop(columns="parcel_id"))
    frame = extract_pixels(comp, parcels, tile="T1")
    with pytest.raises(DataError, match="split"):
        train_crop_models(frame, n_classes=2)
    with pytest.raises(DataError, match="unknown crop model"):
        train_crop_models(frame.assign(split="train"), n_classes=2, models=["gru"])
    with pytest.raises(DataError, match="validation"):
        comparison_table({"lstm": CropRun(name="lstm", model=None, params={})})
    with pytest.raises(DataError, match=".keras"):
        save_model_file(build_lstm(12, 2, 2, n_layers=1, units=2), tmp_path / "model.h5")
