"""Model registry on MLflow's sqlite store: versions, best model, aliases, export/load, concurrency."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from workbench import registry  # noqa: E402
from workbench.registry import RegistryError  # noqa: E402


def _model(units: int = 3):  # noqa: ANN202 - keras imported lazily
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units, activation="softmax", name="out")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def test_versions_best_model_and_aliases(project_dir: Path) -> None:
    model = _model()
    v1 = registry.save_model(
        "crops",
        model,
        metrics={"accuracy": 0.61},
        input_example=np.zeros((2, 4), "float32"),
        params={"lr": 0.01},
    )
    v2 = registry.save_model("crops", model, metrics={"accuracy": 0.83}, training_dataset=("crop_view", 3))
    v3 = registry.save_model("crops", model, metrics={"accuracy": 0.72}, aliases=["champion"])
    assert (v1.version, v2.version, v3.version) == (1, 2, 3)
    assert registry.get_model("crops").version == 3
    assert registry.get_model("crops", 2).training_dataset == {
        "feature_view": {"name": "crop_view"},
        "version": 3,
    }
    assert registry.get_best_model("crops", "accuracy").version == 2
    assert registry.get_best_model("crops", "accuracy", direction="min").version == 1
    assert registry.get_model("crops", alias="champion").version == 3
    registry.set_alias("crops", "champion", 2)
    assert registry.get_model("crops", alias="champion").version == 2
    # the listing carries the aliases too (MLflow's version search does not)
    assert [(v.version, v.aliases) for v in registry.get_models("crops")] == [(1, []), (2, ["champion"]), (3, [])]
    loaded = registry.get_model("crops", 1).load()
    np.testing.assert_allclose(
        loaded.predict(np.ones((1, 4)), verbose=0), model.predict(np.ones((1, 4)), verbose=0)
    )
    assert (project_dir / "mlruns" / "mlflow.db").is_file()


def test_export_and_load_without_registry(project_dir: Path, tmp_path: Path) -> None:
    model = _model()
    example = np.random.default_rng(0).random((3, 4)).astype("float32")
    registry.save_model("ice", model, metrics={"f1": 0.9}, input_example=example, aliases=["champion"])
    for target in (tmp_path / "exp_dir", tmp_path / "exp.tar.gz", tmp_path / "exp.zip"):
        path = registry.export("ice", "champion", target)
        assert path == target and target.exists()
        exported = registry.load(target)
        assert exported.metadata["name"] == "ice" and exported.metadata["version"] == 1
        assert exported.metadata["metrics"] == {"f1": 0.9}
        assert exported.signature["inputs"][0]["shape"] == [None, 4]
        np.testing.assert_allclose(exported.predict(example), model.predict(example, verbose=0), rtol=1e-6)
        np.testing.assert_array_equal(exported.input_example["x"], example)
        with pytest.raises(RegistryError, match="shape"):
            exported.predict(np.zeros((1, 5)))
    with tarfile.open(tmp_path / "exp.tar.gz") as tar:
        assert {"model.keras", "signature.json", "metadata.json"} <= set(tar.getnames())
    with pytest.raises(RegistryError, match="exists"):
        registry.export("ice", 1, tmp_path / "exp_dir")


def test_malformed_input(project_dir: Path, tmp_path: Path) -> None:
    model = _model()
    with pytest.raises(RegistryError, match="model name"):
        registry.save_model("bad name!", model)
    with pytest.raises(RegistryError, match="keras.Model"):
        registry.save_model("m", object())
    with pytest.raises(RegistryError, match="finite number"):
        registry.save_model("m", model, metrics={"acc": "high"})
    with pytest.raises(RegistryError, match="training_dataset"):
        registry.save_model("m", model, training_dataset="view")
    with pytest.raises(RegistryError, match="alias"):
        registry.save_model("m", model, aliases=["latest"])
    with pytest.raises(RegistryError, match="not registered"):
        registry.get_model("nothing")
    registry.save_model("m", model, metrics={"acc": 0.5})
    with pytest.raises(RegistryError, match="no version"):
        registry.get_model("m", 9)
    with pytest.raises(RegistryError, match="no alias"):
        registry.get_model("m", alias="champion")
    with pytest.raises(RegistryError, match="metric"):
        registry.get_best_model("m", "f1")
    with pytest.raises(RegistryError, match="direction"):
        registry.get_best_model("m", "acc", direction="up")
    with pytest.raises(RegistryError, match="does not exist"):
        registry.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="lacks"):
        registry.load(tmp_path / "empty")
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(RegistryError, match="archive"):
        registry.load(tmp_path / "junk.tar.gz")


_SAVER = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras
    from workbench import registry
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    for i in range(int(sys.argv[2])):
        v = registry.save_model("shared", model, metrics={"m": float(i)}, project=sys.argv[1])
        print(v.version, flush=True)
""")


