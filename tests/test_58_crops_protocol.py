"""Issue 15: the Transformer encoder, the grouped evaluation protocol, the classical baselines on Dask (dask-ml)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from workbench.errors import ArgumentError, DataError  # noqa: E402


def _grouped(n_groups: int = 48, per_group: int = 5, n_classes: int = 3, seed: int = 0):  # type: ignore[no-untyped-def]
    """Series whose class shows in a temporal bump; rows of one group share an offset (as pixels of a parcel)."""
    rng = np.random.default_rng(seed)
    group_class = np.arange(n_groups) % n_classes
    groups = np.repeat(np.arange(n_groups), per_group)
    y = group_class[groups]
    t = np.arange(12)
    bump = np.exp(-0.5 * ((t[None, :] - (2 + 4 * y[:, None])) / 1.5) ** 2)
    offset = rng.normal(scale=0.3, size=n_groups)[groups]
    x = np.stack([bump + offset[:, None], 0.5 * bump], axis=-1) + rng.normal(scale=0.1, size=(len(y), 12, 2))
    return x.astype(np.float32), y.astype(np.int32), groups


# ---------------------------------------------------------------- the fourth model


def test_transformer_is_a_crop_model_that_trains_saves_and_loads(tmp_path: Path) -> None:
    import keras

    from workbench.models.crops import MODEL_NAMES, TransformerBlock, build_model, fit_scaling
    from workbench.training.fit import evaluate, seed_everything, two_phase_fit

    assert MODEL_NAMES == ("lstm", "tempcnn", "starrnn", "transformer")
    x, y, _ = _grouped()
    seed_everything(0)
    model = build_model("transformer", 12, 2, 3, scaling=fit_scaling(x, method="standard"))
    assert sum(isinstance(layer, TransformerBlock) for layer in model.layers) == 2
    two_phase_fit(model, x, y, n_classes=3, weighted_epochs=0, unweighted_epochs=25, batch_size=32,
                  learning_rate=3e-3)
    report = evaluate(model, x, y, n_classes=3)
    assert report.overall_accuracy > 0.8  # chance 1/3: the temporal bump is learnt
    path = tmp_path / "t.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # registered serializables: no custom_objects needed
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_the_transformer_sees_the_order_of_the_dates() -> None:
    from workbench.models.crops import build_model
    from workbench.training.fit import seed_everything

    x, _, _ = _grouped(n_groups=6)
    seed_everything(1)
    model = build_model("transformer", 12, 2, 3, dropout=0.0)
    reversed_ = model.predict(x[:, ::-1], verbose=0)
    assert not np.allclose(model.predict(x, verbose=0), reversed_, atol=1e-4)  # positions are encoded
    seed_everything(1)
    plain = build_model("transformer", 12, 2, 3, dropout=0.0, positional=False)  # BreizhCrops' layout
    np.testing.assert_allclose(plain.predict(x, verbose=0), plain.predict(x[:, ::-1], verbose=0), atol=1e-4)


def test_starrnn_has_the_reference_layout() -> None:
    import keras

    from workbench.models.crops import build_model

    model = build_model("starrnn", 12, 2, 3, n_layers=3, units=8)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("RNN") == 3 and kinds.count("BatchNormalization") == 2
    assert isinstance(model.get_layer("state_norm"), keras.layers.LayerNormalization)


def test_builders_refuse_bad_arguments_by_name() -> None:
    from workbench.models.crops import build_model

    with pytest.raises(ArgumentError, match=r"build_transformer\(\) has no parameter 'heads' \(did you mean 'n_heads'"):
        build_model("transformer", 12, 2, 3, heads=4)
    with pytest.raises(DataError, match=r"d_model \(30\) must be a multiple of n_heads \(4\)"):
        build_model("transformer", 12, 2, 3, d_model=30, n_heads=4)
    with pytest.raises(DataError, match="n_classes must be an integer >= 2"):
        build_model("transformer", 12, 2, 1)
    with pytest.raises(DataError, match="units must be a positive integer"):
        build_model("starrnn", 12, 2, 3, units=0)
    with pytest.raises(DataError, match="unknown crop model 'gru'"):
        build_model("gru", 12, 2, 3)


def test_same_seed_same_initial_weights_of_every_model_in_two_processes(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import hashlib, json, os
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np
        from workbench.models.crops import MODEL_NAMES, build_model
        from workbench.training.fit import seed_everything
        out = {}
        for name in MODEL_NAMES:
            seed_everything(11)
            model = build_model(name, 12, 2, 3)
            out[name] = hashlib.sha256(b"".join(np.asarray(w).tobytes() for w in model.get_weights())).hexdigest()
        print(json.dumps(out))
    """)
    path = tmp_path / "weights.py"
    path.write_text(script)
    digests = []
    for hashseed in ("0", "1"):  # different hash seeds: nothing may depend on set/dict order
        done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONHASHSEED": hashseed})
        assert done.returncode == 0, done.stderr[-2000:]
        digests.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert digests[0] == digests[1]
    assert len(set(digests[0].values())) == 4


# ---------------------------------------------------------------- the protocol


def test_grouped_split_never_splits_a_group() -> None:
    from workbench.training.protocol import grouped_split, spatial_blocks

    x, y, groups = _grouped()
    for seed in (0, 1):
        parts = grouped_split(y, groups, test_size=0.25, validation_size=0.2, seed=seed)
        sets = {k: set(groups[v]) for k, v in parts.items()}
        assert not sets["train"] & sets["test"] and not sets["train"] & sets["validation"]
        assert not sets["validation"] & sets["test"]
        assert sum(len(v) for v in parts.values()) == len(y)
        for part in parts.values():  # stratified: every class in every split
            assert set(y[part]) == {0, 1, 2}
    assert not np.array_equal(grouped_split(y, groups, seed=0)["test"], grouped_split(y, groups, seed=1)["test"])
    blocks = spatial_blocks((5, 7), block=3)
    assert blocks.shape == (5, 7) and blocks[0, 0] == blocks[2, 2] != blocks[0, 3] and blocks.max() == 5


def test_protocol_table_has_deep_models_and_classical_baselines_over_seeds() -> None:
    from workbench.training.protocol import evaluate_protocol

    x, y, groups = _grouped()
    result = evaluate_protocol(
        x, y, groups=groups, n_classes=3, class_names=["a", "b", "c"], name="bumps", models=["tempcnn", "lstm"],
        params={"lstm": {"n_layers": 1, "units": 16}, "tempcnn": {"filters": 16, "dense_units": 32}},
        fit={"*": {"unweighted_epochs": 8, "patience": 3}, "lstm": {"learning_rate": 3e-3}}, seeds=(0, 1),
    )
    summary = result.summary()
    assert list(summary.index) == ["tempcnn", "lstm", "random_forest", "knn"]
    assert (summary["seeds"] == 2).all()
    for column in ("OA % mean", "OA % std", "kappa % mean", "median F1 % mean", "paper OA %", "BreizhCrops OA %"):
        assert column in summary.columns
    assert summary.loc["lstm", "paper OA %"] == 85.39 and np.isnan(summary.loc["knn", "paper OA %"])
    assert summary.loc["random_forest", "OA % mean"] > 80  # the classes are separable
    per_class = result.per_class_f1()
    assert list(per_class.columns) == ["a", "b", "c"] and per_class.shape == (4, 3)
    table = result.table()
    assert len(table) == 8 and set(table["seed"]) == {0, 1}
    assert (table.loc[table["kind"] == "deep", "epochs"] <= 8).all()
    oa = result.mean_oa()
    assert oa["random_forest"] == pytest.approx(table.loc[table["model"] == "random_forest", "overall_accuracy"].mean())