def test_concurrent_registrations_get_distinct_versions(project_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "saver.py"
    script.write_text(_SAVER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(project_dir), "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    versions: list[int] = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-3000:]
        versions += [int(line) for line in out.split()]
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]
    assert [v.version for v in registry.get_models("shared", project=project_dir)] == [1, 2, 3, 4, 5, 6]


def test_cli(project_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from workbench.experiments import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    for accuracy in (0.5, 0.9):
        registry.save_model("cli_model", _model(), metrics={"accuracy": accuracy})

    def run(*argv: str) -> str:
        args = parser.parse_args(["models", *argv])
        assert args.func(args) == 0
        return capsys.readouterr().out

    assert run("list").split() == ["cli_model"]
    assert run("list", "cli_model").count("cli_model v") == 2
    assert run("best", "cli_model", "accuracy").startswith("cli_model v2")
    assert "champion" in run("alias", "cli_model", "champion", "2")
    target = tmp_path / "cli.tar.gz"
    assert run("export", "cli_model", "champion", str(target)).strip() == str(target)
    assert registry.load(target).metadata["version"] == 2
    args = parser.parse_args(["models", "best", "cli_model", "f1"])
    with pytest.raises(RegistryError, match="metric"):
        args.func(args)


def test_subclassed_model_signature_from_input_example(project_dir: Path, tmp_path: Path) -> None:
    import keras

    @keras.saving.register_keras_serializable("wb_test_registry")
    class Tiny(keras.Model):
        def __init__(self, **kwargs) -> None:  # noqa: ANN003 - keras config kwargs
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(2)

        def call(self, x):  # noqa: ANN001, ANN201 - keras call signature
            return self.dense(x)

    with pytest.raises(RegistryError, match="input_example"):
        registry.save_model("tiny", Tiny())
    version = registry.save_model("tiny", Tiny(), input_example=np.ones((3, 5), "float32"))
    assert version.signature["inputs"] == [{"name": "x", "shape": [None, 5], "dtype": "float32"}]
    assert version.signature["outputs"][0]["shape"] == [None, 2]
    exported = registry.load(registry.export("tiny", 1, tmp_path / "tiny"))
    assert exported.predict(np.ones((2, 5), "float32")).shape == (2, 2)


def test_models_with_workbench_layers_load_in_a_fresh_process(project_dir: Path) -> None:
    """A registered model with a workbench custom layer (SeaIceAugment) loads where nothing imported it."""
    import subprocess
    import sys

    import keras

    from workbench.models.seaice import SeaIceAugment

    inputs = keras.Input((8, 8, 3), name="patch")
    x = SeaIceAugment(db_channels=[0, 1])(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    registry.save_model("aug", model, metrics={"accuracy": 0.5})
    code = ("import os\nos.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\nfrom workbench import registry\n"
            "m = registry.get_model('aug').load()\nprint(type(m.layers[1]).__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                          env={**__import__("os").environ, "WORKBENCH_PROJECT_DIR": str(project_dir)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "SeaIceAugment"