def test_protocol_refuses_bad_input_by_name() -> None:
    from workbench.training.protocol import evaluate_protocol

    x, y, groups = _grouped(n_groups=12)
    kw = {"groups": groups, "n_classes": 3, "models": [], "baselines": ["knn"], "seeds": (0,)}
    bad = x.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(DataError, match="x holds 1 NaN/inf"):
        evaluate_protocol(bad, y, **kw)
    with pytest.raises(DataError, match=r"labels must be in 0..1 \(n_classes=2\)"):
        evaluate_protocol(x, y, **{**kw, "n_classes": 2})
    with pytest.raises(DataError, match="groups must hold one group id per row"):
        evaluate_protocol(x, y, **{**kw, "groups": groups[:-1]})
    with pytest.raises(DataError, match="unknown crop model 'cnn' in models"):
        evaluate_protocol(x, y, **{**kw, "models": ["cnn"]})
    with pytest.raises(DataError, match="unknown baseline 'svm'"):
        evaluate_protocol(x, y, **{**kw, "baselines": ["svm"]})
    with pytest.raises(DataError, match=r"fit\['\*'\] has unknown setting\(s\) \['epochs'\]"):
        evaluate_protocol(x, y, **{**kw, "fit": {"*": {"epochs": 3}}})
    with pytest.raises(DataError, match=r"params names \['lstm'\]"):
        evaluate_protocol(x, y, **{**kw, "params": {"lstm": {}}})
    with pytest.raises(ArgumentError, match=r"evaluate_protocol\(\) has no parameter 'seed' \(did you mean 'seeds'"):
        evaluate_protocol(x, y, seed=0, **{k: v for k, v in kw.items() if k != "seeds"})
    with pytest.raises(DataError, match="cannot be split"):
        evaluate_protocol(x, y, **{**kw, "groups": np.zeros(len(y), int)})


def test_protocol_on_a_subset_of_real_formosat2_groups_by_polygon(shared_data: Path) -> None:
    from workbench.datasets.labelled_series import read_formosat2
    from workbench.training.protocol import evaluate_protocol, grouped_split

    folder = shared_data / "temporalcnn-formosat2"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    x, y, groups, names = read_formosat2(folder)
    assert x.shape == (520, 149, 3) and len(names) == 13
    assert np.bincount(np.unique(groups, return_counts=True)[1]).nonzero()[0].max() == 12  # up to 12 rows a polygon
    parts = grouped_split(y, groups, seed=0)
    assert not set(groups[parts["train"]]) & set(groups[parts["test"]])
    result = evaluate_protocol(x, y, groups=groups, n_classes=13, class_names=names, name="formosat2",
                               models=["tempcnn"], params={"tempcnn": {"filters": 16, "dense_units": 64}},
                               fit={"tempcnn": {"unweighted_epochs": 10, "patience": 4}}, seeds=(0,),
                               baseline_params={"random_forest": {"n_estimators": 50}})
    oa = result.mean_oa()
    print("formosat2 subset protocol:", {k: round(v, 3) for k, v in oa.items()})
    assert min(oa.values()) > 0.3  # chance is 1/13
    assert oa["random_forest"] > 0.6


# ---------------------------------------------------------------- baselines with dask-ml


def test_baseline_predicts_a_dask_array_block_by_block_like_numpy() -> None:
    import dask.array as da
    from dask_ml.wrappers import ParallelPostFit

    from workbench.training.baselines import fit_baseline, predict_baseline

    x, y, _ = _grouped()
    for name in ("random_forest", "knn"):
        model = fit_baseline(name, x, y, n_classes=3, n_estimators=20)
        assert isinstance(model, ParallelPostFit)
        lazy = predict_baseline(model, da.from_array(x, chunks=(50, 12, 2)))
        assert isinstance(lazy, da.Array) and lazy.numblocks[0] == 5
        np.testing.assert_array_equal(lazy.compute(), predict_baseline(model, x))


def test_baseline_refuses_bad_input_by_name() -> None:
    from workbench.training.baselines import fit_baseline, make_baseline, predict_baseline

    x, y, _ = _grouped(n_groups=6)
    with pytest.raises(DataError, match=r"labels must be in 0..1 \(n_classes=2\)"):
        fit_baseline("knn", x, y, n_classes=2)
    bad = x.copy()
    bad[1, 1, 1] = np.nan
    with pytest.raises(DataError, match="x holds 1 NaN/inf"):
        fit_baseline("knn", bad, y, n_classes=3)
    model = fit_baseline("knn", x, y, n_classes=3)
    with pytest.raises(DataError, match="x holds 1 NaN/inf"):
        predict_baseline(model, bad)
    with pytest.raises(DataError, match="unknown baseline 'svm'"):
        make_baseline("svm")
    with pytest.raises(ArgumentError, match=r"make_baseline\(\) has no parameter 'k'; it takes name"):
        make_baseline("knn", k=3)
    with pytest.raises(DataError, match="n_neighbors must be a positive integer"):
        make_baseline("knn", n_neighbors=0)


def test_baseline_crop_map_of_a_tile_is_computed_on_the_cli_dask_cluster(dask_cli_cluster: str) -> None:
    import xarray as xr
    from distributed import Client, get_task_stream

    from workbench.training.baselines import baseline_crop_map, fit_baseline

    x, y, _ = _grouped()
    model = fit_baseline("random_forest", x, y, n_classes=3, n_estimators=20)
    rng = np.random.default_rng(3)
    tile = x[rng.integers(0, len(x), 40 * 30)].reshape(40, 30, 12, 2)
    tile[0, 0, 3, 1] = np.nan  # a pixel without a value: no data, not class 0
    refl = xr.DataArray(tile.transpose(2, 3, 0, 1), dims=("month", "band", "y", "x"),
                        coords={"y": np.arange(40.0), "x": np.arange(30.0)}).chunk({"y": 10})
    composite = xr.Dataset({"reflectance": refl})
    with Client(dask_cli_cluster) as client:
        lazy = baseline_crop_map(model, composite, chunk=300)
        assert lazy.data.npartitions == 40 * 30 // 300  # one block of the prediction per 300 pixels
        with get_task_stream(client) as stream:
            labels = lazy.compute()
        workers = {t["worker"] for t in stream.data}
        assert len(stream.data) >= 4 and workers <= set(client.scheduler_info()["workers"])
    assert labels.dtype == np.uint8 and labels.shape == (40, 30)
    assert labels.values[0, 0] == 255
    flat = tile.reshape(-1, 12, 2)
    expected = model.predict(flat[1:].reshape(len(flat) - 1, -1))
    np.testing.assert_array_equal(labels.values.ravel()[1:], expected)


def test_dask_ml_preprocessing_on_collections_that_need_not_fit_in_memory() -> None:
    import dask.array as da
    import dask.dataframe as dd
    import pandas as pd

    from workbench.training.baselines import flatten_series, scale_dask_samples, split_dask_samples

    x, y, _ = _grouped()
    xd = flatten_series(da.from_array(x, chunks=(60, 12, 2)))
    yd = da.from_array(y, chunks=60)
    x_train, x_test, y_train, y_test = split_dask_samples(xd, yd, test_size=0.25, seed=0)
    assert isinstance(x_train, da.Array) and x_train.shape[0] + x_test.shape[0] == len(y)
    assert x_test.shape[0] == y_test.shape[0]
    scaled_train, scaled_test = scale_dask_samples(x_train, x_test)
    np.testing.assert_allclose(scaled_train.mean(axis=0).compute(), 0, atol=1e-5)
    np.testing.assert_allclose(scaled_train.std(axis=0).compute(), 1, atol=1e-3)
    frame = dd.from_pandas(pd.DataFrame(x.reshape(len(x), -1), columns=[f"f{i}" for i in range(24)]), npartitions=3)
    (scaled,) = scale_dask_samples(frame, method="minmax")
    assert float(scaled.max().max().compute()) == pytest.approx(1.0)
    train_frame, test_frame = split_dask_samples(frame, test_size=0.25, seed=1)
    assert len(train_frame) + len(test_frame) == len(x)
    with pytest.raises(DataError, match="collection 0 is a ndarray, not a Dask"):
        scale_dask_samples(x)
    with pytest.raises(DataError, match="method must be one of"):
        scale_dask_samples(frame, method="robust")
    with pytest.raises(DataError, match=r"test_size must be in \(0, 1\)"):
        split_dask_samples(frame, test_size=1.5)
